"""The built-in registry entries of the multi-task aggregators (one per class).

Each claim here is checked by :func:`gradkit.testing.check_aggregator` (``tests/
test_check_aggregator.py`` runs it over every entry, and also checks that each boolean claim
left ``False`` really fails, so the claims are tight):

* ``permutation_invariant``: every method but PCGrad, whose random projection order is drawn
  per call (with ``K = 2`` it is invariant; with ``K >= 3`` it is not);
* ``non_conflicting``: none. MGDA's exact minimum-norm point is non-conflicting, but the
  Frank–Wolfe iterate that stops at ``γ < epsilon = 1e-3`` (TorchJD's solver and defaults) is
  not: a random 3-task Jacobian gives ``⟨g_2, d⟩ = -0.0027`` against ``0.011`` and ``0.147``
  for the other tasks. CAGrad (``c < 1``), PCGrad (``K >= 3``), SAM-GS and GCond are not
  non-conflicting either;
* ``stateful``: SAM-GS (step, momentum ``m``, ``h``) and GCond (norm EMA, previous gradients,
  momentum, arbitration history, pending accumulation);
* ``seeded``: PCGrad (``generator=``);
* ``min_tasks``: 2 for SAM-GS (Ψ needs a pair); GCond accepts one task (no pair to resolve:
  the output is the momentum of the gradient).
"""

from __future__ import annotations

import torch

from gradkit._specs import AggregatorSpec, ErrorInput
from gradkit.mtl._cagrad import CAGrad
from gradkit.mtl._gcond import GCond
from gradkit.mtl._linear import Mean, Sum
from gradkit.mtl._mgda import MGDA
from gradkit.mtl._pcgrad import PCGrad
from gradkit.mtl._samgs import SAMGS

__all__ = ["builtin_specs"]


def _invalid(**bad: object) -> list[ErrorInput]:
    """One constructor call per bad value; each must raise ``ValueError("Invalid <name>: ...")``."""
    return [
        ErrorInput({name: value}, ValueError, rf"Invalid {name}\b") for name, value in bad.items()
    ]


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
            error_inputs=_invalid(reduction="max"),
        ),
        AggregatorSpec(
            name="cagrad",
            cls=CAGrad,
            paper="Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, "
            "NeurIPS 2021 (arXiv:2110.14048)",
            summary="conflict-averse gradient descent",
            configs=[{}, {"c": 0.2}, {"c": 2.0, "rescale": 0}],
            error_inputs=_invalid(c=-1.0, rescale=3),
        ),
        AggregatorSpec(
            name="mgda",
            cls=MGDA,
            paper="Désidéri 2012; Sener & Koltun, Multi-Task Learning as Multi-Objective "
            "Optimization, NeurIPS 2018 (arXiv:1810.04650)",
            summary="min-norm point of the convex hull of the task gradients",
            configs=[{}, {"epsilon": 1e-5, "max_iters": 7}],
            error_inputs=_invalid(epsilon=0.0, max_iters=0),
        ),
        AggregatorSpec(
            name="samgs",
            cls=SAMGS,
            paper="Borsani et al., Gradient Similarity Surgery in Multi-Task Deep Learning, "
            "ECML-PKDD 2025 (arXiv:2506.06130)",
            summary="similarity-aware momentum gradient surgery",
            configs=[
                {},
                {"gamma": 0.7, "scale_by_num_tasks": True, "max_norm": 1.0},
                {"include_diagonal": True},
            ],
            stateful=True,
            min_tasks=2,
            error_inputs=_invalid(gamma=-1.0, beta1=1.5),
        ),
        AggregatorSpec(
            name="gcond",
            cls=GCond,
            paper="Limarenko & Studenikina, GCond: Gradient Conflict Resolution via "
            "Accumulation-based Stabilization (arXiv:2509.07252)",
            summary="gradient conductor (accumulate-then-resolve)",
            configs=[
                {},
                {"use_smooth_logic": False},
                {"use_smooth_logic": False, "legacy_history": "every_pair"},
                {"buffer_dtype": torch.float64, "return_raw_grad": True},
            ],
            stateful=True,
            error_inputs=_invalid(
                dominance_mode="x", accumulation_steps=0, head_params="x", legacy_history="x"
            ),
        ),
    ]
