"""The table model shared by the Markdown and HTML reports (``gradkit.bench.tables``).

``tests/data/bench_report`` holds a synthetic ``results.json`` that exercises every table (an
lr grid with a best variant, a diverged and an errored run, accuracy, metrics with missing
values, verdicts, nested hyper-parameters, ``|`` and HTML in names) and the ``report.md`` that
gradkit rendered from it *before* the tables moved to ``tables.py``: the Markdown must stay
byte-identical.
"""

from __future__ import annotations

from pathlib import Path

from gradkit.bench import load_results, render_markdown

DATA = Path(__file__).resolve().parent / "data" / "bench_report"
PLOTS = {"quad": "curves_quad.png", "grid": "curves_grid.png"}


def test_markdown_is_byte_identical_to_the_stored_report() -> None:
    results = load_results(DATA / "results.json")
    expected = (DATA / "report.md").read_text(encoding="utf-8")
    assert render_markdown(results, PLOTS) == expected
