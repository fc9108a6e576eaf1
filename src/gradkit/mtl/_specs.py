"""The built-in registry entries of the multi-task aggregators (one per class)."""

from __future__ import annotations

from gradkit._specs import AggregatorSpec
from gradkit.mtl._cagrad import CAGrad
from gradkit.mtl._gcond import GCond
from gradkit.mtl._linear import Mean, Sum
from gradkit.mtl._mgda import MGDA
from gradkit.mtl._pcgrad import PCGrad
from gradkit.mtl._samgs import SAMGS

__all__ = ["builtin_specs"]


def builtin_specs() -> list[AggregatorSpec]:
    """Registry entries of the aggregators that ship with gradkit, in display order."""
    return [
        AggregatorSpec(
            name="mean",
            cls=Mean,
            paper="",
            summary="mean of the task gradients (linear scalarisation)",
        ),
        AggregatorSpec(
            name="sum",
            cls=Sum,
            paper="",
            summary="sum of the task gradients (linear scalarisation)",
        ),
        AggregatorSpec(
            name="pcgrad",
            cls=PCGrad,
            paper="Yu et al., Gradient Surgery for Multi-Task Learning, NeurIPS 2020 "
            "(arXiv:2001.06782)",
            summary="projecting conflicting gradients",
            configs=[{}, {"reduction": "mean"}],
            seeded=True,
            permutation_invariant=False,
        ),
        AggregatorSpec(
            name="cagrad",
            cls=CAGrad,
            paper="Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, "
            "NeurIPS 2021 (arXiv:2110.14048)",
            summary="conflict-averse gradient descent",
            configs=[{}, {"c": 0.2}],
        ),
        AggregatorSpec(
            name="mgda",
            cls=MGDA,
            paper="Désidéri 2012; Sener & Koltun, Multi-Task Learning as Multi-Objective "
            "Optimization, NeurIPS 2018 (arXiv:1810.04650)",
            summary="min-norm point of the convex hull of the task gradients",
            non_conflicting=True,
        ),
        AggregatorSpec(
            name="samgs",
            cls=SAMGS,
            paper="Borsani et al., Gradient Similarity Surgery in Multi-Task Deep Learning, "
            "ECML-PKDD 2025 (arXiv:2506.06130)",
            summary="similarity-aware momentum gradient surgery",
            stateful=True,
            min_tasks=2,
        ),
        AggregatorSpec(
            name="gcond",
            cls=GCond,
            paper="Limarenko & Studenikina, GCond: Gradient Conflict Resolution via "
            "Accumulation-based Stabilization (arXiv:2509.07252)",
            summary="gradient conductor (accumulate-then-resolve)",
            stateful=True,
            min_tasks=2,
        ),
    ]
