"""The ``mtl`` suite: multi-task gradient aggregators from :mod:`gradkit.mtl`, Adam on top.

Methods are aggregator names (``mean``, ``sum``, ``pcgrad``, ``cagrad``, ``mgda``, ``samgs``,
``gcond``) plus ``single_task`` (the MultiDigits baseline). They are looked up lazily in
``gradkit.mtl``; the default list is ``single_task`` and every aggregator that exists there,
and the report names the missing ones as *not available*.

Tasks: ``toy_cagrad`` and ``toy_nash`` (the two-objective toy of CAGrad/Nash-MTL, see
:mod:`gradkit.bench.tasks.mtl_toy`), ``multidigits`` and ``multidigits_imb100`` (two digit
classification tasks on one image, the second with a 100× loss on task 1; see
:mod:`gradkit.bench.tasks.mtl_digits`). Verdicts: :func:`mtl_verdicts`.

Two things the shared bench engine does not offer, worked around here:

* :meth:`Suite.run` resolves method names in the *optimizer* registry; :class:`MTLSuite`
  overrides ``run`` to resolve aggregator names instead (each method is a
  :class:`~gradkit.bench.methods.Method` with ``cls=torch.optim.Adam``, so the shared runner,
  seeding, records and report work unchanged).
* :class:`MTLResults` keeps the toy trajectories in memory and has a ``draw_task_plot`` method,
  which :func:`gradkit.bench.plots.plot_task` uses when it returns ``True``. For the toy tasks
  the plot is the trajectories of every method over the loss contours.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.methods import Method
from gradkit.bench.results import BenchResults, Record, RunSettings, Verdict
from gradkit.bench.runner import normalize_seeds, normalize_steps, run_tasks
from gradkit.bench.runtime import resolve_threads
from gradkit.bench.stats import format_number
from gradkit.bench.suites.base import Suite, parse_names
from gradkit.bench.tasks.base import Task
from gradkit.bench.tasks.mtl_common import (
    AGGREGATORS,
    SINGLE_TASK,
    available_aggregators,
    mtl_method,
    unavailable_aggregators,
)
from gradkit.bench.tasks.mtl_digits import MultiDigitsTask
from gradkit.bench.tasks.mtl_toy import REACH_TOL, TOY_SETTINGS, ToyTask
from gradkit.bench.verdicts import compare_groups, not_run, verdict_not_worse
from gradkit.bench.versions import versions

__all__ = [
    "SUITE",
    "MTLResults",
    "MTLSuite",
    "default_methods",
    "extreme_verdict",
    "higher_verdict",
    "mtl_verdicts",
    "reach_verdict",
]

CAGRAD_PAPER = "Liu et al., CAGrad, NeurIPS 2021"
SAMGS_PAPER = "Borsani et al., SAM-GS, ECML-PKDD 2025"
PCGRAD_PAPER = "Yu et al., PCGrad, NeurIPS 2020"
MGDA_PAPER = "Sener & Koltun, MTL as Multi-Objective Optimization, NeurIPS 2018"
GCOND_PAPER = "Limarenko & Studenikina, GCond, arXiv 2509.07252"

DISPLAY = {
    "mean": "Mean (LS)",
    "sum": "Sum (LS)",
    "pcgrad": "PCGrad",
    "cagrad": "CAGrad",
    "mgda": "MGDA",
    "samgs": "SAM-GS",
    "gcond": "GCond",
    SINGLE_TASK: "single-task",
}

#: |x1| beyond which an end point on the Pareto set counts as an "extreme" point.
EXTREME_X1 = 3.5
#: Accuracy tolerance (absolute floor of the noise margin), Δm% tolerance in points.
ACC_ATOL = 0.005
DM_ATOL = 0.5


def default_methods() -> list[str]:
    """``single_task`` and every aggregator that ``gradkit.mtl`` provides."""
    return [SINGLE_TASK, *available_aggregators()]


# -- results with trajectories ------------------------------------------------------------------


@dataclasses.dataclass
class MTLResults(BenchResults):
    """:class:`BenchResults` plus the toy trajectories (in memory only, not in JSON).

    ``trajectories[task][method]`` is an array ``[points, starts, 2]`` of (x1, x2).
    """

    trajectories: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    def draw_task_plot(self, task: str, path: Path) -> bool:
        """Draw the toy trajectory plot of ``task`` to ``path``; ``False`` for other tasks."""
        if task not in TOY_SETTINGS or not self.select(task=task):
            return False
        from gradkit.bench.tasks.mtl_toy import plot_trajectories

        runs = {}
        for method in self.methods():
            recs = [r for r in self.select(task, method) if r.curve]
            if recs:
                traj = self.trajectories.get(task, {}).get(method)
                runs[method] = (traj, recs[0])
        plot_trajectories(TOY_SETTINGS[task], runs, path, title=f"{self.settings.suite} / {task}")
        return True


# -- the suite ----------------------------------------------------------------------------------


def _accepts(task: Task, method: Method) -> bool:
    return not (isinstance(task, ToyTask) and method.name == SINGLE_TASK)


def _resolve(names: Sequence[str]) -> list[Method]:
    methods: dict[str, Method] = {}
    for name in names:
        method = mtl_method(name)
        if method.name in methods:
            raise BenchConfigError(f"method {name!r} is selected twice")
        methods[method.name] = method
    return list(methods.values())


class MTLSuite(Suite):
    """A :class:`Suite` whose methods are aggregators (see the module doc)."""

    def run(
        self,
        *,
        optimizers: str | Sequence[str] | None = None,
        tasks: str | Sequence[str] | None = None,
        seeds: int | Sequence[int] | None = None,
        steps: int | None = None,
        smoke: bool = False,
        progress: bool = False,
        num_threads: int | str | None = "auto",
        on_record: Callable[[Record], None] | None = None,
    ) -> BenchResults:
        """As :meth:`Suite.run`, with aggregator names for ``optimizers``; returns
        :class:`MTLResults`. The toy tasks skip ``single_task``. ``num_threads="auto"`` means 1
        thread (also outside smoke mode)."""
        names = parse_names(optimizers, "method") or self.default_optimizers()
        methods = _resolve(names)
        selected = self.select_tasks(parse_names(tasks, "task"))
        seed_list = normalize_seeds(seeds, 1 if smoke else self.default_seeds)
        steps = normalize_steps(steps)
        # "auto" means 1 thread here, also outside smoke mode: the toy is Python overhead and
        # MultiDigits is tiny; measured beside another job (load 3.5–4), the MultiDigits
        # single-task baselines took 26 s with 1 thread and over 10 min with 2.
        threads = resolve_threads(1 if num_threads == "auto" else num_threads, smoke)
        missing = unavailable_aggregators()
        records: list[Record] = []
        infos = {}
        trajectories: dict[str, dict[str, np.ndarray]] = {}
        for task in selected:
            chosen = [m for m in methods if _accepts(task, m)]
            if not chosen:
                info0 = task.info(steps or task.default_steps(smoke))
                infos[task.name] = dataclasses.replace(
                    info0,
                    description=info0.description
                    + ". Not run: no selected method applies to this task"
                    + (
                        f" (not available in this gradkit.mtl: {', '.join(missing)})"
                        if missing
                        else ""
                    ),
                )
                continue
            sink: dict[str, np.ndarray] = {}
            if isinstance(task, ToyTask):
                task.trajectory_sink = sink
            try:
                recs, info = run_tasks(
                    self.name,
                    [task],
                    chosen,
                    seed_list,
                    steps=steps,
                    smoke=smoke,
                    progress=progress,
                    threads=threads,
                    on_record=on_record,
                )
            finally:
                if isinstance(task, ToyTask):
                    task.trajectory_sink = None
            if sink:
                trajectories[task.name] = sink
            records += recs
            for name, ti in info.items():
                if missing:
                    ti = dataclasses.replace(
                        ti,
                        description=ti.description
                        + ". Not available in this gradkit.mtl: "
                        + ", ".join(missing),
                    )
                infos[name] = ti
        results = MTLResults(
            settings=RunSettings(
                suite=self.name,
                optimizers=tuple(m.name for m in methods),
                tasks=tuple(t.name for t in selected),
                seeds=seed_list,
                steps=steps,
                smoke=smoke,
                num_threads=threads,
            ),
            versions=versions(),
            tasks=infos,
            records=records,
            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            trajectories=trajectories,
        )
        results.verdicts = list(self.verdicts(results))
        return results


# -- verdicts -----------------------------------------------------------------------------------


def _values(results: BenchResults, task: str, method: str, what: str) -> list[float | None]:
    out: list[float | None] = []
    for r in results.select(task, method):
        if r.status == "error":
            out.append(None)
        elif what == "accuracy":
            out.append(r.accuracy)
        else:
            out.append(r.metrics.get(what))
    return out


def _missing(results: BenchResults, methods: Sequence[str], tasks: Sequence[str]) -> list[str]:
    unavailable = set(unavailable_aggregators())
    have_m, have_t = set(results.settings.optimizers), set(results.settings.tasks)
    out = []
    for m in dict.fromkeys(methods):
        if m not in have_m:
            if m in unavailable:
                out.append(f"{m} (gradkit.mtl.{AGGREGATORS[m][0]} not available)")
            else:
                out.append(f"method {m}")
    return out + [f"task {t}" for t in tasks if t not in have_t]


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


def higher_verdict(
    claim: str,
    paper: str,
    name_a: str,
    a: Sequence[float | None],
    name_b: str,
    b: Sequence[float | None],
    *,
    quantity: str,
    atol: float,
    tasks: Sequence[str] = (),
) -> Verdict:
    """Verdict on "``a`` is higher than ``b``" beyond seed noise (pure; the noise model of
    :mod:`gradkit.bench.verdicts`): ``holds`` if significantly higher, ``does not hold`` if
    significantly lower, else ``inconclusive``."""
    c = compare_groups(
        [None if v is None else -v for v in a], [None if v is None else -v for v in b], atol=atol
    )
    verdict = {"lower": "holds", "higher": "does not hold"}.get(c.outcome, "inconclusive")
    ma = None if c.a.mean is None else -c.a.mean
    mb = None if c.b.mean is None else -c.b.mean
    text = f"{quantity}: {name_a} {format_number(ma)} vs {name_b} {format_number(mb)}"
    if c.diff is not None:
        text += f" (diff {format_number(-c.diff, 3)}"
        text += f", margin {format_number(c.margin, 2)})" if c.margin is not None else ")"
    if c.reason:
        text += f" — {c.reason}"
    numbers = {name_a: ma, name_b: mb, "diff": None if c.diff is None else -c.diff}
    numbers["margin"] = c.margin
    return Verdict(claim, paper, verdict, text, tuple(tasks), numbers)


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
    return higher_verdict(
        claim,
        paper,
        name_a,
        _values(results, task, a, what),
        name_b,
        _values(results, task_b, b, what),
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
        _values(results, task, a, what),
        DISPLAY.get(b, b),
        _values(results, task, b, what),
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
    for method, paper in (("pcgrad", PCGRAD_PAPER), ("cagrad", CAGRAD_PAPER), ("mgda", MGDA_PAPER)):
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


def _all_verdicts(results: BenchResults) -> list[Verdict]:
    return mtl_verdicts(results)


SUITE = MTLSuite(
    name="mtl",
    description=(
        "multi-task gradient aggregators (gradkit.mtl) with Adam: the CAGrad/Nash-MTL "
        "two-objective toy and MultiDigits (two digit tasks, balanced and 100× imbalanced)"
    ),
    tasks={
        "toy_cagrad": ToyTask(TOY_SETTINGS["toy_cagrad"]),
        "toy_nash": ToyTask(TOY_SETTINGS["toy_nash"]),
        "multidigits": MultiDigitsTask("multidigits", 1.0),
        "multidigits_imb100": MultiDigitsTask("multidigits_imb100", 100.0),
    },
    default_optimizers=default_methods,
    verdicts=_all_verdicts,
)
