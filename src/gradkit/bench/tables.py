"""The report's tables as data, shared by the Markdown and HTML renderers (pure).

A :class:`Table` has a title, a header and rows of :class:`Cell`; a cell keeps the text a
report shows *and* the number it stands for (its sort key), so the HTML report sorts a column
of ``"2.652 ± 0.035"`` by the mean ``2.652``, not by the text.

The report is laid out from three lists of table builders, which both renderers walk:

* :data:`HEADLINE_TABLES` (``builder(results) -> Table | None``): sections before the
  per-task results (the verdicts);
* :data:`TASK_TABLES` (``builder(results, task) -> Table | None``): the tables under each task;
* :data:`APPENDIX_TABLES` (``builder(results) -> Table | None``): sections after the results
  (failed runs, settings, hyper-parameters, versions).

A builder returns ``None`` to leave its table out. Adding a table to both reports is one
builder here and one entry in one of the lists. A section table's ``title`` is its heading;
``note`` is a sentence printed above the table (under a task, where there is no heading, it is
the only label).

Records may carry a ``phase`` (``"tune"`` or ``"eval"``); the tables built here use only
evaluation records (:func:`evaluated`), records without a phase counting as evaluation runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gradkit.bench.results import BenchResults, Record
from gradkit.bench.stats import format_ci, format_number, summarize

__all__ = [
    "APPENDIX_TABLES",
    "HEADLINE_TABLES",
    "TASK_TABLES",
    "Cell",
    "Table",
    "appendix_tables",
    "best_variant_table",
    "evaluated",
    "format_kwargs",
    "has_grid",
    "headline_tables",
    "hyperparams_table",
    "problems_table",
    "settings_table",
    "table",
    "task_table",
    "task_tables",
    "tuning_table",
    "verdict_table",
    "versions_table",
    "winrate_table",
]

#: How a verdict reads in a table.
VERDICT_MARK = {
    "holds": "✅ holds",
    "does not hold": "❌ does not hold",
    "no significant difference": "🟰 no significant difference",
    "inconclusive": "➖ inconclusive",
}

#: Sort order of the verdicts (a verdict cell's numeric key).
_VERDICT_ORDER = {
    "holds": 0.0,
    "no significant difference": 1.0,
    "inconclusive": 2.0,
    "does not hold": 3.0,
}


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        text: what the report shows (plain text; each renderer escapes it).
        sort: the number the cell stands for (``None`` for text, or when there is no finite
            value); the HTML report sorts a column by it.
        kind: a category, empty for most cells (the verdict of a verdict cell: ``"holds"``,
            ``"does not hold"``, ``"inconclusive"``). The HTML report shows such a cell as a
            coloured badge reading ``kind``, instead of ``text``.
    """

    text: str
    sort: float | None = None
    kind: str = ""


@dataclass(frozen=True)
class Table:
    """A titled table: ``header`` names the columns, each row has one :class:`Cell` per column.

    Raises:
        ValueError: a row does not have one cell per column.
    """

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(
                    f"table {self.title!r}: row {i} has {len(row)} cells for "
                    f"{len(self.header)} columns"
                )


#: What :func:`table` accepts as a cell.
CellLike = Cell | str | int | float | None


def table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[CellLike]],
    note: str = "",
) -> Table:
    """A :class:`Table` from loose rows: a cell given as a ``Cell`` is kept; an ``int`` or
    ``float`` becomes a numeric cell (``str`` of it, sorted by its value); anything else is
    text (``str`` of it)."""
    return Table(title, tuple(header), tuple(tuple(_as_cell(c) for c in row) for row in rows), note)


def _as_cell(value: CellLike) -> Cell:
    if isinstance(value, Cell):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(str(value), float(value) if math.isfinite(value) else None)
    return Cell(str(value))


def evaluated(results: BenchResults) -> BenchResults:
    """``results`` with only its evaluation records (``phase`` ``"eval"`` or no ``phase``);
    ``results`` itself when every record is one."""
    keep = [r for r in results.records if getattr(r, "phase", "eval") == "eval"]
    if len(keep) == len(results.records):
        return results
    return dataclasses.replace(results, records=keep)


def has_grid(results: BenchResults, task: str) -> bool:
    """Whether some method ran several variants (a hyper-parameter grid) on ``task``."""
    return any(len(results.variants(task, m)) > 1 for m in results.methods())


def _summary_cell(values: Sequence[float | None], digits: int = 4, scale: float = 1.0) -> Cell:
    """``mean ± std`` over seeds, sorted by the mean (see :meth:`Summary.format`)."""
    s = summarize(values)
    return Cell(s.format(digits=digits, scale=scale), None if s.mean is None else s.mean * scale)


def _label(method: str, variant: str) -> str:
    return f"{method} ({variant})" if variant else method


