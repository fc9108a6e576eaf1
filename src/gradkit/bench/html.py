"""Render a :class:`BenchResults` as ``report.html``: one self-contained page (pure).

The page holds the settings, the verdicts, every table of :mod:`gradkit.bench.tables` as a
sortable table, and one interactive loss-curve chart per task, drawn here as inline SVG. Its
CSS and JavaScript (``assets/report.css``, ``assets/report.js``, shipped with the package) are
inlined, and a Content-Security-Policy forbids every network request, so the file opens
anywhere, offline, and can be mailed around on its own. Without JavaScript the tables and
charts still show; the script adds sorting (click a column header), hiding a line (click its
legend entry) and a tooltip (method, step, value) over the charts.

A chart draws, per method (and per variant on tasks with a hyper-parameter grid), the mean
over seeds of the records' held-out ``eval_curve`` when the task records one, else of the
training ``curve``. Like the PNG plots, each line is truncated to the shortest run (a diverged
run ends it), a task with a known optimum shows ``loss − optimum``, and the y axis is
logarithmic when every value is positive and they span more than two decades. Only evaluation
records are drawn and tabulated (:func:`gradkit.bench.tables.evaluated`).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from gradkit.bench.results import BenchResults
from gradkit.bench.tables import (
    Table,
    appendix_tables,
    evaluated,
    headline_tables,
    task_tables,
)

__all__ = ["Series", "chart_series", "render_html"]

#: Line colours (colour-blind-safe Okabe–Ito, then a few more); a method keeps its colour.
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#d55e00",
    "#cc79a7",
    "#56b4e9",
    "#8c6d00",
    "#000000",
    "#7f3c8d",
    "#3969ac",
    "#11a579",
    "#e73f74",
)
#: Dash patterns, one per variant of a method.
DASHES = ("", "7 4", "2 3", "10 3 2 3")
#: Most points drawn per line (longer curves are thinned evenly, keeping the last point).
MAX_POINTS = 500
#: Known-optimum tasks show ``max(loss − optimum, GAP_FLOOR)``.
GAP_FLOOR = 1e-16

# Chart geometry (SVG user units).
_W, _H = 760, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 74, 14, 12, 46

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _asset(name: str) -> str:
    """The text of ``assets/<name>``, checked to be safe to inline."""
    text = resources.files("gradkit.bench").joinpath("assets", name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.I):
        raise ValueError(f"assets/{name} contains a closing script/style tag; it cannot be inlined")
    return text


def _slug(text: str, taken: set[str]) -> str:
    """An HTML id made of ``text`` (letters, digits, ``-``), unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


