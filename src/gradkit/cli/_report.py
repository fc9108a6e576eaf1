"""``gradkit report DIR``: re-render a report folder from its ``results.json`` (no training)."""

from __future__ import annotations

import argparse
import sys

from gradkit.bench.errors import BenchConfigError

__all__ = ["add_parser", "run_report"]


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``gradkit report``: rewrite ``report.md``, ``report.html`` and the plots from
    the stored data."""
    from gradkit.bench.writer import render_report

    try:
        out = render_report(args.folder, args.out, plots=not args.no_plots)
    except BenchConfigError as exc:
        print(f"gradkit report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report re-rendered to {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="re-render a bench report from its results.json, without training",
        description="Rewrite report.md, report.html and the plots of a gradkit bench report folder from the "
        "results.json in it (curves, metrics and the suites' plot data are stored there).",
    )
    p.add_argument("folder", help="a report folder written by gradkit bench (or its results.json)")
    p.add_argument("--out", help="write the report there instead of replacing FOLDER")
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    p.set_defaults(handler=run_report)
