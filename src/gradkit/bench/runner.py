"""The bench engine: the one run loop of every suite, ``tasks × methods × variants × seeds``.

The engine owns seeding, timing, thread count, progress and the records; a suite and its
tasks supply only what differs through named hooks (:class:`~gradkit.bench.suites.Suite`:
``resolve``, ``applies``, ``verdicts``, ``plot``; :class:`~gradkit.bench.tasks.base.Task`:
``hyperparams``, ``variants``, ``prepare``, ``run``, ``info``).

:func:`run_trial` runs one ``(method, hyper-parameters, task, seed)`` :class:`Trial` and
returns its :class:`Record`; it is the unit a tuner calls. :func:`run_tasks` plans the trials
of a suite and runs them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.methods import BenchMethod
from gradkit.bench.results import Record, TaskInfo
from gradkit.bench.runtime import TrialPruned, num_threads, progress_bar, seed_everything
from gradkit.bench.tasks.base import Outcome, Task, Trial

__all__ = [
    "MAX_CURVE_POINTS",
    "Trial",
    "normalize_seeds",
    "normalize_steps",
    "plan_trials",
    "run_tasks",
    "run_trial",
    "subsample",
]

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


def run_trial(suite: str, trial: Trial, *, catch_errors: bool = True) -> Record:
    """Seed everything, run ``trial`` once and wrap its outcome into a :class:`Record`.

    With ``catch_errors``, an exception raised while training (for example an optimizer that
    refuses non-finite gradients) becomes a record with status ``"error"`` rather than
    aborting the suite. The variant's overrides are fixed on the method
    (:meth:`~gradkit.bench.methods.BenchMethod.with_overrides`). The record's wall time is the
    time :meth:`Task.run` took, unless the outcome carries its own.

    Example:
        >>> from gradkit.bench.methods import BASELINES
        >>> from gradkit.bench.tasks import FunctionTask
        >>> r = run_trial("demo", Trial(FunctionTask("f1"), BASELINES["adam"], 0, 50))
        >>> (r.task, r.method, r.status, len(r.curve), r.hyperparams["lr"])
        ('f1', 'adam', 'ok', 51, 0.1)
    """
    task = trial.task
    method = trial.method.with_overrides(trial.overrides)
    seed_everything(trial.seed)
    start = time.perf_counter()
    error: str | None = None
    used: dict = {}
    try:
        outcome, used = task.run(method, trial.seed, trial.steps, trial.smoke)
    except TrialPruned:
        raise  # the tuner's decision, not a failure of the method
    except Exception as exc:
        if not catch_errors:
            raise
        outcome = Outcome(final_loss=None, curve=[], status="diverged")
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - start
    curve, stride = subsample(outcome.curve)
    error = error or outcome.error
    return Record(
        suite=suite,
        task=task.name,
        method=method.name,
        seed=trial.seed,
        final_loss=outcome.final_loss,
        curve=tuple(curve),
        wall_time_s=elapsed if outcome.wall_time_s is None else outcome.wall_time_s,
        steps=trial.steps if outcome.steps is None else outcome.steps,
        accuracy=outcome.accuracy,
        curve_stride=stride,
        metrics=dict(outcome.metrics),
        hyperparams=used or method.hyperparams(task.hyperparams(method)),
        status="error" if error else outcome.status,
        error=error,
        variant=trial.variant,
        eval_curve=tuple((int(k), v) for k, v in outcome.eval_curve),
        artifacts=dict(outcome.artifacts),
    )


def run_one(
    suite: str,
    task: Task[Any],
    method: BenchMethod,
    seed: int,
    steps: int,
    smoke: bool,
    catch_errors: bool = True,
    variant: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> Record:
    """:func:`run_trial` with the trial's fields as arguments (kept for callers of 0.x)."""
    trial = Trial(task, method, seed, steps, smoke, variant, dict(overrides or {}))
    return run_trial(suite, trial, catch_errors=catch_errors)


def plan_trials(
    task: Task[Any],
    methods: Sequence[BenchMethod],
    seeds: Sequence[int],
    steps: int,
    smoke: bool = False,
) -> list[Trial]:
    """The trials of ``task``: every method, variant (:meth:`Task.variants`) and seed, in that
    order (a deterministic task runs the first seed only)."""
    return [
        Trial(task, method, seed, steps, smoke, label, overrides)
        for method in methods
        for label, overrides in task.variants(method, smoke)
        for seed in (seeds[:1] if task.deterministic else seeds)
    ]


