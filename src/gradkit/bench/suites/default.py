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

from collections.abc import Sequence

from gradkit.bench.methods import BASELINES, registry_methods
from gradkit.bench.results import BenchResults, Verdict
from gradkit.bench.suites.base import Suite
from gradkit.bench.tasks import DigitsCNNTask, FunctionTask, RosenbrockTask
from gradkit.bench.verdicts import combine, not_run, verdict_less, verdict_not_worse

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


#: The gradkit optimizers whose paper claims this suite checks.
DEFAULT_GRADKIT_METHODS = ("diffgrad", "adabelief", "adamp", "sgdp")


def default_optimizers() -> list[str]:
    """torch baselines, then the gradkit optimizers of :data:`DEFAULT_GRADKIT_METHODS`."""
    registered = registry_methods()[0]
    return [*BASELINES, *(name for name in DEFAULT_GRADKIT_METHODS if name in registered)]


def _values(results: BenchResults, task: str, method: str, what: str) -> list[float | None]:
    """Per-seed ``final_loss``, ``accuracy`` or a metric of ``method`` on ``task``."""
    out: list[float | None] = []
    for r in results.select(task, method):
        if r.status == "error":
            out.append(None)
        elif what == "final_loss":
            out.append(r.final_loss)
        elif what == "accuracy":
            out.append(r.accuracy)
        else:
            out.append(r.metrics.get(what))
    return out


def _missing(results: BenchResults, methods: Sequence[str], tasks: Sequence[str]) -> list[str]:
    have_m, have_t = set(results.settings.optimizers), set(results.settings.tasks)
    return [f"optimizer {m}" for m in methods if m not in have_m] + [
        f"task {t}" for t in tasks if t not in have_t
    ]


def diffgrad_verdict(results: BenchResults) -> Verdict:
    """diffGrad paper: on F1 and F2, diffGrad ends at a lower F than Adam (both must hold)."""
    claim = "diffGrad reaches a lower final F than Adam on F1 and F2"
    missing = _missing(results, ["diffgrad", "adam"], ["f1", "f2"])
    if missing:
        return not_run(claim, DIFFGRAD_PAPER, missing, ("f1", "f2"))
    parts = [
        verdict_less(
            claim,
            DIFFGRAD_PAPER,
            "diffgrad",
            _values(results, task, "diffgrad", "final_loss"),
            "adam",
            _values(results, task, "adam", "final_loss"),
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
    missing = _missing(results, [method, baseline], ["digits_cnn"])
    if missing:
        return not_run(claim, ADAMP_PAPER, missing, ("digits_cnn",))
    return verdict_less(
        claim,
        ADAMP_PAPER,
        method,
        _values(results, "digits_cnn", method, "w_norm_ratio"),
        baseline,
        _values(results, "digits_cnn", baseline, "w_norm_ratio"),
        quantity="w_norm_ratio",
        atol=NORM_ATOL,
        tasks=("digits_cnn",),
    )


def adabelief_verdict(results: BenchResults) -> Verdict:
    """AdaBelief paper: test accuracy at least Adam's, within seed noise."""
    claim = "AdaBelief test accuracy ≥ Adam's (within noise)"
    missing = _missing(results, ["adabelief", "adam"], ["digits_cnn"])
    if missing:
        return not_run(claim, ADABELIEF_PAPER, missing, ("digits_cnn",))
    return verdict_not_worse(
        claim,
        ADABELIEF_PAPER,
        "adabelief",
        _values(results, "digits_cnn", "adabelief", "accuracy"),
        "adam",
        _values(results, "digits_cnn", "adam", "accuracy"),
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
