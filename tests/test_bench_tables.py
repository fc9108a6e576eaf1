"""The table model shared by the Markdown and HTML reports (``gradkit.bench.tables``).

``tests/data/bench_report`` holds a synthetic ``results.json`` that exercises every table (an
lr grid with a best variant, a diverged and an errored run, accuracy, metrics with missing
values, verdicts, nested hyper-parameters, ``|`` and HTML in names) and the ``report.md`` that
gradkit renders from it: the Markdown must stay byte-identical. It was rendered before the
tables moved to ``tables.py`` (and matched after the move); it is regenerated only for a
deliberate layout change (last: the win-rate table and the tuning settings, issue 12).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradkit.bench import BenchResults, load_results, render_markdown, tables
from gradkit.bench.html import render_html

DATA = Path(__file__).resolve().parent / "data" / "bench_report"
PLOTS = {"quad": "curves_quad.png", "grid": "curves_grid.png"}


def test_markdown_is_byte_identical_to_the_stored_report() -> None:
    results = load_results(DATA / "results.json")
    expected = (DATA / "report.md").read_text(encoding="utf-8")
    assert render_markdown(results, PLOTS) == expected


def test_cells_keep_the_number_they_show() -> None:
    results = load_results(DATA / "results.json")
    grid = tables.task_table(results, "grid")
    assert grid.note == "All variants:"
    row = {r[0].text: r for r in grid.rows}["sgd (lr=1e-2)"]
    texts = [c.text for c in row]
    assert texts == ["sgd (lr=1e-2)", "2 (1 not ok)", "2.827 (1 failed)", "0 ± 0", "0.205"]
    assert row[0].sort is None  # text
    assert row[1].sort == 2.0
    assert row[2].sort == pytest.approx(2.8269, abs=1e-3)  # the mean of the finite run
    cls = tables.task_table(results, "cls")
    evil = cls.rows[-1]
    assert evil[3].text == "80.5 ± 0.71 (1 failed)" and evil[3].sort == pytest.approx(80.5)
    assert tables.task_table(results, "quad").note == ""  # no grid: no label
    best = tables.best_variant_table(results, "grid")
    assert best is not None and best.rows[0][1].text == "lr=1e-3"
    assert tables.best_variant_table(results, "quad") is None
    verdicts = tables.verdict_table(results)
    assert verdicts is not None
    assert [(c.text, c.kind, c.sort) for c in (r[2] for r in verdicts.rows)] == [
        ("✅ holds", "holds", 0.0),
        ("❌ does not hold", "does not hold", 3.0),
        ("➖ inconclusive", "inconclusive", 2.0),
    ]


def test_a_row_must_fill_the_header() -> None:
    with pytest.raises(ValueError, match=r"table 'x': row 0 has 1 cells for 2 columns"):
        tables.table("x", ["a", "b"], [["only one"]])


def test_a_new_table_is_one_builder_in_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both reports pick up a builder added to a list, and leave out one that returns None."""
    results = load_results(DATA / "results.json")

    def win_rates(res: BenchResults) -> tables.Table:
        return tables.table("Win rates", ["method", "wins"], [["adam", 3], ["sgd", 1]])

    def chosen(res: BenchResults, task: str) -> tables.Table | None:
        if task != "cls":
            return None
        return tables.table("chosen", ["method", "lr"], [["adam", 0.01]], note="Chosen lr:")

    monkeypatch.setattr(tables, "APPENDIX_TABLES", [win_rates, *tables.APPENDIX_TABLES])
    monkeypatch.setattr(tables, "TASK_TABLES", [*tables.TASK_TABLES, chosen])
    md = render_markdown(results)
    assert "## Win rates\n\n| method | wins |\n|---|---|\n| adam | 3 |\n| sgd | 1 |\n" in md
    assert md.count("Chosen lr:") == 1
    assert md.index("Chosen lr:") > md.index("### cls")
    page = render_html(results)
    assert "<h2>Win rates</h2>" in page and 'href="#win-rates"' in page
    assert '<td class="num" data-sort="3.0">3</td>' in page
    assert page.count('data-table="chosen"') == 1
    assert page.index('data-table="chosen"') > page.index('id="task-cls"')
