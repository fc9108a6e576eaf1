"""The loop shared by every suite: tasks × methods × seeds → :class:`Record` objects."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.methods import Method
from gradkit.bench.results import Record, TaskInfo
from gradkit.bench.runtime import num_threads, progress_bar, seed_everything
from gradkit.bench.tasks.base import Outcome, Task

__all__ = ["MAX_CURVE_POINTS", "normalize_seeds", "normalize_steps", "run_tasks", "subsample"]

#: Curves longer than this are subsampled with a constant stride before they are stored.
MAX_CURVE_POINTS = 500


def normalize_seeds(seeds: int | Sequence[int] | None, default: int) -> tuple[int, ...]:
    """Seeds as a tuple: an int ``N`` means ``0 .. N-1``; a sequence is used as given.

    Raises:
        BenchConfigError: non-positive count, negative, non-integer or duplicate seeds.
    """
    if seeds is None:
        seeds = default
    if isinstance(seeds, bool):
        raise BenchConfigError(f"seeds must be an int or a list of ints, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise BenchConfigError(f"the number of seeds must be at least 1, got {seeds}")
        return tuple(range(seeds))
    out = tuple(seeds)
    if not out:
        raise BenchConfigError("the seed list is empty")
    for s in out:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise BenchConfigError(f"seeds must be non-negative ints, got {s!r}")
    if len(set(out)) != len(out):
        raise BenchConfigError(f"duplicate seeds in {list(out)}")
    return out


def normalize_steps(steps: int | None) -> int | None:
    """Validate a step-count override (``None`` = each task's default)."""
    if steps is None:
        return None
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise BenchConfigError(f"steps must be a positive int, got {steps!r}")
    return steps


def subsample(
    curve: Sequence[float], max_points: int = MAX_CURVE_POINTS
) -> tuple[list[float], int]:
    """Every ``stride``-th value of ``curve`` (starting with the first) and that stride,
    the smallest stride that keeps at most ``max_points`` values."""
    stride = max(1, math.ceil(len(curve) / max_points))
    return list(curve[::stride]), stride


def _error_outcome() -> Outcome:
    return Outcome(final_loss=None, curve=[], status="diverged")


def run_one(
    suite: str,
    task: Task,
    method: Method,
    seed: int,
    steps: int,
    smoke: bool,
    catch_errors: bool = True,
    variant: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> Record:
    """Seed everything, run ``task`` once and wrap the outcome into a :class:`Record`.

    With ``catch_errors``, an exception raised while training (for example an optimizer that
    refuses non-finite gradients) becomes a record with status ``"error"`` rather than
    aborting the suite. ``overrides`` (a variant's hyper-parameters, see
    :meth:`Task.variants`) are added to the method's fixed keyword arguments; ``variant`` is
    the label stored in the record.
    """
    if overrides:
        method = dataclasses.replace(method, fixed={**method.fixed, **overrides})
    seed_everything(seed)
    start = time.perf_counter()
    error: str | None = None
    used: dict = {}
    try:
        outcome, used = task.run(method, seed, steps, smoke)
    except Exception as exc:
        if not catch_errors:
            raise
        outcome = _error_outcome()
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - start
    curve, stride = subsample(outcome.curve)
    status = "error" if error else outcome.status
    return Record(
        suite=suite,
        task=task.name,
        method=method.name,
        seed=seed,
        final_loss=outcome.final_loss,
        curve=tuple(curve),
        wall_time_s=elapsed,
        steps=steps,
        accuracy=outcome.accuracy,
        curve_stride=stride,
        metrics=dict(outcome.metrics),
        hyperparams=used or method.hyperparams(task.hyperparams(method)),
        status=status,
        error=error,
        variant=variant,
        eval_curve=tuple((int(k), v) for k, v in outcome.eval_curve),
    )


def run_tasks(
    suite: str,
    tasks: Sequence[Task],
    methods: Sequence[Method],
    seeds: Sequence[int],
    *,
    steps: int | None = None,
    smoke: bool = False,
    progress: bool = False,
    threads: int | None = 2,
    on_record: Callable[[Record], None] | None = None,
    catch_errors: bool = True,
) -> tuple[list[Record], dict[str, TaskInfo]]:
    """Run every task with every method, variant and seed (deterministic tasks: first seed
    only). Variants come from :meth:`Task.variants` (one per method unless a task defines a
    grid).

    Args:
        suite: suite name stored in each record.
        steps: overrides every task's default number of optimizer steps.
        progress: show a tqdm bar on stderr (only when stderr is a terminal).
        threads: ``torch.set_num_threads`` value during the run; ``None`` leaves it alone.
        on_record: called with each record as soon as it exists.
        catch_errors: record exceptions raised by a run (status ``"error"``) and go on;
            ``False`` lets them propagate.

    Returns:
        The records in run order and the :class:`TaskInfo` of each task.
    """
    plan = [
        (task, method, variant, seed)
        for task in tasks
        for method in methods
        for variant in task.variants(method, smoke)
        for seed in (seeds[:1] if task.deterministic else seeds)
    ]
    infos = {t.name: t.info(steps or t.default_steps(smoke)) for t in tasks}
    records: list[Record] = []
    bar = progress_bar(len(plan), progress, desc=suite)
    try:
        with num_threads(threads):
            for task, method, (label, overrides), seed in plan:
                shown = f"{method.name} {label}" if label else method.name
                bar.set_postfix_str(f"{task.name} {shown} seed {seed}")
                record = run_one(
                    suite,
                    task,
                    method,
                    seed,
                    infos[task.name].steps,
                    smoke,
                    catch_errors,
                    variant=label,
                    overrides=overrides,
                )
                records.append(record)
                if on_record is not None:
                    on_record(record)
                bar.update(1)
    finally:
        bar.close()
    return records, infos
