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
    """The intrusion-detection MLP: ``Linear(F, hidden) → ReLU → Linear(hidden, C)``.

    Behaviour: initialised from ``seed`` (float32) without touching the global RNG state.
    With the 70 features left after cleaning and 8 classes it has 5,064 parameters. The
    EdgeDetect paper (arXiv:2604.14663) does not give its model; this small MLP is gradkit's
    choice for the CPU-scale ``fed`` suite.

    Args:
        num_features: input features ``F`` (≥ 1).
        num_classes: classes ``C`` (≥ 2).
        hidden: hidden width (≥ 1).
        seed: initialisation seed.

    Returns:
        The ``nn.Sequential`` model.

    Raises:
        ValueError: a size out of range.

    Example:
        >>> from gradkit.fed.model import build_mlp
        >>> model = build_mlp(70, 8)
        >>> sum(p.numel() for p in model.parameters())
        5064
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
    """The parameters as float32 numpy arrays (copies), in ``model.parameters()`` order.

    Behaviour: the form Flower's ``ArrayRecord`` and the strategy exchange; the inverse of
    :func:`set_weights`.

    Args:
        model: any module.

    Returns:
        One array per parameter.

    Example:
        >>> from gradkit.fed.model import build_mlp, get_weights
        >>> [w.shape for w in get_weights(build_mlp(3, 2, hidden=4))]
        [(4, 3), (4,), (2, 4), (2,)]
    """
    return [p.detach().cpu().numpy().astype(np.float32, copy=True) for p in model.parameters()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load ``weights`` (from :func:`get_weights`) into ``model``, in place.

    Args:
        model: the module to overwrite.
        weights: one array per parameter, in ``model.parameters()`` order.

    Raises:
        ValueError: the number of arrays or a shape does not match.

    Example:
        >>> from gradkit.fed.model import build_mlp, get_weights, set_weights
        >>> a, b = build_mlp(3, 2, seed=0), build_mlp(3, 2, seed=1)
        >>> set_weights(b, get_weights(a))
        >>> all((x == y).all() for x, y in zip(get_weights(a), get_weights(b)))
        True
    """
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
    r"""A client's local training: ``steps`` minibatch SGD steps, returned as a pseudo-gradient.

    Math: from the current weights :math:`w_0`, run ``steps`` SGD steps on the cross-entropy
    to :math:`w_T`, restore :math:`w_0`, and return :math:`u = w_0 - w_T`; the server applies
    :math:`w \leftarrow w - \eta\,\operatorname{aggregate}(u_1, \dots, u_N)` (with
    :math:`\eta = 1` and a mean aggregate this is FedAvg). Minibatches are drawn without
    replacement per epoch from a generator seeded with ``seed``.

    Paper: FedAvg, McMahan et al., arXiv:1602.05629 (local SGD, the model delta as the
    update); EdgeDetect (Mohammad, arXiv:2604.14663) binarises this delta. Reference
    implementation: Flower's FedAvg examples (``flwr`` 1.42), which return the new weights
    instead of the delta. Deviations: returning the delta, so that compression and
    error feedback act on the update.

    Args:
        model: the model at the round's global weights (restored on return).
        X: the client's training features.
        y: its labels.
        steps: local SGD steps (≥ 1).
        batch_size: minibatch size (≥ 1).
        lr: SGD learning rate (> 0).
        seed: seed of the minibatch order.

    Returns:
        ``(u, mean_loss)``: one tensor per parameter, and the mean training loss over the steps.

    Raises:
        ValueError: invalid ``steps``, ``batch_size`` or ``lr``, or no training data.
        FloatingPointError: the loss became non-finite.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.model import build_mlp, get_weights, local_update
        >>> model = build_mlp(4, 2, hidden=8)
        >>> before = get_weights(model)
        >>> X = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
        >>> u, loss = local_update(model, X, (X[:, 0] > 0).astype(np.int64),
        ...                        steps=5, batch_size=8, lr=0.1, seed=0)
        >>> len(u), all((a == b).all() for a, b in zip(before, get_weights(model)))
        (4, True)
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
        losses.append(float(loss.detach()))
    update = [s - p.detach() for s, p in zip(start, model.parameters(), strict=True)]
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    return update, float(np.mean(losses))


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Class predictions (argmax of the logits) for ``X``, in batches, without gradients.

    Args:
        model: the classifier.
        X: features ``[n, F]``.
        batch: rows per forward pass.

    Returns:
        ``[n]`` int64 class indices.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.model import build_mlp, predict
        >>> predict(build_mlp(4, 3), np.zeros((5, 4), dtype=np.float32)).shape
        (5,)
    """
    out = [
        model(torch.as_tensor(X[i : i + batch], dtype=torch.float32)).argmax(1)
        for i in range(0, len(X), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Metrics:
    """Classification metrics of one evaluation.

    Attributes:
        accuracy: the share of correct predictions.
        macro_f1: the mean F1 over the classes present in ``y_true``.
        minority_f1: the mean F1 over the ``minority`` classes present (NaN if none).
        per_class_f1: F1 of every class (NaN for a class absent from both arrays).
    """

    accuracy: float
    macro_f1: float
    minority_f1: float
    per_class_f1: tuple[float, ...]


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, minority: Sequence[int] = ()
) -> Metrics:
    r"""Accuracy, macro-F1, minority-class F1 and per-class F1 from a confusion matrix.

    Math: per class :math:`F_1 = 2\,TP/(2\,TP + FP + FN)`; macro-F1 averages it over the
    classes present in ``y_true`` (a class predicted but absent there does not count; a class
    present but never predicted has F1 0). The same definitions as scikit-learn's
    ``f1_score(average="macro", labels=present)``, without the dependency.

    Args:
        y_true: true labels, ``[n]`` (n ≥ 1).
        y_pred: predictions, ``[n]``.
        num_classes: the number of classes.
        minority: the classes averaged into ``minority_f1``.

    Returns:
        The :class:`Metrics`.

    Raises:
        ValueError: the arrays are not equal-length non-empty 1-D arrays.

    Example:
        >>> import numpy as np
        >>> from gradkit.fed.model import classification_metrics
        >>> m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3,
        ...                            minority=[2])
        >>> round(m.accuracy, 2), round(m.macro_f1, 3), m.minority_f1
        (0.75, 0.778, 1.0)
    """
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
