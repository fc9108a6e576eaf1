"""A small BatchNorm CNN on scikit-learn's bundled ``load_digits`` (8×8 images, no download).

Data: the 1797 digits, split 75 % / 25 % with ``train_test_split(random_state=0,
stratify=y)``, standardised with the training set's mean and standard deviation (one scalar
each). Smoke mode keeps the first 256 training and 128 test images.

Model: conv3×3(1→16) → BN → ReLU → conv3×3(16→32) → BN → ReLU → max-pool 2 → linear(512→10).
The convolutions have no bias, so each is followed by BatchNorm and is *scale-invariant*: the
loss does not change when its weight W is multiplied by a positive constant. The AdamP paper
(Heo et al., ICLR 2021) argues that momentum optimizers inflate ‖W‖ of such weights, which
shrinks the effective step size, and that AdamP/SGDP's projection prevents it. The task
reports ``w_norm_ratio`` = ‖W_final‖ / ‖W_init‖ over both convolutions together.

Training: batch 64 (last partial batch dropped), reshuffled every epoch with a generator
seeded by the run's seed, 15 epochs (315 steps). ``final_loss`` is the cross-entropy on the
whole training set in eval mode after training; ``accuracy`` is the test accuracy.

Hyper-parameters: weight decay 5e-4 for every method (each with its own semantics: coupled L2
for SGD/Adam, decoupled for AdamW...), momentum 0.9 where accepted, ``betas``/``eps`` at each
optimizer's default. Learning rates (one per family, chosen once by hand for torch Adam and
SGD, both reach ≈99 % test accuracy): adaptive 1e-2, momentum 5e-2, other 1e-2.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.bench.methods import Method
from gradkit.bench.tasks.base import Outcome, Task, lr_for
from gradkit.bench.training import train_steps

__all__ = ["DigitsCNNTask", "DigitsData", "SmallBNCNN", "load_digits_data", "pre_bn_weight_norm"]

BATCH_SIZE = 64
EPOCHS = 15
SMOKE_STEPS = 10
SMOKE_TRAIN, SMOKE_TEST = 256, 128
WEIGHT_DECAY = 5e-4
LR_TABLE: dict[str, float] = {}
FAMILY_LR = {"adaptive": 1e-2, "momentum": 5e-2, "other": 1e-2}


@dataclass(frozen=True)
class DigitsData:
    """Standardised image tensors ``(N, 1, 8, 8)`` and integer labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def sklearn_digits(needed_by: str) -> tuple[Any, Any, Callable[..., Any]]:
    """scikit-learn's bundled ``load_digits`` (``x`` [1797, 64] with values 0–16, ``y``) and
    its ``train_test_split``.

    Raises:
        ImportError: scikit-learn is missing; the message names ``needed_by`` and the extra.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{needed_by} scikit-learn: pip install 'gradkit[bench]'") from exc
    x, y = load_digits(return_X_y=True)
    return x, y, train_test_split


@functools.lru_cache(maxsize=2)
def load_digits_data(smoke: bool = False) -> DigitsData:
    """The fixed split of ``sklearn.datasets.load_digits`` (deterministic, cached)."""
    x, y, train_test_split = sklearn_digits("the digits task needs")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = float(x_tr.mean()), float(x_tr.std())
    if smoke:
        x_tr, y_tr, x_te, y_te = (
            x_tr[:SMOKE_TRAIN],
            y_tr[:SMOKE_TRAIN],
            x_te[:SMOKE_TEST],
            y_te[:SMOKE_TEST],
        )

    def images(a: Any) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32).reshape(-1, 1, 8, 8)

    return DigitsData(
        images(x_tr),
        torch.tensor(y_tr, dtype=torch.long),
        images(x_te),
        torch.tensor(y_te, dtype=torch.long),
    )


class SmallBNCNN(nn.Module):
    """conv-BN-ReLU ×2, max-pool, linear; the convolutions are scale-invariant."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of ``(N, 1, 8, 8)`` images."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1))

    def pre_bn_weights(self) -> list[torch.Tensor]:
        """The weights of the convolutions that feed a BatchNorm."""
        return [self.conv1.weight, self.conv2.weight]


def pre_bn_weight_norm(model: SmallBNCNN) -> float:
    """‖W‖₂ of all pre-BN convolution weights together."""
    with torch.no_grad():
        return math.sqrt(sum(float(w.pow(2).sum()) for w in model.pre_bn_weights()))


def epoch_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled minibatches, a new permutation each epoch, last partial batch dropped."""
    n = x.shape[0]
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the data set ({n})")
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            yield x[idx], y[idx]


class DigitsCNNTask(Task[Method]):
    """Train :class:`SmallBNCNN` on digits; report train loss, test accuracy, ‖W‖ growth."""

    name = "digits_cnn"
    loss_name = "train loss"
    deterministic = False
    seconds_per_run = 1.5  # measured on the 2-core machine, quiet, incl. the study database
    metrics = ("w_norm_ratio",)
    higher_is_better: ClassVar[Mapping[str, bool]] = {"accuracy": True, "w_norm_ratio": False}
    description = (
        "BatchNorm CNN on scikit-learn digits (8×8), batch 64, 15 epochs, weight decay 5e-4; "
        "w_norm_ratio = ‖W_final‖/‖W_init‖ of the scale-invariant pre-BN conv weights"
    )

    def default_steps(self, smoke: bool) -> int:
        """15 epochs of full batches (315 steps); 10 steps in smoke mode."""
        if smoke:
            return SMOKE_STEPS
        return EPOCHS * (load_digits_data(False).x_train.shape[0] // BATCH_SIZE)

    def hyperparams(self, method: Method) -> dict[str, Any]:
        """Family learning rate, weight decay 5e-4, momentum 0.9 where accepted."""
        return {
            "lr": lr_for(LR_TABLE, FAMILY_LR, method),
            "momentum": 0.9,
            "weight_decay": WEIGHT_DECAY,
        }

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Initialise the model from the (already seeded) global RNG, shuffle with ``seed``."""
        data = load_digits_data(smoke)
        model = SmallBNCNN()
        norm0 = pre_bn_weight_norm(model)
        optimizer, used = method.build(model.parameters(), self.hyperparams(method))
        shuffle = torch.Generator().manual_seed(seed)
        batches = epoch_batches(data.x_train, data.y_train, BATCH_SIZE, shuffle)
        curve, status = train_steps(model, optimizer, batches, F.cross_entropy, steps)
        model.eval()
        with torch.no_grad():
            final = float(F.cross_entropy(model(data.x_train), data.y_train))
            pred = model(data.x_test).argmax(dim=1)
            accuracy = float((pred == data.y_test).float().mean())
        norm1 = pre_bn_weight_norm(model)
        metrics = {
            "w_norm_init": norm0,
            "w_norm_final": norm1,
            "w_norm_ratio": norm1 / norm0,
        }
        if not math.isfinite(final):
            status = "diverged"
        return Outcome(final, curve, accuracy=accuracy, metrics=metrics, status=status), used