# -- tables --------------------------------------------------------------------------------
def _table_html(table: Table) -> str:
    head = "".join(
        f'<th scope="col" aria-sort="none"><button type="button">{_e(h)}'
        '<span class="arrow" aria-hidden="true"></span></button></th>'
        for h in table.header
    )
    numeric = [any(row[i].sort is not None for row in table.rows) for i in range(len(table.header))]
    body = []
    for row in table.rows:
        cells = []
        for c, num in zip(row, numeric, strict=True):
            attrs = ' class="num"' if num and not c.kind else ""
            if c.sort is not None and math.isfinite(c.sort):
                attrs += f' data-sort="{c.sort!r}"'
            text = _e(c.text)
            if c.kind:  # a badge: the Markdown's emoji need a colour-emoji font
                attrs += f' data-kind="{_e(c.kind)}"'
                text = f'<span class="badge">{_e(c.kind)}</span>'
            cells.append(f"<td{attrs}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (
        f'{note}<div class="table-wrap"><table class="sortable" data-table="{_e(table.title)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(table: Table, ident: str) -> str:
    return f'<section id="{ident}"><h2>{_e(table.title)}</h2>{_table_html(table)}</section>'


# -- charts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One line of a chart: the mean over seeds of one method (and variant) on one task.

    Attributes:
        method, variant: whose runs (``variant`` empty on tasks without a grid).
        steps: optimizer steps of the points, ascending.
        values: mean over seeds at each step (``None`` where no run had a finite value).
    """

    method: str
    variant: str
    steps: tuple[int, ...]
    values: tuple[float | None, ...]

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method


def _mean_rows(rows: list[list[float | None]]) -> list[float | None]:
    """Mean of the finite entries of each column, the rows truncated to the shortest."""
    length = min(len(r) for r in rows)
    out: list[float | None] = []
    for i in range(length):
        finite = [float(v) for r in rows if (v := r[i]) is not None and math.isfinite(float(v))]
        out.append(math.fsum(finite) / len(finite) if finite else None)
    return out


def chart_series(results: BenchResults, task: str) -> tuple[list[Series], str]:
    """The lines of ``task``'s chart and the label of its y axis.

    The held-out ``eval_curve`` is drawn when some record of the task has one, else the
    training ``curve``; evaluation records only; see the module docstring.
    """
    results = evaluated(results)
    info = results.tasks.get(task)
    loss_name = info.loss_name if info is not None else "loss"
    held_out = any(r.eval_curve for r in results.select(task=task))
    optimum = None if held_out or info is None else info.optimum
    out = []
    for method in results.methods():
        for variant in results.variants(task, method):
            records = results.select(task, method, variant)
            if held_out:
                runs = [r.eval_curve for r in records if r.eval_curve]
                if not runs:
                    continue
                steps = [int(k) for k, _ in runs[0]]
                values = _mean_rows([[v for _, v in run] for run in runs])
            else:
                curves = [r for r in records if r.curve]
                if not curves:
                    continue
                values = _mean_rows([list(r.curve) for r in curves])
                steps = [i * curves[0].curve_stride for i in range(len(values))]
            if optimum is not None:
                values = [None if v is None else max(v - optimum, GAP_FLOOR) for v in values]
            out.append(Series(method, variant, tuple(steps[: len(values)]), tuple(values)))
    if held_out:
        label = f"{loss_name} (held out)"
    elif optimum is not None:
        label = f"{loss_name} − min ({optimum:.6g})"
    else:
        label = loss_name
    return out, label


def _thin(series: Series) -> list[tuple[int, float | None]]:
    points = list(zip(series.steps, series.values, strict=True))
    if len(points) <= MAX_POINTS:
        return points
    step = (len(points) - 1) / (MAX_POINTS - 1)
    return [points[round(i * step)] for i in range(MAX_POINTS)]


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round numbers (1, 2 or 5 × 10^k apart) covering ``[lo, hi]``."""
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, 12) for i in range(n + 1)]


def _fmt_tick(value: float, exponent: bool = False) -> str:
    """``0.01``, ``250``; ``1e-05``-like values (or all, with ``exponent``) as ``1e-5``."""
    if exponent or (value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3)):
        mantissa, _, power = f"{value:.0e}".partition("e")
        return f"{mantissa}e{int(power)}"
    return f"{value:.6g}"


@dataclass(frozen=True)
class _Scale:
    """A linear map of ``[d0, d1]`` (in log10 units when ``log``) onto pixels ``[p0, p1]``."""

    d0: float
    d1: float
    p0: float
    p1: float
    log: bool = False

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        px = self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
        return min(max(px, -5000.0), 5000.0)


def _y_scale(lines: Sequence[list[tuple[int, float | None]]]) -> tuple[_Scale, list[float]]:
    values = [v for pts in lines for _, v in pts if v is not None and math.isfinite(v)]
    starts = [abs(v) for pts in lines for _, v in pts[:1] if v is not None and math.isfinite(v)]
    lo, hi = min(values), max(values)
    if starts and max(starts) > 0 and hi > 1e3 * max(starts):  # a diverging run
        hi = 1e3 * max(starts)
    p0, p1 = _H - _BOTTOM, _TOP
    if lo > 0 and hi / lo > 100:
        d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        every = max(1, math.ceil((d1 - d0) / 8))
        ticks = [10.0**k for k in range(d0, d1 + 1, every)]
        return _Scale(d0, d1, p0, p1, log=True), ticks
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
    pad = (hi - lo) * 0.04
    ticks = _nice_ticks(lo - pad, hi + pad)
    return _Scale(ticks[0], ticks[-1], p0, p1), ticks


