"""Run-time helpers of the benchmark runner: seeding, thread count and the progress bar."""

from __future__ import annotations

import contextlib
import contextvars
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from gradkit.bench.errors import BenchConfigError

__all__ = [
    "Progress",
    "TrialPruned",
    "num_threads",
    "progress_bar",
    "report_step",
    "resolve_threads",
    "seed_everything",
    "step_reporter",
]

#: Threads used by the benchmark unless the caller asks otherwise.
DEFAULT_THREADS = 2
#: Threads in smoke mode: tiny data gains nothing from a second thread, and CI runs the smoke
#: suite next to other jobs, where two spinning threads were measured 20–40× slower per step.
SMOKE_THREADS = 1


def resolve_threads(requested: int | str | None, smoke: bool) -> int | None:
    """The thread count to use: ``"auto"`` → 1 in smoke mode, else 2; ``None`` → leave torch's
    setting; a positive int as given."""
    if requested == "auto":
        return SMOKE_THREADS if smoke else DEFAULT_THREADS
    if requested is None:
        return None
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise BenchConfigError(
            f"num_threads must be a positive int, 'auto' or None, got {requested!r}"
        )
    return requested


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch's global generator with ``seed``.

    Returns a fresh ``torch.Generator`` seeded with ``seed`` for explicit use (data shuffling).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Temporarily ``torch.set_num_threads(count)``; ``None`` leaves the setting alone."""
    if count is None:
        yield
        return
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"num_threads must be a positive int or None, got {count!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Progress(Protocol):
    """What the runner needs from a progress bar."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> Any: ...

    def close(self) -> Any: ...


class _Silent:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(total: int, enabled: bool, desc: str = "bench") -> Progress:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else a silent one.

    Without tqdm installed the bar is silent as well.
    """
    if not enabled or not sys.stderr.isatty():
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    bar: Progress = tqdm(total=total, desc=desc, file=sys.stderr, unit="run", leave=False)
    return bar


class TrialPruned(Exception):
    """Raised inside a run when the tuner's pruner stops an unpromising trial early.

    The engine lets it through (it is not a failure of the method); the tuner records the
    trial as pruned.
    """


_STEP_REPORTER: contextvars.ContextVar[Callable[[int, float], None] | None] = (
    contextvars.ContextVar("gradkit_bench_step_reporter", default=None)
)


def report_step(step: int, value: float) -> None:
    """Tell the running tuner the training loss after ``step`` steps (a no-op outside tuning).

    Training loops call this every step; the tuner's reporter decides how often to pass it
    to Optuna's pruner and raises :class:`TrialPruned` to stop the run.
    """
    reporter = _STEP_REPORTER.get()
    if reporter is not None:
        reporter(step, value)


@contextlib.contextmanager
def step_reporter(reporter: Callable[[int, float], None] | None) -> Iterator[None]:
    """Route :func:`report_step` calls to ``reporter`` inside the ``with`` block."""
    token = _STEP_REPORTER.set(reporter)
    try:
        yield
    finally:
        _STEP_REPORTER.reset(token)
