"""Write a report folder: ``report.md``, ``report.html``, ``results.json``, one PNG per task,
and (for ``gradkit bench``) the study database ``study.db``.

Each file is written to a temporary name in the folder and renamed into place, so a crash
never leaves a half-written file, and a reader sees either the previous version or the new
one. Nothing in the folder that gradkit did not write is ever touched: a report folder may
hold a user's own files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.html import render_html
from gradkit.bench.markdown import render_markdown
from gradkit.bench.results import BenchResults

__all__ = [
    "GRADKIT_FILES",
    "REPORT_FILES",
    "prepare_out",
    "render_report",
    "suite_plot",
    "write_report",
]

#: The files every report folder contains (plus ``curves_<task>.png`` when plots are on).
REPORT_FILES = ("report.md", "report.html", "results.json")

#: Every file name gradkit writes into a report folder (``curves_*.png`` besides); only these
#: are replaced or removed (``--overwrite``).
GRADKIT_FILES = ("report.md", "report.html", "results.json", "study.db", "study.db.lock")


def _is_ours(path: Path) -> bool:
    return path.name in GRADKIT_FILES or (path.name.startswith("curves_") and path.suffix == ".png")


def _check_target(out: Path) -> None:
    """Refuse a file, or a non-empty folder that holds no gradkit report or study."""
    if out.exists() and not out.is_dir():
        raise BenchConfigError(f"report path {str(out)!r} exists and is not a folder")
    if (
        out.is_dir()
        and any(out.iterdir())
        and not (out / "results.json").is_file()
        and not (out / "study.db").is_file()
    ):
        raise BenchConfigError(
            f"refusing to write into {str(out)!r}: it is not empty and holds no gradkit "
            "report (no results.json or study.db); choose another --out"
        )


def _check_writable(out: Path) -> None:
    """Create ``out`` and write and delete a probe file there, before any run starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gradkit-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchConfigError(
            f"cannot write the report to {str(out)!r}: {exc.strerror or exc}; choose a "
            "writable --out"
        ) from None


def prepare_out(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check the report folder before a run starts, and return its absolute path.

    * A new or empty folder is created and must be writable.
    * A folder with a study database (``study.db``) is resumed: finished runs are kept.
    * A folder with a report but no study database (an older gradkit's, or one written by
      :func:`~gradkit.bench.compare`) is refused unless ``overwrite``.
    * ``overwrite`` removes gradkit's own files there (:data:`GRADKIT_FILES`,
      ``curves_*.png``) and nothing else.

    Raises:
        BenchConfigError: ``out`` is a file, a non-empty folder that is not a report, a
            report that cannot be resumed (without ``overwrite``), or not writable.
    """
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise BenchConfigError(f"--out {str(path)!r} exists and is not a folder")
    if path.is_dir() and overwrite:
        for child in path.iterdir():
            if child.is_file() and _is_ours(child):
                child.unlink()
    elif path.is_dir() and any(path.iterdir()) and not (path / "study.db").is_file():
        if (path / "results.json").is_file():
            raise BenchConfigError(
                f"--out {str(path)!r} holds a report without a study database, so it cannot "
                "be resumed; pass --overwrite to replace gradkit's files there (other files "
                "are kept), or choose a new --out"
            )
        _check_target(path)
    _check_writable(path)
    return path


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _plot(
    results: BenchResults,
    task: str,
    draw: Callable[[BenchResults, str, Path], bool] | None,
    path: Path,
) -> None:
    from gradkit.bench.plots import plot_task

    plot_task(results, task, path, draw)


def _fill(folder: Path, results: BenchResults, plots: bool) -> None:
    """Write the report files into ``folder``, each atomically; ``results.json`` last."""
    plot_paths: dict[str, str] = {}
    if plots:
        from gradkit.bench.plots import plot_filename

        draw = suite_plot(results.settings.suite)
        for task in results.task_names():
            if results.select(task=task):
                name = plot_filename(task)
                _atomic_write(folder / name, functools.partial(_plot, results, task, draw))
                plot_paths[task] = name
    _write_text(folder / "report.md", render_markdown(results, plot_paths))
    _write_text(folder / "report.html", render_html(results))
    _write_text(folder / "results.json", results.to_json() + "\n")


def suite_plot(suite: str) -> Callable[[BenchResults, str, Path], bool] | None:
    """The ``plot`` hook of the registered suite called ``suite`` (``None`` for an unknown
    suite, such as ``"custom"`` from :func:`~gradkit.bench.compare`)."""
    from gradkit.bench.suites import get_suite, suite_names

    if suite not in suite_names():
        return None
    return get_suite(suite).plot


def write_report(results: BenchResults, out: str | os.PathLike[str], *, plots: bool = True) -> Path:
    """Write ``results`` as a report folder at ``out`` and return its path.

    Every file is replaced atomically; files gradkit did not write are left alone.

    Args:
        plots: also draw ``curves_<task>.png`` (needs matplotlib).

    Raises:
        BenchConfigError: ``out`` is a file, or a non-empty folder that is not a report.
    """
    out = Path(out).expanduser().absolute()
    _check_target(out)
    created = not out.exists()
    _check_writable(out)
    try:
        _fill(out, results, plots)
    except BaseException:
        if created:  # a crash into a fresh target leaves nothing at all
            shutil.rmtree(out, ignore_errors=True)
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
