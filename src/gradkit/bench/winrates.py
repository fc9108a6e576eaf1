"""Win rates across tasks, with bootstrap confidence intervals (pure).

On each task, every pair of methods is compared on the task's tuning objective (the mean over
evaluation seeds, in the objective's direction): a win counts 1, a tie 0.5, a loss 0. A
method's win rate is the mean over every task and every other method it met. Its interval
comes from resampling each (task, method)'s evaluation seeds with replacement and recomputing
every win rate, :data:`~gradkit.bench.stats.BOOTSTRAP_SAMPLES` times; deterministic tasks (one
run) contribute the same outcome to every resample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradkit.bench.results import BenchResults
from gradkit.bench.stats import BOOTSTRAP_SAMPLES

__all__ = ["WinRate", "win_rates"]


@dataclass(frozen=True)
class WinRate:
    """One method's win rate: ``rate`` in [0, 1] over ``games`` comparisons, and its 95 %
    bootstrap interval ``(low, high)``."""

    method: str
    rate: float
    low: float
    high: float
    games: int


def _objective(results: BenchResults, task: str) -> tuple[str, bool]:
    """The task's tuning objective and whether higher is better."""
    for summary in results.tuning:
        if summary.task == task:
            return summary.objective, summary.direction == "maximize"
    info = results.tasks.get(task)
    return "final_loss", bool(info and info.higher_is_better.get("final_loss", False))


def _values(results: BenchResults, task: str, method: str, what: str) -> list[float]:
    """Finite per-seed values; a failed run counts as the worst possible value."""
    out = []
    for r in results.select(task, method):
        v = r.value(what) if r.status == "ok" else None
        out.append(float(v) if v is not None and math.isfinite(float(v)) else math.nan)
    return out


def win_rates(
    results: BenchResults, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> list[WinRate]:
    """Every method's win rate across the tasks of ``results`` (see the module docstring).

    Example:
        >>> from gradkit.bench.results import Record, RunSettings
        >>> recs = [Record("s", t, m, 0, v, (), 0.0, 1) for t, m, v in
        ...         [("a", "x", 1.0), ("a", "y", 2.0), ("b", "x", 1.0), ("b", "y", 1.0)]]
        >>> res = BenchResults(RunSettings("s", ("x", "y"), ("a", "b"), (0,)), {}, {}, recs)
        >>> [(w.method, w.rate, w.games) for w in win_rates(res)]
        [('x', 0.75, 2), ('y', 0.25, 2)]
    """
    rng = np.random.default_rng(seed)
    methods = results.methods()
    # per task: method -> values (NaN = failed, worst)
    tables: list[tuple[Mapping[str, np.ndarray], bool]] = []
    for task in results.task_names():
        what, higher = _objective(results, task)
        per = {m: np.array(v) for m in methods if (v := _values(results, task, m, what))}
        if len(per) >= 2:
            tables.append((per, higher))
    if not tables:
        return []

    def scores(draw: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, int]]:
        total: dict[str, list[float]] = {m: [0.0, 0.0] for m in methods}
        for means, (_, higher) in zip(draw, tables, strict=True):
            sign = -1.0 if higher else 1.0
            keys = list(means)
            for a in keys:
                for b in keys:
                    if a == b:
                        continue
                    va, vb = means[a], means[b]
                    ka = math.inf if math.isnan(va) else sign * va
                    kb = math.inf if math.isnan(vb) else sign * vb
                    total[a][0] += 1.0 if ka < kb else 0.5 if ka == kb else 0.0
                    total[a][1] += 1
        return {m: (s / n, int(n)) for m, (s, n) in total.items() if n}

    def mean(v: np.ndarray) -> float:
        return math.nan if np.isnan(v).any() else float(v.mean())

    point = scores([{m: mean(v) for m, v in per.items()} for per, _ in tables])
    boots: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(samples):
        draw = [
            {m: mean(v[rng.integers(0, v.size, v.size)]) for m, v in per.items()}
            for per, _ in tables
        ]
        for m, (rate, _) in scores(draw).items():
            boots[m].append(rate)
    out = []
    for m, (rate, games) in point.items():
        low, high = np.quantile(boots[m], [0.025, 0.975])
        out.append(WinRate(m, rate, float(low), float(high), games))
    return out
