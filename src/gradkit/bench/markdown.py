"""Render a :class:`BenchResults` as the Markdown of ``report.md`` (pure: text in, text out).

The tables come from :mod:`gradkit.bench.tables`, which the HTML report renders too.
"""

from __future__ import annotations

from collections.abc import Mapping

from gradkit.bench.results import BenchResults
from gradkit.bench.tables import Table, appendix_tables, headline_tables, task_tables

__all__ = ["markdown_table", "render_markdown"]


def _cell(text: object) -> str:
    """Escape a value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> list[str]:
    """The lines of ``table`` as a Markdown (GitHub) table: header, ``---`` rule, rows."""
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |"]
    lines.append("|" + "|".join("---" for _ in table.header) + "|")
    lines.extend("| " + " | ".join(_cell(c.text) for c in row) + " |" for row in table.rows)
    return lines


def _section(table: Table) -> list[str]:
    """``## title``, the note, the table."""
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    return [*lines, *markdown_table(table), ""]


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
    for table in headline_tables(results):
        lines += _section(table)
    lines += ["## Results", ""]
    for task in results.task_names():
        info = results.tasks.get(task)
        lines += [f"### {task}", ""]
        if info is not None:
            runs = "deterministic, one run per method" if info.deterministic else "one run per seed"
            lines += [f"{info.description}. {info.steps} steps; {runs}.", ""]
        for table in task_tables(results, task):
            if table.note:
                lines += [table.note, ""]
            lines += [*markdown_table(table), ""]
        if task in plots:
            lines += [f"![{task} loss curves]({plots[task]})", ""]
    for table in appendix_tables(results):
        lines += _section(table)
    return "\n".join(lines)
