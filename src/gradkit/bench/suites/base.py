"""The :class:`Suite` object every suite module exposes as ``SUITE``."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gradkit.bench.errors import BenchConfigError, unknown_name
from gradkit.bench.methods import Method, resolve_methods
from gradkit.bench.results import BenchResults, Record, RunSettings, Verdict
from gradkit.bench.runner import normalize_seeds, normalize_steps, run_tasks
from gradkit.bench.runtime import resolve_threads
from gradkit.bench.tasks.base import Task
from gradkit.bench.versions import versions

__all__ = ["Suite", "parse_names"]


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
    """A named group of tasks with its default optimizers and its verdict rules.

    Attributes:
        name: the ``--suite`` value.
        description: one line for help texts and the report.
        tasks: task name → :class:`Task`, in run order.
        default_optimizers: returns the method names run when ``--optimizers`` is not given
            (a function, so that it can read the optimizer registry at run time).
        verdicts: computes the verdicts from the finished results (pure).
        default_seeds: number of seeds when ``--seeds`` is not given (1 in smoke mode).
        extra_methods: the suite's own method definitions (name → :class:`Method`), looked up
            before the global ones; for example a matrix method with parameter routing, or a
            method with a curvature refresh (a function, read at run time).
        default_threads: what ``num_threads="auto"`` means outside smoke mode (``None``: the
            engine's default, 2).
    """

    name: str
    description: str
    tasks: Mapping[str, Task]
    default_optimizers: Callable[[], list[str]]
    verdicts: Callable[[BenchResults], list[Verdict]] = lambda results: []
    default_seeds: int = 3
    extra_methods: Callable[[], Mapping[str, Method]] | None = None
    default_threads: int | None = None

    def select_tasks(self, names: Sequence[str] | None) -> list[Task]:
        """The tasks called ``names`` (all when ``None``); unknown names raise."""
        if names is None:
            return list(self.tasks.values())
        chosen: dict[str, Task] = {}
        for name in names:
            if name not in self.tasks:
                raise unknown_name("task", name, self.tasks)
            chosen[name] = self.tasks[name]
        return list(chosen.values())

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
        """Run the suite and return its results (nothing is written to disk).

        Args:
            optimizers: method names (comma-separated string or list); default
                :attr:`default_optimizers`.
            tasks: task names; default all tasks.
            seeds: number of seeds or explicit list; default :attr:`default_seeds` (1 in smoke
                mode).
            steps: optimizer steps per run, overriding every task's default.
            smoke: a few steps on tiny data, for CI.
            progress: show a progress bar on stderr.
            num_threads: ``torch.set_num_threads`` during the run; ``"auto"``: 2 (or the
                suite's :attr:`default_threads`), 1 in smoke mode; ``None``: leave torch's
                setting.
            on_record: called with each record as it is produced.

        Raises:
            BenchConfigError: unknown optimizer or task names, bad seeds or steps.
        """
        method_names = parse_names(optimizers, "optimizer") or self.default_optimizers()
        methods = resolve_methods(
            method_names, self.extra_methods() if self.extra_methods is not None else None
        )
        selected = self.select_tasks(parse_names(tasks, "task"))
        seed_list = normalize_seeds(seeds, 1 if smoke else self.default_seeds)
        steps = normalize_steps(steps)
        if num_threads == "auto" and self.default_threads is not None and not smoke:
            num_threads = self.default_threads
        threads = resolve_threads(num_threads, smoke)
        records, infos = run_tasks(
            self.name,
            selected,
            methods,
            seed_list,
            steps=steps,
            smoke=smoke,
            progress=progress,
            threads=threads,
            on_record=on_record,
        )
        results = BenchResults(
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
        )
        results.verdicts = list(self.verdicts(results))
        return results
