"""Loss-curve plots (PNG, matplotlib's Agg canvas; pyplot and its global state are not used)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gradkit.bench.results import BenchResults
from gradkit.bench.stats import format_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_filename", "plot_task", "task_curves", "task_eval_curves"]


def plot_filename(task: str) -> str:
    """``curves_<task>.png`` with anything but letters, digits, ``-`` and ``_`` replaced."""
    return "curves_" + re.sub(r"[^A-Za-z0-9_-]", "_", task) + ".png"


def _label(method: str, variant: str | None) -> str:
    return f"{method} ({variant})" if variant else method


def _band(rows: list[list[float | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over rows (truncated to the shortest; ``None`` → NaN)."""
    length = min(len(r) for r in rows)
    data = np.array([[math.nan if v is None else v for v in r[:length]] for r in rows], float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # a step where every run is NaN (a diverged run's tail) stays NaN: not plotted
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(data, axis=0) if np.isfinite(data).any() else data[0]
        lo, hi = np.nanmin(data, axis=0), np.nanmax(data, axis=0)
    return mean, lo, hi


def task_curves(
    results: BenchResults, task: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per method: step index, mean, min and max of the loss curves over seeds.

    Curves are truncated to the shortest one of the method (runs that diverged stop early);
    missing values are NaN. For a task with a hyper-parameter grid, each method's best variant
    (:meth:`BenchResults.best_variant`) is shown, labelled ``method (variant)``.
    """
    out = {}
    for method in results.methods():
        variant = results.best_variant(task, method)
        records = [r for r in results.select(task, method, variant) if r.curve]
        if not records:
            continue
        stride = records[0].curve_stride
        mean, lo, hi = _band([list(r.curve) for r in records])
        out[_label(method, variant)] = (np.arange(mean.size) * stride, mean, lo, hi)
    return out


def task_eval_curves(
    results: BenchResults, task: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Like :func:`task_curves` for the held-out ``eval_curve`` of each record (empty when the
    task records none)."""
    out = {}
    for method in results.methods():
        variant = results.best_variant(task, method)
        records = [r for r in results.select(task, method, variant) if r.eval_curve]
        if not records:
            continue
        length = min(len(r.eval_curve) for r in records)
        steps = np.array([k for k, _ in records[0].eval_curve[:length]], dtype=float)
        mean, lo, hi = _band([[v for _, v in r.eval_curve[:length]] for r in records])
        out[_label(method, variant)] = (steps, mean, lo, hi)
    return out


_LINESTYLES = ("-", "--", ":", "-.")


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter window at the start)."""
    if window <= 1 or y.size == 0:
        return y
    c = np.cumsum(np.insert(np.nan_to_num(y), 0, 0.0))
    idx = np.arange(1, y.size + 1)
    start = np.maximum(idx - window, 0)
    return (c[idx] - c[start]) / (idx - start)


def plot_task(
    results: BenchResults,
    task: str,
    path: Path,
    draw: Callable[[BenchResults, str, Path], bool] | None = None,
) -> Path:
    """Write the loss curves of every method on ``task`` to ``path`` (PNG) and return it.

    When the task's optimum is known the plot shows the gap ``loss − optimum`` (floored at
    1e-16) on a log scale. Otherwise: log scale when all values are positive, symmetric-log
    else. A band shows min–max over seeds; curves of stochastic tasks are smoothed with a
    moving average.

    A suite may draw its own plot for a task: its ``plot`` hook, passed as ``draw``, is tried
    first and used when it returns ``True`` (the ``mtl`` suite draws trajectories over
    contours, the ``fed`` suite accuracy per round).
    """
    from matplotlib.figure import Figure

    if draw is not None and draw(results, task, path):
        return path
    info = results.tasks.get(task)
    curves = task_curves(results, task)
    held_out = task_eval_curves(results, task)
    fig = Figure(figsize=(12.5 if held_out else 7.5, 4.5), dpi=110)
    ax = fig.add_subplot(1, 2, 1) if held_out else fig.add_subplot()
    if held_out:
        _draw_eval(fig.add_subplot(1, 2, 2), held_out, results, task)
    window = 1
    if info is not None and not info.deterministic:
        longest = max((c[0].size for c in curves.values()), default=0)
        window = max(1, longest // 40)
    optimum = info.optimum if info is not None else None
    floor = 1e-16
    all_values = []
    starts = []
    for i, (method, (steps, mean, lo, hi)) in enumerate(curves.items()):
        if optimum is not None:
            mean, lo, hi = (np.maximum(a - optimum, floor) for a in (mean, lo, hi))
        y = _smooth(mean, window)
        style = _LINESTYLES[i % len(_LINESTYLES)]  # identical curves stay visible
        (line,) = ax.plot(steps, y, label=method, linewidth=1.5, linestyle=style)
        if (hi != lo).any():  # several seeds
            ax.fill_between(
                steps,
                _smooth(lo, window),
                _smooth(hi, window),
                alpha=0.15,
                color=line.get_color(),
                linewidth=0,
            )
        all_values.append(y[np.isfinite(y)])
        if y.size and np.isfinite(y[0]):
            starts.append(abs(float(y[0])))
    values = np.concatenate(all_values) if all_values else np.array([])
    if values.size and (values > 0).all():
        ax.set_yscale("log")
        if starts and values.max() > 1e3 * max(starts):  # a diverging run: keep the others readable
            ax.set_ylim(top=1e3 * max(starts))
    elif values.size:
        ax.set_yscale("symlog", linthresh=1.0)
    loss_name = info.loss_name if info else "loss"
    if held_out:  # the curve is the training minibatch loss; final_loss is the held-out one
        loss_name = "training minibatch loss"
    if optimum is not None:
        loss_name += f" − min ({format_number(optimum)})"
    ylabel = loss_name + (f" (moving average, {window} points)" if window > 1 else "")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{results.settings.suite} / {task}" + (": training" if held_out else ""))
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _draw_eval(
    ax: Axes,
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    results: BenchResults,
    task: str,
) -> None:
    """The held-out curves: mean over seeds, min–max band, log scale when positive."""
    values = []
    for i, (label, (steps, mean, lo, hi)) in enumerate(curves.items()):
        style = _LINESTYLES[i % len(_LINESTYLES)]
        (line,) = ax.plot(steps, mean, label=label, linewidth=1.5, linestyle=style)
        ax.fill_between(steps, lo, hi, alpha=0.15, color=line.get_color(), linewidth=0)
        values.append(mean[np.isfinite(mean)])
    flat = np.concatenate(values) if values else np.array([])
    if flat.size and (flat > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("step")
    info = results.tasks.get(task)
    name = info.loss_name if info is not None else "held-out loss"
    ax.set_ylabel(f"{name} (mean, min–max band over seeds)")
    ax.set_title(f"{results.settings.suite} / {task}: {name}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
