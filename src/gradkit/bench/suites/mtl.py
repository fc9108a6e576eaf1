"""The ``mtl`` suite: multi-task aggregators and loss weightings from :mod:`gradkit.mtl`, Adam
on top.

Methods are the registered aggregators tagged for this suite
(``gradkit.registry.specs("aggregator")``: ``mean``, ``sum``, ``pcgrad``, ``cagrad``, ``mgda``,
``samgs``, ``gcond``), each an :class:`~gradkit.bench.families.AggregatorMethod`; the
registered loss weightings tagged for it (``gradkit.registry.specs("weighting")``:
``gradnorm``, the paper's form), each a :class:`~gradkit.bench.families.WeightingMethod`;
the :class:`~gradkit.bench.families.TaskBaseline` ``single_task`` (the MultiDigits baseline).
``gradnorm_libmtl`` (LibMTL's variant, a ``bench_variants`` entry) runs only when named.

Tasks: ``toy_cagrad`` and ``toy_nash`` (the two-objective toy of CAGrad/Nash-MTL, see
:mod:`gradkit.bench.tasks.mtl_toy`), ``multidigits`` and ``multidigits_imb100`` (two digit
classification tasks on one image, the second with a 100× loss on task 1; see
:mod:`gradkit.bench.tasks.mtl_digits`). Verdicts: :func:`mtl_verdicts`.

The suite plugs into the bench engine through its hooks: ``resolve``
(:func:`~gradkit.bench.tasks.mtl_common.resolve_mtl_methods`), ``applies`` (the toy tasks skip
``single_task``) and ``plot`` (for the toy tasks, every method's trajectories over the loss
contours, drawn from the records' ``artifacts``, so ``gradkit report`` redraws it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradkit.bench.families import TaskBaseline
from gradkit.bench.methods import BenchMethod
from gradkit.bench.results import BenchResults, Verdict
from gradkit.bench.suites.base import Suite
from gradkit.bench.tasks.base import Task
from gradkit.bench.tasks.mtl_common import (
    SINGLE_TASK,
    aggregator_methods,
    resolve_mtl_methods,
    weighting_methods,
)
from gradkit.bench.tasks.mtl_digits import MultiDigitsTask
from gradkit.bench.tasks.mtl_toy import REACH_TOL, TOY_SETTINGS, ToyTask
from gradkit.bench.verdicts import missing, not_run, run_values, verdict_more, verdict_not_worse

__all__ = [
    "SUITE",
    "default_methods",
    "extreme_verdict",
    "higher_verdict",
    "mtl_verdicts",
    "plot_task",
    "reach_verdict",
]

#: "``a`` is higher than ``b``" beyond seed noise (:func:`gradkit.bench.verdicts.verdict_more`).
higher_verdict = verdict_more

CAGRAD_PAPER = "Liu et al., CAGrad, NeurIPS 2021"
SAMGS_PAPER = "Borsani et al., SAM-GS, ECML-PKDD 2025"
PCGRAD_PAPER = "Yu et al., PCGrad, NeurIPS 2020"
MGDA_PAPER = "Sener & Koltun, MTL as Multi-Objective Optimization, NeurIPS 2018"
GCOND_PAPER = "Limarenko & Studenikina, GCond, arXiv 2509.07252"
GRADNORM_PAPER = "Chen et al., GradNorm, ICML 2018"

DISPLAY = {
    "mean": "Mean (LS)",
    "sum": "Sum (LS)",
    "pcgrad": "PCGrad",
    "cagrad": "CAGrad",
    "mgda": "MGDA",
    "samgs": "SAM-GS",
    "gcond": "GCond",
    "gradnorm": "GradNorm",
    "gradnorm_libmtl": "GradNorm (LibMTL)",
    SINGLE_TASK: "single-task",
}

#: |x1| beyond which an end point on the Pareto set counts as an "extreme" point.
EXTREME_X1 = 3.5
#: Accuracy tolerance (absolute floor of the noise margin), Δm% tolerance in points.
ACC_ATOL = 0.005
DM_ATOL = 0.5


# -- hooks --------------------------------------------------------------------------------------


def default_methods() -> list[str]:
    """``single_task``, every registered aggregator tagged for the ``mtl`` suite, then every
    registered loss weighting tagged for it (without its ``bench_variants``)."""
    return [SINGLE_TASK, *aggregator_methods("mtl"), *weighting_methods("mtl", variants=False)]


def _applies(task: Task[Any], method: BenchMethod) -> bool:
    """The toy tasks run aggregators only (``single_task`` is a MultiDigits baseline)."""
    return not (isinstance(task, ToyTask) and isinstance(method, TaskBaseline))


def plot_task(results: BenchResults, task: str, path: Path) -> bool:
    """The ``plot`` hook: for a toy task, every method's trajectories over the loss contours
    (from the records' ``artifacts["trajectory"]``); ``False`` for the other tasks."""
    if task not in TOY_SETTINGS or not results.select(task=task):
        return False
    from gradkit.bench.tasks.mtl_toy import plot_trajectories

    runs = {}
    for method in results.methods():
        recs = [r for r in results.select(task, method) if r.curve]
        if recs:
            traj = recs[0].artifacts.get("trajectory")
            runs[method] = (None if traj is None else np.asarray(traj, dtype=float), recs[0])
    plot_trajectories(TOY_SETTINGS[task], runs, path, title=f"{results.settings.suite} / {task}")
    return True


# -- verdicts -----------------------------------------------------------------------------------


def _missing(results: BenchResults, methods: Sequence[str], tasks: Sequence[str]) -> list[str]:
    return missing(results, methods, tasks, label="method")


def reach_verdict(
    claim: str,
    paper: str,
    task: str,
    method: str,
    method_dist: Sequence[float | None],
    baseline: str,
    baseline_dist: Sequence[float | None],
    tol: float = REACH_TOL,
) -> Verdict:
    """Verdict on "``method`` ends within ``tol`` of the Pareto set from every start,
    ``baseline`` does not", from the final distance of each start (pure).

    ``holds`` when both parts are true, ``does not hold`` when either is false; a missing
    distance (a diverged run) does not reach the set, except that a baseline failure leaves
    the verdict ``inconclusive``.
    """
    numbers: dict[str, float | None] = {}
    m_all = bool(method_dist) and all(d is not None and d < tol for d in method_dist)
    b_all = all(d is not None and d < tol for d in baseline_dist)
    if not method_dist or (m_all and any(d is None for d in baseline_dist)):
        verdict = "inconclusive"  # the baseline failed: nothing to compare with
    else:
        verdict = "holds" if m_all and not b_all else "does not hold"
    n = len(method_dist)
    for name, dist in ((method, method_dist), (baseline, baseline_dist)):
        numbers[f"{name}.reached"] = float(sum(d is not None and d < tol for d in dist))
        numbers[f"{name}.max_distance"] = max((d for d in dist if d is not None), default=None)

    def describe(name: str, dist: Sequence[float | None]) -> str:
        shown = ", ".join("failed" if d is None else f"{d:.3g}" for d in dist)
        k = sum(d is not None and d < tol for d in dist)
        return f"{DISPLAY.get(name, name)} reaches {k}/{n} (final distances {shown})"

    evidence = (
        f"{task}, tolerance {tol:g}: {describe(method, method_dist)}; "
        f"{describe(baseline, baseline_dist)}"
    )
    return Verdict(claim, paper, verdict, evidence, (task,), numbers)


def extreme_verdict(
    claim: str,
    paper: str,
    task: str,
    method: str,
    dist: Sequence[float | None],
    x1: Sequence[float | None],
    tol: float = REACH_TOL,
    extreme: float = EXTREME_X1,
) -> Verdict:
    """Verdict on "``method`` reaches the Pareto set from every start, mostly at extreme points
    (|x1| > ``extreme``)" (pure)."""
    reached = sum(d is not None and d < tol for d in dist)
    far = sum(v is not None and abs(v) > extreme for v in x1)
    if not dist:
        verdict = "inconclusive"
    else:  # a diverged start (None) neither reaches the set nor counts as extreme
        verdict = "holds" if reached == len(dist) and 2 * far > len(dist) else "does not hold"
    shown = ", ".join("failed" if v is None else f"{v:.2f}" for v in x1)
    evidence = (
        f"{task}: {DISPLAY.get(method, method)} reaches {reached}/{len(dist)} starts "
        f"(tolerance {tol:g}); {far}/{len(dist)} end points have |x1| > {extreme:g} "
        f"(x1 = {shown})"
    )
    numbers = {f"{method}.reached": float(reached), f"{method}.extreme": float(far)}
    return Verdict(claim, paper, verdict, evidence, (task,), numbers)


def _toy_distances(results: BenchResults, task: str, method: str, what: str) -> list[float | None]:
    recs = [r for r in results.select(task, method) if r.status != "error"]
    n = len(TOY_SETTINGS[task].starts)
    if not recs:
        return [None] * n
    return [recs[0].metrics.get(f"{what}_s{i}") for i in range(n)]


def _toy_reach(results: BenchResults, task: str, method: str, claim: str, paper: str) -> Verdict:
    missing = _missing(results, [method, "mean"], [task])
    if missing:
        return not_run(claim, paper, missing, (task,))
    return reach_verdict(
        claim,
        paper,
        task,
        method,
        _toy_distances(results, task, method, "dist"),
        "mean",
        _toy_distances(results, task, "mean", "dist"),
    )


def _higher(
    results: BenchResults,
    task: str,
    a: str,
    b: str,
    what: str,
    claim: str,
    paper: str,
    atol: float,
    task_b: str | None = None,
) -> Verdict:
    """Verdict on "``a``'s ``what`` on ``task`` is higher than ``b``'s (on ``task_b``)"."""
    task_b = task_b or task
    missing = _missing(results, [a, b], sorted({task, task_b}))
    if missing:
        return not_run(claim, paper, missing, (task, task_b))
    name_a = DISPLAY.get(a, a) + ("" if task_b == task else f" ({task})")
    name_b = DISPLAY.get(b, b) + ("" if task_b == task else f" ({task_b})")
    return verdict_more(
        claim,
        paper,
        name_a,
        run_values(results, task, a, what),
        name_b,
        run_values(results, task_b, b, what),
        quantity=what,
        atol=atol,
        tasks=tuple(dict.fromkeys((task, task_b))),
    )


def _not_worse(
    results: BenchResults, task: str, a: str, b: str, what: str, claim: str, paper: str
) -> Verdict:
    missing = _missing(results, [a, b], [task])
    if missing:
        return not_run(claim, paper, missing, (task,))
    return verdict_not_worse(
        claim,
        paper,
        DISPLAY.get(a, a),
        run_values(results, task, a, what),
        DISPLAY.get(b, b),
        run_values(results, task, b, what),
        quantity=what,
        atol=ACC_ATOL,
        tasks=(task,),
    )


def mtl_verdicts(results: BenchResults) -> list[Verdict]:
    """All verdicts of the ``mtl`` suite, computed from ``results`` only."""
    toy_c, toy_n = "toy_cagrad", "toy_nash"
    bal, imb = "multidigits", "multidigits_imb100"
    out = [
        _toy_reach(
            results,
            toy_c,
            "cagrad",
            "CAGrad reaches the Pareto set from all 3 starts of the toy, Mean (LS) does not",
            CAGRAD_PAPER,
        ),
        _toy_reach(
            results,
            toy_n,
            "samgs",
            "SAM-GS reaches the Pareto set from all 5 starts of the imbalanced toy "
            "(L1 × 0.1), Mean (LS) does not",
            SAMGS_PAPER,
        ),
        _toy_reach(
            results,
            toy_n,
            "cagrad",
            "CAGrad reaches the Pareto set from all 5 starts of the imbalanced toy, Mean "
            "(LS) does not",
            CAGRAD_PAPER,
        ),
    ]
    claim = "MGDA reaches the Pareto set from all starts of the imbalanced toy, but at its " + (
        f"extreme points (|x1| > {EXTREME_X1:g} for most)"
    )
    missing = _missing(results, ["mgda"], [toy_n])
    if missing:
        out.append(not_run(claim, SAMGS_PAPER, missing, (toy_n,)))
    else:
        out.append(
            extreme_verdict(
                claim,
                SAMGS_PAPER,
                toy_n,
                "mgda",
                _toy_distances(results, toy_n, "mgda", "dist"),
                _toy_distances(results, toy_n, "mgda", "x1"),
            )
        )
    for method, paper in (
        ("pcgrad", PCGRAD_PAPER),
        ("cagrad", CAGRAD_PAPER),
        ("mgda", MGDA_PAPER),
        ("gradnorm", GRADNORM_PAPER),
    ):
        out.append(
            _higher(
                results,
                bal,
                method,
                "mean",
                "delta_m_pct",
                f"{DISPLAY[method]} improves Δm% over Mean (LS) on MultiDigits",
                paper,
                DM_ATOL,
            )
        )
    out.append(
        _higher(
            results,
            bal,
            "mean",
            "mean",
            "acc_task2",
            "A 100× loss on task 1 (magnitude conflict) costs Mean (LS) task-2 accuracy "
            "(balanced run higher than imbalanced)",
            SAMGS_PAPER,
            ACC_ATOL,
            task_b=imb,
        )
    )
    out.append(
        _higher(
            results,
            imb,
            "samgs",
            "mean",
            "acc_task2",
            "Under a 100× loss imbalance SAM-GS keeps the small task: higher task-2 accuracy "
            "than Mean (LS)",
            SAMGS_PAPER,
            ACC_ATOL,
        )
    )
    out.append(
        _higher(
            results,
            imb,
            "mgda",
            "mean",
            "acc_task2",
            "Under a 100× loss imbalance MGDA (min-norm, scale-aware) is not dominated by the "
            "large task: higher task-2 accuracy than Mean (LS)",
            MGDA_PAPER,
            ACC_ATOL,
        )
    )
    out.append(
        _higher(
            results,
            imb,
            "gradnorm",
            "mean",
            "acc_task2",
            "Under a 100× loss imbalance GradNorm (weights that balance the tasks' gradient "
            "norms) keeps the small task: higher task-2 accuracy than Mean (LS)",
            GRADNORM_PAPER,
            ACC_ATOL,
        )
    )
    out.append(
        _not_worse(
            results,
            imb,
            "mean",
            "pcgrad",
            "acc_task2",
            "PCGrad's angle surgery does not fix a magnitude conflict: under a 100× loss "
            "imbalance its task-2 accuracy is no better than Mean's (LS)",
            SAMGS_PAPER,
        )
    )
    out.append(
        _not_worse(
            results,
            imb,
            "gcond",
            "mean",
            "acc_task2",
            "GCond is at least as good as Mean (LS) on the weaker task (task 2) under a 100× "
            "loss imbalance",
            GCOND_PAPER,
        )
    )
    return out


SUITE = Suite(
    name="mtl",
    description=(
        "multi-task gradient aggregators and loss weightings (gradkit.mtl) with Adam: the "
        "CAGrad/Nash-MTL two-objective toy and MultiDigits (two digit tasks, balanced and 100× "
        "imbalanced)"
    ),
    tasks={
        "toy_cagrad": ToyTask(TOY_SETTINGS["toy_cagrad"]),
        "toy_nash": ToyTask(TOY_SETTINGS["toy_nash"]),
        "multidigits": MultiDigitsTask("multidigits", 1.0),
        "multidigits_imb100": MultiDigitsTask("multidigits_imb100", 100.0),
    },
    default_optimizers=default_methods,
    verdicts=mtl_verdicts,
    # 1 thread, also outside smoke mode: the toy is Python overhead and MultiDigits is tiny;
    # measured beside another job (load 3.5–4), the MultiDigits single-task baselines took
    # 26 s with 1 thread and over 10 min with 2.
    default_threads=1,
    resolve=resolve_mtl_methods,
    applies=_applies,
    plot=plot_task,
)
