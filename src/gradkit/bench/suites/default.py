"""The ``default`` suite: gradkit's first-order adaptive optimizers (diffGrad, AdaBelief, AdamP,
SGDP) against torch SGD (momentum 0.9), Adam, AdamW.

The second-order and matrix optimizers (Sophia, SWAN, SinkGD, ARO) are compared where their
papers make claims, on a language model: ``gradkit bench --suite lm``. Any registered optimizer
can still be added here with ``--optimizers``.

Tasks: diffGrad's 1-D functions ``f1``, ``f2``, ``f3``; ``rosenbrock``; ``digits_cnn`` (a
BatchNorm CNN on scikit-learn digits, 3 seeds). Verdicts check the qualitative claims of the
diffGrad, AdamP and AdaBelief papers from the measured numbers; see :func:`default_verdicts`.
"""

from __future__ import annotations

from gradkit.bench.methods import BASELINES, suite_optimizers
from gradkit.bench.results import BenchResults, Verdict
from gradkit.bench.suites.base import Suite
from gradkit.bench.tasks import DigitsCNNTask, FunctionTask, RosenbrockTask
from gradkit.bench.verdicts import (
    combine,
    missing,
    not_run,
    run_values,
    verdict_less,
    verdict_not_worse,
)

__all__ = ["SUITE", "default_optimizers", "default_verdicts"]

DIFFGRAD_PAPER = "Dubey et al., diffGrad, IEEE TNNLS 2020"
ADAMP_PAPER = "Heo et al., AdamP, ICLR 2021"
ADABELIEF_PAPER = "Zhuang et al., AdaBelief, NeurIPS 2020"

#: How the claims spell method names.
DISPLAY_NAMES = {"adamp": "AdamP", "adamw": "AdamW", "sgdp": "SGDP", "sgd": "SGD"}

#: Decision tolerances (absolute floors under the noise margin, see gradkit.bench.verdicts).
F_ATOL = 1e-3  # final F of the deterministic 1-D functions
NORM_ATOL = 0.01  # w_norm_ratio
ACC_ATOL = 0.005  # test accuracy (half a percentage point)


def default_optimizers() -> list[str]:
    """torch baselines, then the registered optimizers tagged for this suite
    (``bench_suites=("default",)`` in their registry spec), in registration order."""
    return [*BASELINES, *suite_optimizers("default")]


def diffgrad_verdict(results: BenchResults) -> Verdict:
    """diffGrad paper: on F1 and F2, diffGrad ends at a lower F than Adam (both must hold)."""
    claim = "diffGrad reaches a lower final F than Adam on F1 and F2"
    absent = missing(results, ["diffgrad", "adam"], ["f1", "f2"])
    if absent:
        return not_run(claim, DIFFGRAD_PAPER, absent, ("f1", "f2"))
    parts = [
        verdict_less(
            claim,
            DIFFGRAD_PAPER,
            "diffgrad",
            run_values(results, task, "diffgrad", "final_loss"),
            "adam",
            run_values(results, task, "adam", "final_loss"),
            quantity=f"final {task.upper()}",
            atol=F_ATOL,
            deterministic=True,
            tasks=(task,),
            key=task,
        )
        for task in ("f1", "f2")
    ]
    return combine(claim, DIFFGRAD_PAPER, parts)


def norm_verdict(results: BenchResults, method: str, baseline: str) -> Verdict:
    """AdamP paper: ``method`` grows the pre-BN weight norm less than ``baseline``."""
    show = DISPLAY_NAMES.get
    claim = (
        f"{show(method, method)} keeps the pre-BN weight norm from growing compared with "
        f"{show(baseline, baseline)} (lower ‖W_final‖/‖W_init‖)"
    )
    absent = missing(results, [method, baseline], ["digits_cnn"])
    if absent:
        return not_run(claim, ADAMP_PAPER, absent, ("digits_cnn",))
    return verdict_less(
        claim,
        ADAMP_PAPER,
        method,
        run_values(results, "digits_cnn", method, "w_norm_ratio"),
        baseline,
        run_values(results, "digits_cnn", baseline, "w_norm_ratio"),
        quantity="w_norm_ratio",
        atol=NORM_ATOL,
        tasks=("digits_cnn",),
    )


def adabelief_verdict(results: BenchResults) -> Verdict:
    """AdaBelief paper: test accuracy at least Adam's, within seed noise."""
    claim = "AdaBelief test accuracy ≥ Adam's (within noise)"
    absent = missing(results, ["adabelief", "adam"], ["digits_cnn"])
    if absent:
        return not_run(claim, ADABELIEF_PAPER, absent, ("digits_cnn",))
    return verdict_not_worse(
        claim,
        ADABELIEF_PAPER,
        "adabelief",
        run_values(results, "digits_cnn", "adabelief", "accuracy"),
        "adam",
        run_values(results, "digits_cnn", "adam", "accuracy"),
        quantity="test accuracy",
        atol=ACC_ATOL,
        tasks=("digits_cnn",),
    )


def default_verdicts(results: BenchResults) -> list[Verdict]:
    """All verdicts of the default suite, computed from ``results`` only."""
    return [
        diffgrad_verdict(results),
        norm_verdict(results, "adamp", "adamw"),
        norm_verdict(results, "sgdp", "sgd"),
        adabelief_verdict(results),
    ]


SUITE = Suite(
    name="default",
    description=(
        "gradkit optimizers vs torch SGD/Adam/AdamW on diffGrad's 1-D functions, Rosenbrock "
        "and a BatchNorm CNN on digits"
    ),
    tasks={
        "f1": FunctionTask("f1"),
        "f2": FunctionTask("f2"),
        "f3": FunctionTask("f3"),
        "rosenbrock": RosenbrockTask(),
        "digits_cnn": DigitsCNNTask(),
    },
    default_optimizers=default_optimizers,
    verdicts=default_verdicts,
)
