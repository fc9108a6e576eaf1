"""Write a report folder atomically: ``report.md``, ``report.html``, ``results.json`` and one
PNG per task.

Everything is written into a fresh hidden folder next to the target, which is then renamed
into place (a previous report there is moved aside first and deleted afterwards). An exception
while writing removes the temporary folder, so a crash never leaves a half-written report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.html import render_html
from gradkit.bench.markdown import render_markdown
from gradkit.bench.results import BenchResults

__all__ = ["REPORT_FILES", "render_report", "suite_plot", "write_report"]

#: The files every report folder contains (plus ``curves_<task>.png`` when plots are on).
REPORT_FILES = ("report.md", "report.html", "results.json")


def _check_target(out: Path) -> None:
    """Refuse to replace a file, or a non-empty folder that is not a previous report."""
    if out.exists() and not out.is_dir():
        raise BenchConfigError(f"report path {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "results.json").is_file():
        raise BenchConfigError(
            f"refusing to replace {str(out)!r}: it is not empty and holds no results.json "
            "(not a gradkit report); choose another --out"
        )


def _fill(folder: Path, results: BenchResults, plots: bool) -> None:
    """Write the report files into ``folder``."""
    (folder / "results.json").write_text(results.to_json() + "\n", encoding="utf-8")
    plot_paths: dict[str, str] = {}
    if plots:
        from gradkit.bench.plots import plot_filename, plot_task

        draw = suite_plot(results.settings.suite)
        for task in results.task_names():
            if results.select(task=task):
                name = plot_filename(task)
                plot_task(results, task, folder / name, draw)
                plot_paths[task] = name
    (folder / "report.md").write_text(render_markdown(results, plot_paths), encoding="utf-8")
    (folder / "report.html").write_text(render_html(results), encoding="utf-8")


def suite_plot(suite: str) -> Callable[[BenchResults, str, Path], bool] | None:
    """The ``plot`` hook of the registered suite called ``suite`` (``None`` for an unknown
    suite, such as ``"custom"`` from :func:`~gradkit.bench.compare`)."""
    from gradkit.bench.suites import get_suite, suite_names

    if suite not in suite_names():
        return None
    return get_suite(suite).plot


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an existing ``out`` folder."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()  # only the unique name is needed
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(results: BenchResults, out: str | os.PathLike[str], *, plots: bool = True) -> Path:
    """Write ``results`` as a report folder at ``out`` (atomically) and return its path.

    Args:
        plots: also draw ``curves_<task>.png`` (needs matplotlib).

    Raises:
        BenchConfigError: ``out`` is a file, or a non-empty folder that is not a report.
    """
    out = Path(out).expanduser().absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        _fill(tmp, results, plots)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def render_report(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    plots: bool = True,
) -> Path:
    """Re-render a report folder from its ``results.json`` alone (nothing is trained).

    Args:
        source: a report folder, or its ``results.json``.
        out: where to write the report (default: the source folder, replaced atomically).
        plots: also draw the plots (the suite's own ones from the records' artifacts).

    Raises:
        BenchConfigError: no readable ``results.json`` at ``source``.
    """
    path = Path(source).expanduser()
    folder = path.parent if path.suffix == ".json" else path
    data = path if path.suffix == ".json" else path / "results.json"
    if not data.is_file():
        raise BenchConfigError(f"no results.json in {str(folder)!r}: not a gradkit report")
    try:
        results = BenchResults.from_json(data.read_text(encoding="utf-8"))
    except (ValueError, KeyError) as exc:
        raise BenchConfigError(f"cannot read {str(data)!r}: {exc}") from exc
    return write_report(results, folder if out is None else out, plots=plots)
