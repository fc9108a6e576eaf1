"""The intrusion-detection MLP, local training, and the metrics of the federated runs.

Everything here is plain PyTorch/numpy (no Flower), so the clients, the server's evaluation and
the tests share one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "Metrics",
    "build_mlp",
    "classification_metrics",
    "get_weights",
    "local_update",
    "predict",
    "set_weights",
]


def build_mlp(num_features: int, num_classes: int, hidden: int = 64, seed: int = 0) -> nn.Module:
    """``Linear(F, hidden) → ReLU → Linear(hidden, C)``, initialised from ``seed`` (float32).

    With the 70 features left after cleaning and 8 classes this has 5,064 parameters.
    """
    if num_features < 1 or num_classes < 2 or hidden < 1:
        raise ValueError(
            f"invalid MLP size: num_features={num_features}, num_classes={num_classes}, "
            f"hidden={hidden}"
        )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = nn.Sequential(
            nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return model


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The parameters as float32 numpy arrays (copies), in ``model.parameters()`` order."""
    return [p.detach().cpu().numpy().astype(np.float32, copy=True) for p in model.parameters()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load ``weights`` (from :func:`get_weights`) into ``model``; shapes must match."""
    params = list(model.parameters())
    if len(params) != len(weights):
        raise ValueError(f"expected {len(params)} weight arrays, got {len(weights)}")
    with torch.no_grad():
        for i, (p, w) in enumerate(zip(params, weights, strict=True)):
            if tuple(p.shape) != tuple(np.shape(w)):
                raise ValueError(
                    f"weight {i} has shape {tuple(np.shape(w))}, the model {tuple(p.shape)}"
                )
            p.copy_(torch.as_tensor(np.asarray(w, dtype=np.float32)))


def local_update(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[list[torch.Tensor], float]:
    """Run ``steps`` minibatch SGD steps from the model's current weights and restore them.

    Returns the *pseudo-gradient* ``u = w_start − w_end`` (one tensor per parameter; the server
    applies ``w ← w − η·aggregate(u)``) and the mean training loss over the steps. Minibatches
    are drawn without replacement per epoch from a generator seeded with ``seed``.
    """
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"invalid local training: steps={steps}, batch_size={batch_size}, lr={lr}")
    if len(y) == 0:
        raise ValueError("local_update: the client has no training data")
    start = [p.detach().clone() for p in model.parameters()]
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(yt), generator=gen)
    pos = 0
    losses = []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        if pos >= len(order):
            order, pos = torch.randperm(len(yt), generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(Xt[idx]), yt[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"local training loss became {loss.item()}")
        loss.backward()
        opt.step()
        losses.append(float(loss))
    update = [s - p.detach() for s, p in zip(start, model.parameters(), strict=True)]
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    return update, float(np.mean(losses))


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Class predictions (argmax) for ``X``."""
    out = [
        model(torch.as_tensor(X[i : i + batch], dtype=torch.float32)).argmax(1)
        for i in range(0, len(X), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Metrics:
    """Accuracy, macro-F1 over the classes present in ``y_true``, per-class F1, and the mean
    F1 over the ``minority`` classes."""

    accuracy: float
    macro_f1: float
    minority_f1: float
    per_class_f1: tuple[float, ...]


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, minority: Sequence[int] = ()
) -> Metrics:
    """Compute :class:`Metrics` (F1 of a class absent from both arrays is skipped in the
    averages; a class present in ``y_true`` but never predicted has F1 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"need equal non-empty 1-D arrays, got {y_true.shape}, {y_pred.shape}")
    cm = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)
    present = support > 0
    macro = float(np.mean(f1[present])) if present.any() else float("nan")
    minor = [k for k in minority if present[k]]
    return Metrics(
        accuracy=float(tp.sum() / len(y_true)),
        macro_f1=macro,
        minority_f1=float(np.mean(f1[minor])) if minor else float("nan"),
        per_class_f1=tuple(float(v) for v in f1),
    )
