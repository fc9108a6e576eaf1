"""``report.html`` (``gradkit.bench.html``): one self-contained page, checked as text and in a
real headless browser.

The browser tests drive Debian's ``chromium`` (``/usr/bin/chromium``, or ``$GRADKIT_CHROMIUM``)
through Playwright's Python package; Playwright's own browser download is never used.
``scripts/test.sh`` installs Chromium when it is missing and it can (root with apt-get). Where
there is no browser the browser tests skip, and conftest.py prints a warning banner in the
summary; with ``GRADKIT_REQUIRE_BROWSER=1`` (for a CI that must run them) they fail instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gradkit.bench import BenchResults, Record, load_results, run_suite, write_report
from gradkit.bench.html import chart_series, render_html
from gradkit.bench.writer import render_report

DATA = Path(__file__).resolve().parent / "data" / "bench_report"
CHROMIUM = Path(os.environ.get("GRADKIT_CHROMIUM", "/usr/bin/chromium"))


def _fixture() -> BenchResults:
    return load_results(DATA / "results.json")


def _methods_on(results: BenchResults, task: str) -> list[str]:
    return [m for m in results.methods() if results.select(task, m)]


# -- the page as text ------------------------------------------------------------------------
def test_page_is_self_contained_and_escaped() -> None:
    page = render_html(_fixture())
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: no address, no external script, style sheet or image
    assert "://" not in page
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=", page)
    assert "default-src 'none'" in page  # and the CSP forbids it anyway
    assert page.count("<script>") == 1 and page.count("<style>") == 1
    # names and errors with HTML in them are shown as text
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>html</i>" not in page


def test_every_table_and_every_method_is_on_the_page() -> None:
    results = _fixture()
    page = render_html(results)
    for title in ("Verdicts", "Runs that did not finish normally", "Settings", "Versions"):
        assert f'data-table="{title}"' in page
    # verdicts, win rates; quad, grid (best variants, all variants), cls; problems, settings,
    # arguments, versions
    assert page.count('<table class="sortable"') == 2 + 4 + 4
    for task in results.task_names():
        chart = page.split(f'data-task="{task}"')[1].split("</figure>")[0]
        for method in _methods_on(results, task):
            escaped = method.replace("<", "&lt;").replace(">", "&gt;")
            assert f'<path class="series" data-method="{escaped}"' in chart
            assert f'class="legend-item" data-method="{escaped}"' in chart
    # a cell keeps its number: "2.652 ± 0.035" sorts by the mean
    assert re.search(r'<td class="num" data-sort="2\.65\d*">2\.652 ± 0\.035</td>', page)
    assert re.search(r'<td data-sort="\S+" data-kind="does not hold"><span class="badge">', page)


def test_chart_uses_held_out_curve_and_scales() -> None:
    results = _fixture()
    series, label = chart_series(results, "grid")  # has eval_curve
    assert label == "validation loss (held out)"
    assert len(series) == 8  # 4 methods x 2 variants
    assert series[0].steps == (0, 10, 20, 30, 40)
    diverged = next(s for s in series if s.label == "sgd (lr=1e-2)")
    assert diverged.steps == (0, 10)  # truncated to the run that stopped early
    series, label = chart_series(results, "quad")  # known optimum 0.5: the gap is drawn
    assert label == "loss − min (0.5)"
    assert series[0].steps[:3] == (0, 2, 4)  # curve_stride 2
    assert series[0].values[0] == pytest.approx(10.0)
    page = render_html(results)
    quad = page.split('data-task="quad"')[1].split("</figure>")[0]
    cls = page.split('data-task="cls"')[1].split("</figure>")[0]
    assert "(log scale)" in quad  # 10 .. 4e-4: more than two decades
    assert "(log scale)" not in cls  # negative values: linear


def test_only_evaluation_records_are_shown() -> None:
    @dataclasses.dataclass(frozen=True)
    class PhasedRecord(Record):  # what the tuning protocol will add
        phase: str = "eval"

    results = _fixture()
    tuned = [
        PhasedRecord(**{**r.__dict__, "method": "tuning-only", "phase": "tune"})
        for r in results.records
    ]
    mixed = dataclasses.replace(results, records=[*results.records, *tuned])
    assert "tuning-only" not in render_html(mixed)
    assert render_html(mixed) == render_html(results)


def test_report_folder_has_the_page_and_report_rerenders_it(tmp_path: Path) -> None:
    out = write_report(_fixture(), tmp_path / "r", plots=False)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page == render_html(_fixture())
    (out / "report.html").unlink()
    render_report(out, plots=False)
    assert (out / "report.html").read_text(encoding="utf-8") == page


# -- in a browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        reason = (
            f"NO BROWSER: {CHROMIUM} does not exist, so the browser test of report.html did NOT "
            "run. Install Debian's chromium (`apt-get install -y chromium`; scripts/test.sh does "
            "it when run as root) or point $GRADKIT_CHROMIUM at a Chromium executable."
        )
        if os.environ.get("GRADKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " GRADKIT_REQUIRE_BROWSER=1 forbids skipping it.")
        pytest.skip(reason)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def _smoke_results() -> BenchResults:
    # adabelief diverges on Rosenbrock at the suite's shared lr: a line that stops early
    return run_suite(
        optimizers="sgd,adam,adabelief", tasks="f1,rosenbrock", smoke=True, num_threads=1
    )


# After a click: each header's aria-sort, the clicked header's arrow, the column's cells.
_STATE = """([table, col]) => ({
    sorts: Array.from(table.tHead.rows[0].cells, th => th.getAttribute('aria-sort')),
    arrow: getComputedStyle(table.tHead.rows[0].cells[col].querySelector('.arrow'), '::after')
        .content,
    cells: Array.from(table.tBodies[0].rows, r => {
        const c = r.cells[col];
        return [c.textContent.trim(), c.hasAttribute('data-sort') ? Number(c.dataset.sort) : null];
    }),
})"""
_ORDERED = """([texts, dir]) => {
    const c = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
    return texts.every((t, i) => i === 0 || dir * c.compare(texts[i - 1], t) <= 0);
}"""


def _check_sorting(page: Any, tables: str) -> int:
    """Click every column header of every table matching ``tables`` twice; return the number
    of columns."""
    columns = 0
    for table in page.locator(tables).element_handles():
        headers = table.query_selector_all("thead th")
        for col, th in enumerate(headers):
            numeric = any(k is not None for _, k in page.evaluate(_STATE, [table, col])["cells"])
            for direction, sign in (("ascending", 1), ("descending", -1)):
                th.click()
                state = page.evaluate(_STATE, [table, col])
                expected = ["none"] * len(headers)
                expected[col] = direction
                assert state["sorts"] == expected
                assert state["arrow"] == ('"▲"' if sign == 1 else '"▼"')
                cells = state["cells"]
                if numeric:
                    keys = [k for _, k in cells]
                    present = [k for k in keys if k is not None]
                    assert keys[: len(present)] == present, "missing values sort last"
                    assert present == sorted(present, reverse=sign < 0)
                else:
                    assert page.evaluate(_ORDERED, [[t for t, _ in cells], sign])
            columns += 1
    return columns


@pytest.mark.browser
@pytest.mark.parametrize("source", ["fixture", "smoke run"])
def test_report_in_a_browser(browser: Any, tmp_path: Path, source: str) -> None:
    results = _fixture() if source == "fixture" else _smoke_results()
    out = write_report(results, tmp_path / "report", plots=False)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith("file:") else problems.append(r.url))
    page.goto((out / "report.html").as_uri())
    page.wait_for_load_state("load")

    # every table sorts, both ways, by number where the column has numbers (the smoke run's
    # text-only tables at the end are like the fixture's: only its result tables are clicked)
    if source == "fixture":
        assert _check_sorting(page, "table.sortable") == 40
    else:
        assert _check_sorting(page, "section.task table.sortable") >= 2 * 5

    # one chart per task with records; every method has a line and a legend entry
    charts = page.locator("figure.chart-box")
    tasks = [t for t in results.task_names() if results.select(task=t)]
    assert charts.count() == len(tasks)
    for task in tasks:
        fig = page.locator(f'figure.chart-box[data-task="{task}"]')
        for method in _methods_on(results, task):
            assert fig.locator(f'svg path.series[data-method="{method}"]').count() >= 1
            assert fig.locator(f'.legend-item[data-method="{method}"]').count() >= 1
        # the legend hides and shows a line
        item = fig.locator(".legend-item").first
        line = fig.locator(f'path.series[data-series="{item.get_attribute("data-series")}"]')
        assert line.is_visible()
        item.click()
        assert item.get_attribute("aria-pressed") == "false" and line.is_hidden()
        item.click()
        assert item.get_attribute("aria-pressed") == "true" and line.is_visible()
        # hovering shows method, step and value
        box = fig.locator("rect.overlay").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        tip = fig.locator(".tooltip")
        assert tip.is_visible()
        assert re.search(r"step \d+", tip.inner_text())
        page.mouse.move(0, 0)
        assert tip.is_hidden()
    assert problems == []
    page.close()
