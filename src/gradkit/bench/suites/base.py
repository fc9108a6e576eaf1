"""The :class:`Suite` object every suite module exposes as ``SUITE``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradkit.bench.errors import BenchConfigError, unknown_name
from gradkit.bench.methods import BenchMethod, Method, resolve_methods
from gradkit.bench.results import BenchResults, Verdict
from gradkit.bench.runner import normalize_seeds, normalize_steps
from gradkit.bench.runtime import resolve_threads
from gradkit.bench.study import MEMORY_URL, StudyStore, memory_store
from gradkit.bench.tasks.base import Task
from gradkit.bench.tuning import (
    BenchInterrupted,
    Plan,
    Protocol,
    collect,
    plan_protocol,
    run_protocol,
    task_infos,
)

__all__ = ["SMOKE_TRIALS", "Suite", "parse_names"]

#: Tuning trials per method in smoke mode (at most).
SMOKE_TRIALS = 1


def parse_names(value: str | Sequence[str] | None, kind: str) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]`` (stripped, lower case); ``None`` stays."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip().lower() for v in items if str(v).strip()]
    if not names:
        raise BenchConfigError(f"empty {kind} list")
    return names


@dataclass(frozen=True)
class Suite:
    """A named group of tasks with its methods, its verdict rules and its hooks.

    The engine (:func:`gradkit.bench.runner.run_tasks`) owns the run loop, seeding, timing,
    progress and the results (:meth:`BenchResults.assemble`); a suite supplies only what
    differs, through these attributes (all but the first four optional):

    Attributes:
        name: the ``--suite`` value.
        description: one line for help texts and the report.
        tasks: task name → :class:`Task`, in run order.
        default_optimizers: returns the method names run when ``--optimizers`` is not given
            (a function, so that it can read the registry at run time).
        verdicts: computes the verdicts from the finished results (pure).
        default_seeds: number of seeds when ``--seeds`` is not given (1 in smoke mode).
        extra_methods: the suite's own optimizer definitions (name → :class:`Method`), looked
            up before the registry's, for the default ``resolve``.
        default_threads: what ``num_threads="auto"`` means outside smoke mode (``None``: the
            engine's default, 2).
        resolve: hook ``resolve(names) -> methods`` turning method names into
            :class:`~gradkit.bench.methods.BenchMethod` objects (aggregators, strategies...).
            Default: optimizers from the registry, the torch baselines and
            :attr:`extra_methods`. Raises ``BenchConfigError`` on unknown or repeated names.
        applies: hook ``applies(task, method) -> bool``: whether ``method`` runs on ``task``
            (default: every method on every task).
        plot: hook ``plot(results, task, path) -> bool``: draw the suite's own figure for
            ``task`` to ``path`` and return ``True``, or return ``False`` for the standard
            loss curves. It reads only ``results`` (records, their metrics and artifacts), so
            a report re-renders from ``results.json`` (``gradkit report DIR``).
        default_trials: the suite's tuning budget, trials per method and task
            (:mod:`gradkit.bench.tuning`); ``--trials`` overrides it.
        prune: stop unpromising tuning trials early (Optuna's median pruner), for suites
            whose time limit needs it.

    Tasks add their own hooks (:class:`~gradkit.bench.tasks.base.Task`): the training of one
    trial (``run``), its extra metrics and artifacts (in the returned ``Outcome``), variants
    and a ``prepare`` step.
    """

    name: str
    description: str
    tasks: Mapping[str, Task[Any]]
    default_optimizers: Callable[[], list[str]]
    verdicts: Callable[[BenchResults], list[Verdict]] = lambda results: []
    default_seeds: int = 3
    extra_methods: Callable[[], Mapping[str, Method]] | None = None
    default_threads: int | None = None
    resolve: Callable[[Sequence[str]], Sequence[BenchMethod]] | None = None
    applies: Callable[[Task[Any], BenchMethod], bool] | None = None
    plot: Callable[[BenchResults, str, Path], bool] | None = None
    default_trials: int = 8
    prune: bool = False

    def select_tasks(self, names: Sequence[str] | None) -> list[Task[Any]]:
        """The tasks called ``names`` (all when ``None``); unknown names raise."""
        if names is None:
            return list(self.tasks.values())
        chosen: dict[str, Task[Any]] = {}
        for name in names:
            if name not in self.tasks:
                raise unknown_name("task", name, self.tasks)
            chosen[name] = self.tasks[name]
        return list(chosen.values())

    def resolve_methods(self, names: str | Sequence[str] | None) -> list[BenchMethod]:
        """The methods called ``names`` (default :attr:`default_optimizers`), through the
        :attr:`resolve` hook."""
        kind = "optimizer" if self.resolve is None else "method"
        chosen = parse_names(names, kind) or self.default_optimizers()
        if self.resolve is not None:
            return list(self.resolve(chosen))
        extra = self.extra_methods() if self.extra_methods is not None else None
        return list(resolve_methods(chosen, extra))

    def plan(
        self,
        *,
        optimizers: str | Sequence[str] | None = None,
        tasks: str | Sequence[str] | None = None,
        seeds: int | Sequence[int] | None = None,
        steps: int | None = None,
        smoke: bool = False,
        trials: int | None = None,
    ) -> Plan:
        """What a run with these settings would do (nothing runs, no storage is touched).

        Raises:
            BenchConfigError: unknown method or task names, bad seeds, steps or trials, a bad
                search space.
        """
        methods = self.resolve_methods(optimizers)
        selected = self.select_tasks(parse_names(tasks, "task"))
        seed_list = normalize_seeds(seeds, 1 if smoke else self.default_seeds)
        protocol = Protocol(
            budget=self.budget(trials, smoke), seeds=seed_list, prune=self.prune and not smoke
        )
        plan = plan_protocol(
            self.name,
            selected,
            methods,
            protocol,
            steps=normalize_steps(steps),
            smoke=smoke,
            applies=self.applies,
        )
        plan.methods = [m.name for m in methods]
        plan.steps = normalize_steps(steps)
        return plan

    def budget(self, trials: int | None, smoke: bool) -> int:
        """Tuning trials per method: ``trials`` if given, else :attr:`default_trials` (at most
        :data:`SMOKE_TRIALS` in smoke mode).

        Raises:
            BenchConfigError: ``trials`` is not a non-negative int.
        """
        if trials is None:
            return min(self.default_trials, SMOKE_TRIALS) if smoke else self.default_trials
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
            raise BenchConfigError(f"trials must be a non-negative int, got {trials!r}")
        return trials

    def execute(
        self,
        plan: Plan,
        *,
        store: StudyStore | None = None,
        progress: bool = False,
        num_threads: int | str | None = "auto",
    ) -> BenchResults:
        """Run what is not finished of ``plan`` and assemble the results from the storage.

        Args:
            store: the study database (:func:`gradkit.bench.study.open_store`); ``None``
                keeps everything in memory.

        Raises:
            BenchInterrupted: Ctrl-C or SIGTERM; its ``results`` attribute holds the partial
                results (``settings.complete`` is false).
        """
        if num_threads == "auto" and self.default_threads is not None and not plan.smoke:
            num_threads = self.default_threads
        threads = resolve_threads(num_threads, plan.smoke)
        store = store if store is not None else memory_store()
        interrupted: BenchInterrupted | None = None
        try:
            run_protocol(plan, store, progress=progress, threads=threads)
        except BenchInterrupted as exc:
            interrupted = exc
        records, trial_records, summaries, complete = collect(plan, store)
        results = BenchResults.assemble(
            suite=self.name,
            methods=plan.methods,
            tasks=task_infos(plan),
            seeds=plan.protocol.seeds,
            records=records,
            steps=plan.steps,
            smoke=plan.smoke,
            num_threads=threads,
            verdicts=self.verdicts,
            trials=plan.protocol.budget,
            storage=None if store.url == MEMORY_URL else store.url,
            complete=complete and interrupted is None,
            tuning=summaries,
            trial_records=trial_records,
        )
        if interrupted is not None:
            interrupted.results = results
            raise interrupted
        return results

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
        trials: int | None = None,
        store: StudyStore | None = None,
    ) -> BenchResults:
        """Run the suite under the equal-budget tuning protocol and return its results
        (nothing is written to disk unless ``store`` is a database).

        Args:
            optimizers: method names (comma-separated string or list); default
                :attr:`default_optimizers`.
            tasks: task names; default all tasks.
            seeds: evaluation seeds: a count or an explicit list; default
                :attr:`default_seeds` (1 in smoke mode).
            steps: optimizer steps per run, overriding every task's default.
            smoke: a few steps on tiny data, for CI.
            progress: show a progress bar on stderr.
            num_threads: ``torch.set_num_threads`` during the run; ``"auto"``: 2 (or the
                suite's :attr:`default_threads`), 1 in smoke mode; ``None``: leave torch's
                setting.
            trials: tuning trials per method and task (default :attr:`default_trials`; ``0``:
                the tasks' own hyper-parameters, untuned).
            store: the study database; ``None``: in memory.

        Raises:
            BenchConfigError: unknown method or task names, bad seeds, steps or trials.
            BenchInterrupted: Ctrl-C or SIGTERM (with the partial results).
        """
        plan = self.plan(
            optimizers=optimizers, tasks=tasks, seeds=seeds, steps=steps, smoke=smoke,
            trials=trials,
        )  # fmt: skip
        return self.execute(plan, store=store, progress=progress, num_threads=num_threads)
