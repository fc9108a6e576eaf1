"""Benchmarks: compare optimizers on reference tasks or on your own model, with verdicts.

Command line: ``gradkit bench`` (see ``gradkit bench --help`` and ``docs/bench.md``).

Python:

* :func:`run_suite` runs a registered suite (``"default"``...) and returns a
  :class:`BenchResults`; :func:`write_report` writes it as a report folder.
* :func:`compare` runs the same comparison on your own model and data loader; your own
  optimizer classes or factories join it beside the named methods (:func:`user_method`).
* :func:`make_task` makes a task of your model, data and loss for ``gradkit bench --task
  module:factory`` and config files (:func:`load_config`; the Task and Method contract is in
  ``docs/bench.md``).
* :func:`load_results` reads a ``results.json`` back; :func:`render_report` re-renders a
  report folder from it (``gradkit report DIR``).
* :func:`run_trial` runs one :class:`Trial` (method, hyper-parameters, task, seed) and returns
  its :class:`Record`: the unit every suite's loop, and a tuner, is made of.

The numbers (a :class:`BenchResults`) are computed separately from their rendering
(:func:`render_markdown`, :func:`render_html`, the plots), so they can be inspected or
re-rendered.

Example:
    >>> from gradkit.bench import run_suite
    >>> res = run_suite("default", optimizers="sgd,adam", tasks="f1", smoke=True)
    >>> [(r.task, r.method, r.steps) for r in res.records]
    [('f1', 'sgd', 20), ('f1', 'adam', 20)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gradkit.bench.api import compare, make_task
from gradkit.bench.config import BenchConfig, load_config
from gradkit.bench.errors import BenchConfigError
from gradkit.bench.families import AggregatorMethod, StrategyMethod, TaskBaseline
from gradkit.bench.html import render_html
from gradkit.bench.markdown import render_markdown
from gradkit.bench.methods import (
    BenchMethod,
    Method,
    available_methods,
    resolve_method,
    user_method,
)
from gradkit.bench.results import SCHEMA_VERSION, BenchResults, Record, RunSettings, Verdict
from gradkit.bench.runner import Trial, run_trial
from gradkit.bench.suites import Suite, get_suite, register_suite, suite_names
from gradkit.bench.writer import render_report, write_report

__all__ = [
    "SCHEMA_VERSION",
    "AggregatorMethod",
    "BenchConfig",
    "BenchConfigError",
    "BenchMethod",
    "BenchResults",
    "Method",
    "Record",
    "RunSettings",
    "StrategyMethod",
    "Suite",
    "TaskBaseline",
    "Trial",
    "Verdict",
    "available_methods",
    "compare",
    "get_suite",
    "load_config",
    "load_results",
    "make_task",
    "register_suite",
    "render_html",
    "render_markdown",
    "render_report",
    "resolve_method",
    "run_suite",
    "run_trial",
    "suite_names",
    "user_method",
    "write_report",
]


def run_suite(
    suite: str = "default",
    *,
    optimizers: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    steps: int | None = None,
    smoke: bool = False,
    progress: bool = False,
    num_threads: int | str | None = "auto",
    out: str | os.PathLike[str] | None = None,
    trials: int | None = None,
) -> BenchResults:
    """Run a registered suite under the tuning protocol (see :meth:`Suite.run` for the
    arguments, ``trials`` included); with ``out``, also write the report folder there (the
    study stays in memory; ``gradkit bench`` keeps it in ``<out>/study.db``)."""
    results = get_suite(suite).run(
        optimizers=optimizers,
        tasks=tasks,
        seeds=seeds,
        steps=steps,
        smoke=smoke,
        progress=progress,
        num_threads=num_threads,
        trials=trials,
    )
    if out is not None:
        write_report(results, out)
    return results


def load_results(path: str | os.PathLike[str]) -> BenchResults:
    """Read ``results.json`` (or the report folder that contains it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    return BenchResults.from_json(p.read_text(encoding="utf-8"))
