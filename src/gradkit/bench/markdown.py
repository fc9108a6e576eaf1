"""Render a :class:`BenchResults` as the Markdown of ``report.md`` (pure: text in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradkit.bench.results import BenchResults, Record
from gradkit.bench.stats import format_number, summarize

__all__ = ["best_variant_table", "render_markdown", "task_table", "verdict_table"]

_VERDICT_MARK = {
    "holds": "✅ holds",
    "does not hold": "❌ does not hold",
    "inconclusive": "➖ inconclusive",
}


def _cell(text: object) -> str:
    """Escape a value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _metric_values(records: Sequence[Record], key: str) -> list[float | None]:
    if key == "final_loss":
        return [r.final_loss for r in records]
    if key == "accuracy":
        return [r.accuracy for r in records]
    return [r.metrics.get(key) for r in records]


def task_table(results: BenchResults, task: str) -> list[str]:
    """Markdown table lines for one task: a row per method (and variant, for tasks with a
    hyper-parameter grid), mean ± std over seeds."""
    info = results.tasks.get(task)
    metrics = list(info.metrics) if info else []
    records_all = results.select(task=task)
    show_acc = any(r.accuracy is not None for r in records_all)
    loss_name = info.loss_name if info else "loss"
    header = ["method", "runs", f"final {loss_name}"]
    if show_acc:
        header.append("test accuracy (%)")
    header += [*metrics, "time/run (s)"]
    rows: list[list[object]] = []
    cells = [
        (method, variant)
        for method in results.methods()
        for variant in results.variants(task, method)
    ]
    for method, variant in cells:
        records = results.select(task, method, variant)
        if not records:
            continue
        failed = sum(r.status != "ok" for r in records)
        runs = f"{len(records)}" + (f" ({failed} not ok)" if failed else "")
        row: list[object] = [
            f"{method} ({variant})" if variant else method,
            runs,
            summarize(_metric_values(records, "final_loss")).format(),
        ]
        if show_acc:
            row.append(summarize(_metric_values(records, "accuracy")).format(digits=4, scale=100))
        row += [summarize(_metric_values(records, m)).format() for m in metrics]
        row.append(format_number(summarize([r.wall_time_s for r in records]).mean, 3))
        rows.append(row)
    return _table(header, rows)


def best_variant_table(results: BenchResults, task: str) -> list[str]:
    """For a task with a hyper-parameter grid: each method at its best variant (lowest mean
    final loss), mean ± std over seeds; an empty list when no method has several variants."""
    methods = [m for m in results.methods() if results.select(task, m)]
    if all(len(results.variants(task, m)) <= 1 for m in methods):
        return []
    info = results.tasks.get(task)
    metrics = list(info.metrics) if info else []
    loss_name = info.loss_name if info else "loss"
    header = ["method", "best variant", "runs", f"final {loss_name}", *metrics]
    rows: list[list[object]] = []
    for method in methods:
        variant = results.best_variant(task, method)
        records = results.select(task, method, variant)
        row: list[object] = [
            method,
            variant or "—",
            len(records),
            summarize(_metric_values(records, "final_loss")).format(),
        ]
        row += [summarize(_metric_values(records, m)).format() for m in metrics]
        rows.append(row)
    return _table(header, rows)


def verdict_table(results: BenchResults) -> list[str]:
    """Markdown table lines of the verdicts (empty list when there are none)."""
    if not results.verdicts:
        return []
    rows = [
        [v.claim, v.paper, _VERDICT_MARK.get(v.verdict, v.verdict), v.evidence]
        for v in results.verdicts
    ]
    return _table(["claim", "paper", "verdict", "evidence"], rows)


def _hyperparams_lines(results: BenchResults) -> list[str]:
    rows: list[list[object]] = []
    seen: set[tuple[str, str, str]] = set()
    for r in results.records:
        if (r.task, r.method, r.variant) in seen:
            continue
        seen.add((r.task, r.method, r.variant))
        label = f"{r.method} ({r.variant})" if r.variant else r.method
        rows.append([r.task, label, _format_kwargs(r.hyperparams)])
    return _table(["task", "method", "optimizer arguments"], rows) if rows else []


def _show(value: Any, nested: bool = False) -> str:
    """``str`` of a keyword argument (``repr`` inside containers), with lists written as
    tuples, so that arguments read back from ``results.json`` render as they did in memory."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_show(v, True)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = [_show(v, True) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return repr(value) if nested else str(value)


def _format_kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in kwargs.items())


def render_markdown(results: BenchResults, plots: Mapping[str, str] | None = None) -> str:
    """The full report: verdicts, one table (and plot) per task, settings, versions.

    Args:
        plots: task name → path of its curve plot, relative to the report (optional).
    """
    plots = plots or {}
    s = results.settings
    lines = [f"# gradkit bench report: suite `{s.suite}`", ""]
    if s.smoke:
        lines += [
            "> **Smoke run**: few steps on tiny data. The numbers check that the pipeline "
            "works; they say nothing about the optimizers.",
            "",
        ]
    lines += [
        f"Finished {results.created_utc or 'unknown'} · gradkit {results.versions.get('gradkit', '?')}"
        f" · torch {results.versions.get('torch', '?')} · seeds {', '.join(map(str, s.seeds))}",
        "",
        "Numbers are mean ± sample standard deviation over seeds; deterministic tasks run once.",
        "",
    ]
    verdicts = verdict_table(results)
    if verdicts:
        lines += ["## Verdicts", "", *verdicts, ""]
    lines += ["## Results", ""]
    for task in results.task_names():
        info = results.tasks.get(task)
        lines += [f"### {task}", ""]
        if info is not None:
            runs = "deterministic, one run per method" if info.deterministic else "one run per seed"
            lines += [f"{info.description}. {info.steps} steps; {runs}.", ""]
        best = best_variant_table(results, task)
        if best:
            lines += ["Each method at its best variant:", "", *best, "", "All variants:", ""]
        lines += [*task_table(results, task), ""]
        if task in plots:
            lines += [f"![{task} loss curves]({plots[task]})", ""]
    problems = [r for r in results.records if r.status != "ok"]
    if problems:
        lines += ["## Runs that did not finish normally", ""]
        lines += _table(
            ["task", "method", "seed", "status", "error"],
            [[r.task, r.method, r.seed, r.status, r.error or ""] for r in problems],
        )
        lines.append("")
    lines += ["## Settings", ""]
    lines += [*_table(["setting", "value"], [[k, v] for k, v in s.to_dict().items()]), ""]
    lines += ["## Hyper-parameters", "", *_hyperparams_lines(results), ""]
    lines += ["## Versions", ""]
    lines += [*_table(["package", "version"], list(results.versions.items())), ""]
    return "\n".join(lines)