def check_curvature_refresh(task: Task[Any], methods: Sequence[BenchMethod]) -> None:
    """Refuse a second-order method that would run without its curvature refresh.

    A method whose optimizer class sets ``needs_curvature_refresh`` (SophiaG, SophiaH) is only
    itself when its curvature estimate is refreshed every few steps (the official recipe: GNB
    every k = 10 steps on a fresh batch, the sampled-label gradient clipped to 1.0); without a
    refresh it silently runs as clipped sign-momentum under its own name. The task must call
    the hook (:attr:`Task.supports_refresh`) and the method must carry one.

    Raises:
        BenchConfigError: naming the method and the task.
    """
    for method in methods:
        cls = getattr(method, "cls", None)
        if not getattr(cls, "needs_curvature_refresh", False):
            continue
        refresh = getattr(method, "refresh", None)
        if refresh is None or not task.supports_refresh:
            why = (
                f"task {task.name!r} does not call a curvature refresh"
                if not task.supports_refresh
                else "no refresh hook is set for it in this suite"
            )
            raise BenchConfigError(
                f"{method.name} needs a curvature refresh every few steps (the official recipe: "
                f"GNB every 10 steps on a fresh batch, gradient clipped to 1.0), and {why}; "
                "without it the method would run as clipped sign-momentum under its name. "
                "Run it in the 'lm' suite (SophiaG), or give the method a refresh hook "
                "(Method(refresh=..., refresh_every=...)) on a task that supports one."
            )


def not_run_info(task: Task[Any], steps: int) -> TaskInfo:
    info = task.info(steps)
    return dataclasses.replace(
        info, description=info.description + ". Not run: no selected method applies to this task"
    )


def run_tasks(
    suite: str,
    tasks: Sequence[Task[Any]],
    methods: Sequence[BenchMethod],
    seeds: Sequence[int],
    *,
    steps: int | None = None,
    smoke: bool = False,
    progress: bool = False,
    threads: int | None = 2,
    on_record: Callable[[Record], None] | None = None,
    catch_errors: bool = True,
    applies: Callable[[Task[Any], BenchMethod], bool] | None = None,
) -> tuple[list[Record], dict[str, TaskInfo]]:
    """Run every task with every method, variant and seed (see :func:`plan_trials`).

    For each task: the methods that ``applies(task, method)`` accepts (all by default), then
    :meth:`Task.prepare` with the task's trials, then :func:`run_trial` for each, then
    :meth:`Task.info`. A task no method applies to is not run; its info says so.

    Args:
        suite: suite name stored in each record.
        steps: overrides every task's default number of optimizer steps.
        progress: show a tqdm bar on stderr (only when stderr is a terminal).
        threads: ``torch.set_num_threads`` value during the run; ``None`` leaves it alone.
        on_record: called with each record as soon as it exists.
        catch_errors: record exceptions raised by a run (status ``"error"``) and go on;
            ``False`` lets them propagate.
        applies: the suite's ``applies`` hook.

    Returns:
        The records in run order and the :class:`TaskInfo` of each task.
    """
    plans = {}
    for task in tasks:
        chosen = [m for m in methods if applies is None or applies(task, m)]
        check_curvature_refresh(task, chosen)
        plans[task.name] = plan_trials(
            task, chosen, seeds, steps or task.default_steps(smoke), smoke
        )
    infos: dict[str, TaskInfo] = {}
    records: list[Record] = []
    bar = progress_bar(sum(len(p) for p in plans.values()), progress, desc=suite)
    try:
        with num_threads(threads):
            for task in tasks:
                task_steps = steps or task.default_steps(smoke)
                trials = plans[task.name]
                if not trials:
                    infos[task.name] = not_run_info(task, task_steps)
                    continue
                task.prepare(trials, bar.set_postfix_str)
                for trial in trials:
                    bar.set_postfix_str(trial.label)
                    record = run_trial(suite, trial, catch_errors=catch_errors)
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
                    bar.update(1)
                infos[task.name] = task.info(task_steps)
    finally:
        bar.close()
    return records, infos