def _values(records: Sequence[Record], what: str) -> list[float | None]:
    return [r.value(what) for r in records]


# -- under each task -----------------------------------------------------------------------
def best_variant_table(results: BenchResults, task: str) -> Table | None:
    """For a task with a hyper-parameter grid: each method at its best variant (lowest mean
    final loss), mean ± std over seeds; ``None`` when no method has several variants."""
    results = evaluated(results)
    if not has_grid(results, task):
        return None
    methods = [m for m in results.methods() if results.select(task, m)]
    info = results.tasks.get(task)
    metrics = list(info.metrics) if info else []
    loss_name = info.loss_name if info else "loss"
    rows: list[list[CellLike]] = []
    for method in methods:
        variant = results.best_variant(task, method)
        records = results.select(task, method, variant)
        rows.append(
            [
                method,
                variant or "—",
                len(records),
                _summary_cell(_values(records, "final_loss")),
                *(_summary_cell(_values(records, m)) for m in metrics),
            ]
        )
    header = ["method", "best variant", "runs", f"final {loss_name}", *metrics]
    return table("best variants", header, rows, note="Each method at its best variant:")


def task_table(results: BenchResults, task: str) -> Table:
    """A row per method (and variant, for tasks with a hyper-parameter grid): final loss, test
    accuracy (for classification tasks), the task's metrics and the time per run, mean ± std
    over seeds."""
    results = evaluated(results)
    info = results.tasks.get(task)
    metrics = list(info.metrics) if info else []
    show_acc = any(r.accuracy is not None for r in results.select(task=task))
    loss_name = info.loss_name if info else "loss"
    header = ["method", "runs", f"final {loss_name}"]
    if show_acc:
        header.append("test accuracy (%)")
    header += [*metrics, "time/run (s)"]
    rows: list[list[CellLike]] = []
    for method in results.methods():
        for variant in results.variants(task, method):
            records = results.select(task, method, variant)
            failed = sum(r.status != "ok" for r in records)
            runs = f"{len(records)}" + (f" ({failed} not ok)" if failed else "")
            row: list[CellLike] = [
                _label(method, variant),
                Cell(runs, float(len(records))),
                _summary_cell(_values(records, "final_loss")),
            ]
            if show_acc:
                row.append(_summary_cell(_values(records, "accuracy"), scale=100))
            row += [_summary_cell(_values(records, m)) for m in metrics]
            wall = summarize([r.wall_time_s for r in records]).mean
            row.append(Cell(format_number(wall, 3), wall))
            rows.append(row)
    note = "All variants:" if has_grid(results, task) else ""
    return table("runs", header, rows, note=note)


def tuning_table(results: BenchResults, task: str) -> Table | None:
    """How each method was tuned on ``task``: trials used of the budget (pruned ones), the
    chosen hyper-parameters, the tuning objective on the tuning seed, the tuned result over
    the evaluation seeds with its 95 % bootstrap interval, and the wall time spent tuning
    (``None`` when nothing was tuned)."""
    summaries = [t for t in results.tuning if t.task == task]
    if not any(t.budget for t in summaries):
        return None
    rows: list[list[CellLike]] = []
    for t in summaries:
        values = [
            r.value(t.objective) if r.status == "ok" else None
            for r in evaluated(results).select(task, t.method)
        ]
        s = summarize(values)
        trials = (
            f"{t.finished}/{t.budget}" + (f" ({t.pruned} pruned)" if t.pruned else "")
            if t.budget
            else "—"
        )
        rows.append(
            [
                t.method,
                Cell(trials, float(t.finished)),
                format_kwargs(_rounded(t.params)) if t.budget else t.note,
                Cell(format_number(t.best_value), t.best_value),
                Cell(format_ci(values), s.mean),
                Cell(format_number(t.tuning_wall_s, 3), t.tuning_wall_s),
            ]
        )
    objective = summaries[0].objective
    if objective == "final_loss":
        info = results.tasks.get(task)
        objective = info.loss_name if info else "loss"
    header = [
        "method",
        "trials",
        "chosen hyper-parameters",
        f"tuning {objective}",
        f"tuned {objective} [95% CI]",
        "tuning time (s)",
    ]
    budget = max(t.budget for t in summaries)
    note = (
        f"Equal-budget tuning: {budget} Optuna TPE trials per method on the tuning seed, the "
        f"best re-run on the evaluation seeds ({objective}, "
        f"{summaries[0].direction}d; interval: 95% bootstrap of the mean):"
    )
    return table("tuning", header, rows, note=note)


