"""The built-in registry entries of the multi-task loss weightings."""

from __future__ import annotations

from gradkit._specs import ErrorInput, WeightingSpec
from gradkit.mtl._gradnorm import GradNorm

__all__ = ["builtin_specs"]


def builtin_specs() -> list[WeightingSpec]:
    """Registry entries of the loss weightings that ship with gradkit, in display order."""
    return [
        WeightingSpec(
            name="gradnorm",
            cls=GradNorm,
            paper="Chen et al., GradNorm: Gradient Normalization for Adaptive Loss Balancing in "
            "Deep Multitask Networks, ICML 2018 (arXiv:1711.02257)",
            summary="loss weights adapted so that the task gradient norms on a shared layer "
            "track their relative training rates",
            configs=[{}, {"variant": "libmtl"}, {"alpha": 0.12, "optimizer": "sgd"}],
            bench_suites=("mtl",),
            bench_variants={"gradnorm_libmtl": {"variant": "libmtl"}},
            error_inputs=[
                ErrorInput({"num_tasks": 1}, ValueError, "num_tasks"),
                ErrorInput({"num_tasks": 2, "alpha": -1.0}, ValueError, "alpha"),
            ],
        ),
    ]