def _path(points: list[tuple[int, float | None]], sx: _Scale, sy: _Scale) -> str:
    parts, pen_down = [], False
    for step, value in points:
        if value is None or not math.isfinite(value) or (sy.log and value <= 0):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{sx(step):.1f} {sy(value):.1f}")
        pen_down = True
    return "".join(parts)


def _chart(results: BenchResults, task: str, ident: str) -> str:
    """The ``<figure>`` of ``task``'s chart: SVG, legend, tooltip and the data for the script."""
    series, ylabel = chart_series(results, task)
    lines = [_thin(s) for s in series]
    if not any(v is not None and math.isfinite(v) for pts in lines for _, v in pts):
        return '<p class="note">No finite loss values to plot.</p>'
    xmax = max((step for pts in lines for step, _ in pts), default=1) or 1
    xticks = [t for t in _nice_ticks(0.0, float(xmax)) if t <= xmax]
    sx = _Scale(0.0, float(xmax), _LEFT, _W - _RIGHT)
    sy, yticks = _y_scale(lines)
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(results.methods())}
    out = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{_e(task)}: {_e(ylabel)} per step, one line per method">',
        f'<defs><clipPath id="{ident}-clip"><rect x="{_LEFT}" y="{_TOP}" '
        f'width="{_W - _LEFT - _RIGHT}" height="{_H - _TOP - _BOTTOM}"/></clipPath></defs>',
        '<g class="grid">',
    ]
    for t in xticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">')
        out.append(f"{_e(_fmt_tick(t))}</text>")
    exponent = sy.log and any(t >= 1e5 or t < 1e-3 for t in yticks)
    for t in yticks:
        y = sy(t)
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">')
        out.append(f"{_e(_fmt_tick(t, exponent))}</text>")
    out.append("</g>")
    out.append(
        f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" '
        f'height="{_H - _TOP - _BOTTOM}"/>'
        f'<text class="axis-label" x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 8}" '
        'text-anchor="middle">step</text>'
        f'<text class="axis-label" transform="translate(16 {(_TOP + _H - _BOTTOM) / 2}) '
        f'rotate(-90)" text-anchor="middle">{_e(ylabel)}{" (log scale)" if sy.log else ""}</text>'
    )
    out.append(f'<g clip-path="url(#{ident}-clip)">')
    legend, data = [], []
    variant_no: dict[str, int] = {}
    methods = list(colours)
    for i, (s, pts) in enumerate(zip(series, lines, strict=True)):
        # colour per method, dash per variant; the method's rank shifts the dashes so that
        # methods with identical curves (adam and adamp on a 1-D function) stay visible
        k = variant_no.setdefault(s.method, 0)
        variant_no[s.method] += 1
        rank = methods.index(s.method) if s.method in methods else i
        dash = DASHES[(rank + k) % len(DASHES)]
        colour = colours.get(s.method, PALETTE[i % len(PALETTE)])
        ids = f'data-method="{_e(s.method)}" data-variant="{_e(s.variant)}" data-series="{i}"'
        style = f'stroke="{colour}"' + (f' stroke-dasharray="{dash}"' if dash else "")
        out.append(f'<path class="series" {ids} {style} d="{_path(pts, sx, sy)}"/>')
        legend.append(
            f'<button type="button" class="legend-item" {ids} aria-pressed="true" '
            f'title="show or hide {_e(s.label)}"><svg width="30" height="10" aria-hidden="true">'
            f'<line x1="1" y1="5" x2="29" y2="5" {style}/></svg>{_e(s.label)}</button>'
        )
        data.append({"label": s.label, "points": [[k, _round(v)] for k, v in pts]})
    out.append("</g>")
    out.append(
        '<g class="hover" visibility="hidden"><line class="hover-line" '
        f'y1="{_TOP}" y2="{_H - _BOTTOM}"/><circle r="4"/></g>'
        f'<rect class="overlay" x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" '
        f'height="{_H - _TOP - _BOTTOM}"/></svg>'
    )
    spec = {
        "x": [sx.d0, sx.d1, sx.p0, sx.p1],
        "y": [sy.d0, sy.d1, sy.p0, sy.p1],
        "log": sy.log,
        "ylabel": ylabel,
        "series": data,
    }
    payload = json.dumps(spec, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    caption = (
        f"{_e(ylabel)}, mean over seeds"
        + (", log scale" if sy.log else "")
        + ". Click a legend entry to hide or show its line; hover for values."
    )
    return (
        f'<figure class="chart-box" id="{ident}" data-task="{_e(task)}">'
        + "".join(out)
        + '<div class="tooltip" hidden></div>'
        + f'<div class="legend">{"".join(legend)}</div>'
        + f"<figcaption>{caption}</figcaption>"
        + f'<script type="application/json" class="chart-data">{payload}</script></figure>'
    )


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


# -- the page ------------------------------------------------------------------------------
def _header(results: BenchResults) -> str:
    s = results.settings
    v = results.versions
    facts = [
        ("finished", results.created_utc or "unknown"),
        ("gradkit", v.get("gradkit", "?")),
        ("torch", v.get("torch", "?")),
        ("seeds", ", ".join(map(str, s.seeds))),
        ("methods", ", ".join(s.optimizers)),
        ("tasks", ", ".join(s.tasks)),
        ("steps", "each task's default" if s.steps is None else str(s.steps)),
    ]
    out = [f"<h1>gradkit bench report: suite <code>{_e(s.suite)}</code></h1>"]
    if s.smoke:
        out.append(
            '<p class="smoke"><strong>Smoke run</strong>: few steps on tiny data. The numbers '
            "check that the pipeline works; they say nothing about the optimizers.</p>"
        )
    out.append(
        '<dl class="facts">'
        + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(val)}</dd></div>" for k, val in facts)
        + "</dl>"
    )
    out.append(
        '<p class="note">Numbers are mean ± sample standard deviation over seeds; deterministic '
        "tasks run once. Click a column header to sort by it.</p>"
    )
    return "<header>" + "".join(out) + "</header>"