def _rounded(params: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 4 significant digits (the full values are in ``results.json``)."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in params.items()}


# -- sections ------------------------------------------------------------------------------
def winrate_table(results: BenchResults) -> Table | None:
    """Each method's win rate across tasks with its 95 % bootstrap interval (``None`` with
    fewer than two methods on every task)."""
    from gradkit.bench.winrates import win_rates

    rates = win_rates(evaluated(results))
    if not rates:
        return None
    rows: list[list[CellLike]] = [
        [
            w.method,
            Cell(f"{w.rate:.2f} [{w.low:.2f}, {w.high:.2f}]", w.rate),
            w.games,
        ]
        for w in sorted(rates, key=lambda w: -w.rate)
    ]
    note = (
        "Pairwise comparisons on every task (each task's tuning objective, mean over "
        "evaluation seeds): a win counts 1, a tie 0.5; interval: 95% bootstrap over seeds."
    )
    return table("Win rates across tasks", ["method", "win rate [95% CI]", "comparisons"],
                 rows, note=note)  # fmt: skip


def verdict_table(results: BenchResults) -> Table | None:
    """The verdicts on the papers' claims (``None`` when there are none)."""
    if not results.verdicts:
        return None
    rows: list[list[CellLike]] = [
        [
            v.claim,
            v.paper,
            Cell(VERDICT_MARK.get(v.verdict, v.verdict), _VERDICT_ORDER.get(v.verdict), v.verdict),
            v.evidence,
        ]
        for v in results.verdicts
    ]
    return table("Verdicts", ["claim", "paper", "verdict", "evidence"], rows)


def problems_table(results: BenchResults) -> Table | None:
    """Runs that diverged or raised (``None`` when every run finished normally)."""
    problems = [r for r in evaluated(results).records if r.status != "ok"]
    if not problems:
        return None
    rows: list[list[CellLike]] = [
        [r.task, r.method, r.seed, r.status, r.error or ""] for r in problems
    ]
    header = ["task", "method", "seed", "status", "error"]
    return table("Runs that did not finish normally", header, rows)


def settings_table(results: BenchResults) -> Table:
    """What was asked for: suite, methods, tasks, seeds, steps, smoke, threads."""
    rows: list[list[CellLike]] = [[k, Cell(str(v))] for k, v in results.settings.to_dict().items()]
    return table("Settings", ["setting", "value"], rows)


def hyperparams_table(results: BenchResults) -> Table | None:
    """The optimizer arguments of each (task, method, variant), in run order."""
    rows: list[list[CellLike]] = []
    seen: set[tuple[str, str, str]] = set()
    for r in evaluated(results).records:
        if (r.task, r.method, r.variant) in seen:
            continue
        seen.add((r.task, r.method, r.variant))
        rows.append([r.task, _label(r.method, r.variant), format_kwargs(r.hyperparams)])
    if not rows:
        return None
    return table("Hyper-parameters", ["task", "method", "optimizer arguments"], rows)


def versions_table(results: BenchResults) -> Table:
    """The package versions the run used."""
    rows: list[list[CellLike]] = [[k, Cell(str(v))] for k, v in results.versions.items()]
    return table("Versions", ["package", "version"], rows)


def _show(value: Any, nested: bool = False) -> str:
    """``str`` of a keyword argument (``repr`` inside containers), with lists written as
    tuples, so that arguments read back from ``results.json`` render as they did in memory."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_show(v, True)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        items = [_show(v, True) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return repr(value) if nested else str(value)


def format_kwargs(kwargs: Mapping[str, Any]) -> str:
    """``"lr=0.1, betas=(0.9, 0.999)"``: keyword arguments as they would be written in Python.

    Example:
        >>> format_kwargs({"lr": 0.1, "betas": [0.9, 0.999]})
        'lr=0.1, betas=(0.9, 0.999)'
    """
    return ", ".join(f"{k}={_show(v)}" for k, v in kwargs.items())


#: Sections before the per-task results.
HEADLINE_TABLES: list[Callable[[BenchResults], Table | None]] = [verdict_table, winrate_table]
#: The tables under each task, in order.
TASK_TABLES: list[Callable[[BenchResults, str], Table | None]] = [
    tuning_table,
    best_variant_table,
    task_table,
]
#: Sections after the per-task results.
APPENDIX_TABLES: list[Callable[[BenchResults], Table | None]] = [
    problems_table,
    settings_table,
    hyperparams_table,
    versions_table,
]


def headline_tables(results: BenchResults) -> list[Table]:
    """The tables of :data:`HEADLINE_TABLES` that are not left out."""
    return [t for build in HEADLINE_TABLES if (t := build(results)) is not None]


def task_tables(results: BenchResults, task: str) -> list[Table]:
    """The tables of :data:`TASK_TABLES` for ``task`` that are not left out."""
    return [t for build in TASK_TABLES if (t := build(results, task)) is not None]


def appendix_tables(results: BenchResults) -> list[Table]:
    """The tables of :data:`APPENDIX_TABLES` that are not left out."""
    return [t for build in APPENDIX_TABLES if (t := build(results)) is not None]
