"""The minibatch training loop shared by the CNN task and :func:`gradkit.bench.compare`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from gradkit.bench.runtime import report_step

__all__ = ["cycle_batches", "move_batch", "train_steps"]


def move_batch(batch: Any, device: torch.device | str | None) -> Any:
    """Move every tensor inside ``batch`` (tensor, tuple, list or dict) to ``device``."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    return batch


def cycle_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Yield the batches of ``loader`` forever, re-iterating it (a new epoch) when exhausted.

    Raises ``ValueError`` if the loader yields nothing.
    """
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader yielded no batches")


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` from a batch that is a pair (the usual ``DataLoader`` output)."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        "each batch must be an (inputs, targets) pair; got "
        f"{type(batch).__name__}"
        + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
    )


def train_steps(
    model: torch.nn.Module,
    optimizer: Any,
    batches: Iterator[Any],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    steps: int,
    device: torch.device | str | None = None,
    *,
    clip_grad_norm: float | None = None,
    after_step: Callable[[int, Any], None] | None = None,
) -> tuple[list[float], str]:
    """Run ``steps`` optimizer steps in train mode.

    Each step takes the next ``(inputs, targets)`` batch, computes
    ``loss_fn(model(inputs), targets)``, back-propagates, clips the gradient norm to
    ``clip_grad_norm`` (if given) and steps ``optimizer`` (a ``torch.optim.Optimizer`` or
    anything with ``zero_grad`` and ``step``). Then ``after_step(k, batch)`` is called with the
    number of steps done so far (a learning-rate schedule, a curvature refresh, an evaluation),
    and the step's loss goes to the tuner's pruner (:func:`~gradkit.bench.runtime.report_step`,
    which may stop the run with :class:`~gradkit.bench.runtime.TrialPruned`).

    Returns:
        The minibatch loss of every step (computed before that step's update) and a status:
        ``"ok"``, or ``"diverged"`` when a loss was non-finite (training stops there, the
        non-finite loss is the last curve entry).
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    model.train()
    curve: list[float] = []
    for _ in range(steps):
        inputs, targets = split_batch(move_batch(next(batches), device))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), targets)
        value = float(loss.detach())
        curve.append(value)
        if not math.isfinite(value):
            return curve, "diverged"
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if after_step is not None:
            after_step(len(curve), (inputs, targets))
        report_step(len(curve), value)
    return curve, "ok"