def render_html(results: BenchResults) -> str:
    """The whole ``report.html`` page as text (see the module docstring).

    Example:
        >>> from gradkit.bench.results import BenchResults
        >>> page = render_html(BenchResults.assemble(suite="s", methods=[], tasks={},
        ...                                          seeds=[0], records=[]))
        >>> page.startswith("<!DOCTYPE html>"), "://" in page  # no address: nothing to fetch
        (True, False)
    """
    taken: set[str] = set()
    toc: list[tuple[str, str]] = []
    body: list[str] = []
    for table in headline_tables(results):
        ident = _slug(table.title, taken)
        toc.append((ident, table.title))
        body.append(_section(table, ident))
    tasks = []
    for task in results.task_names():
        ident = _slug("task-" + task, taken)
        toc.append((ident, task))
        info = results.tasks.get(task)
        part = [f'<section class="task" id="{ident}"><h3>{_e(task)}</h3>']
        if info is not None:
            runs = "deterministic, one run per method" if info.deterministic else "one run per seed"
            part.append(f'<p class="note">{_e(info.description)}. {info.steps} steps; {runs}.</p>')
        if evaluated(results).select(task=task):
            part.append(_chart(results, task, ident + "-chart"))
        part += [_table_html(t) for t in task_tables(results, task)]
        tasks.append("".join(part) + "</section>")
    body.append('<section id="results"><h2>Results</h2>' + "".join(tasks) + "</section>")
    for table in appendix_tables(results):
        ident = _slug(table.title, taken)
        toc.append((ident, table.title))
        body.append(_section(table, ident))
    nav = "".join(f'<li><a href="#{i}">{_e(t)}</a></li>' for i, t in toc)
    title = f"gradkit bench report: suite {results.settings.suite}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_asset('report.css')}</style></head>\n<body>"
        f"{_header(results)}<nav><ol>{nav}</ol></nav><main>{''.join(body)}</main>"
        f"<footer>Written by gradkit {_e(results.versions.get('gradkit', '?'))}: one "
        "self-contained file; it fetches nothing.</footer>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )
