"""MultiDigits (spec B2): two digits on one 12×12 canvas, one classification task each.

Data (:func:`build_multidigits`): scikit-learn's bundled ``load_digits`` (1797 8×8 images,
values 0–16, scaled to [0, 1]) is split 75 % / 25 % (stratified, ``random_state=0``) into
source pools, so no test image reuses a training digit. Each sample draws digits a and b from
its pool, shifts each by dr, dc ∈ {−1, 0, 1} inside its 8×8 window (zero fill), pastes a at
rows/cols [0:8, 0:8] and b at [4:12, 4:12] of a 12×12 canvas and combines them with the
pixel-wise maximum. Task 1 is the class of a (top-left), task 2 the class of b (bottom-right).
5 000 training and 1 000 test pairs (smoke: 256 / 128), fixed by ``data_seed=0``.

Model (:class:`MultiDigitsNet`): shared encoder conv3×3(1→16)-ReLU-conv3×3(16→32)-ReLU-flatten-
linear(2048→64)-ReLU and two linear(64→10) heads.

Training: Adam (lr 1e-3) for 15 epochs of batch 128 (585 steps), reshuffled every epoch with
the run's seed; the seed also fixes the initial weights (the same for every method). Each step
calls ``gradkit.mtl.mtl_backward([w1·CE1, CE2], encoder params, aggregator, task_params=heads)``
then ``optimizer.step()``. ``w1`` is 1 (``multidigits``) or 100 (``multidigits_imb100``, a
magnitude conflict).

A loss weighting (GradNorm) instead gets the same two losses ``[w1·CE1, CE2]`` each step:
``loss = weighting.step(losses, W, batch_size=128)`` returns ``Σ w_i L_i`` (the weights before
their update), then ``loss.backward()`` and ``optimizer.step()``; ``end_epoch()`` is called
after every epoch of 39 batches (the batch order's epochs; 4 batches in smoke mode). ``W`` is
the last shared layer's weight, the encoder's ``fc.weight`` (64×2048), as in the paper; for
LibMTL's variant (``variant="libmtl"``) it is every encoder parameter, as LibMTL takes the norms
on all shared params. LibMTL's variant steps its weights with the network's lr 1e-3 (LibMTL
registers them as model parameters; :data:`OPTIONS`); the paper form uses GradNorm's
defaults (α 1.5, Adam lr 0.025 on the weights).

Figures: ``acc_task1``, ``acc_task2`` (test accuracy), ``accuracy`` (their mean), ``final_loss``
(unweighted test CE1 + CE2) and ``delta_m_pct`` = ½ Σ_k (acc_k − acc_k^single)/acc_k^single ×
100 (positive = better than single-task learning), against the single-task baseline of the
same seed: each task trained alone (same encoder and initial weights, one head, Adam, the
same steps, unweighted loss; Adam is invariant to a constant loss factor up to its ε, so both
variants share it). The baseline is computed once per (seed, steps, data size) and cached; the
``single_task`` method reports it as a row.
A loss weighting's run adds ``w_task1``, ``w_task2`` (its final weights) and
``artifacts["weights"]``, the weights used at every step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.families import AggregatorMethod, TaskBaseline, WeightingMethod, as_function
from gradkit.bench.methods import BenchMethod
from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.tasks.mtl_common import SINGLE_TASK

__all__ = [
    "MultiDigits",
    "MultiDigitsNet",
    "MultiDigitsTask",
    "build_multidigits",
    "delta_m_pct",
    "load_multidigits",
    "single_task_baseline",
]

N_TRAIN, N_TEST = 5000, 1000
SMOKE_TRAIN, SMOKE_TEST = 256, 128
BATCH_SIZE = 128
SMOKE_BATCH = 64
EPOCHS = 15
SMOKE_STEPS = 4
LR = 1e-3
#: Method options on MultiDigits (CAGrad c as in the Nash-MTL/SAM-GS configs, SAM-GS γ as in
#: the SAM-GS repo's real-data configs, LibMTL's GradNorm with the network's lr).
OPTIONS: dict[str, dict[str, Any]] = {
    "cagrad": {"c": 0.4},
    "samgs": {"gamma": 0.7},
    "gradnorm_libmtl": {"lr": LR},
}


@dataclass(frozen=True)
class MultiDigits:
    """Images ``(N, 1, 12, 12)`` in [0, 1], labels of both tasks, and where they came from.

    ``src_a``/``src_b`` index ``load_digits`` images; ``shift_a``/``shift_b`` are the (dr, dc)
    shifts of each digit inside its 8×8 window.
    """

    x: torch.Tensor
    y1: torch.Tensor
    y2: torch.Tensor
    src_a: np.ndarray
    src_b: np.ndarray
    shift_a: np.ndarray
    shift_b: np.ndarray


def _shift(img: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``img`` (8×8) moved by (dr, dc) pixels, zero fill."""
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = img[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


def build_multidigits(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    jitter: bool = True,
) -> MultiDigits:
    """``n`` two-digit canvases from the 8×8 ``images`` (values in [0, 1]) indexed by ``pool``."""
    src_a = rng.choice(pool, size=n)
    src_b = rng.choice(pool, size=n)
    if jitter:
        shift_a = rng.integers(-1, 2, size=(n, 2))
        shift_b = rng.integers(-1, 2, size=(n, 2))
    else:
        shift_a = np.zeros((n, 2), dtype=np.int64)
        shift_b = np.zeros((n, 2), dtype=np.int64)
    x = np.zeros((n, 12, 12), dtype=np.float32)
    for i in range(n):
        a = _shift(images[src_a[i]], *shift_a[i])
        b = _shift(images[src_b[i]], *shift_b[i])
        x[i, 0:8, 0:8] = a
        x[i, 4:12, 4:12] = np.maximum(x[i, 4:12, 4:12], b)
    return MultiDigits(
        torch.from_numpy(x).unsqueeze(1),
        torch.as_tensor(labels[src_a], dtype=torch.long),
        torch.as_tensor(labels[src_b], dtype=torch.long),
        src_a,
        src_b,
        shift_a,
        shift_b,
    )


@functools.lru_cache(maxsize=2)
def load_multidigits(smoke: bool = False, data_seed: int = 0) -> tuple[MultiDigits, MultiDigits]:
    """The fixed (train, test) MultiDigits sets (cached)."""
    from gradkit.bench.tasks.digits import sklearn_digits

    x, y, train_test_split = sklearn_digits("the MultiDigits tasks need")
    images = (x / 16.0).reshape(-1, 8, 8).astype(np.float32)
    idx = np.arange(len(y))
    train_pool, test_pool = train_test_split(idx, test_size=0.25, random_state=0, stratify=y)
    rng = np.random.default_rng(data_seed)
    n_train, n_test = (SMOKE_TRAIN, SMOKE_TEST) if smoke else (N_TRAIN, N_TEST)
    train = build_multidigits(images, y, np.sort(train_pool), n_train, rng)
    test = build_multidigits(images, y, np.sort(test_pool), n_test, rng)
    return train, test


class Encoder(nn.Module):
    """conv3×3(1→16)-ReLU-conv3×3(16→32)-ReLU-flatten-linear(2048→64)-ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32 * 8 * 8, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, 64)`` of ``(N, 1, 12, 12)`` images."""
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.fc(x.flatten(1)))


class MultiDigitsNet(nn.Module):
    """Shared :class:`Encoder` and one linear head per task (``tasks`` = which heads)."""

    def __init__(self, tasks: tuple[int, ...] = (0, 1)) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.tasks = tasks
        self.heads = nn.ModuleList(nn.Linear(64, 10) for _ in tasks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of each head."""
        z = self.encoder(x)
        return [head(z) for head in self.heads]


def _batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless index batches, reshuffled every epoch, last partial batch dropped."""
    per_epoch = n // batch
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(per_epoch):
            yield order[i * batch : (i + 1) * batch]


def _labels(data: MultiDigits, task: int) -> torch.Tensor:
    return data.y1 if task == 0 else data.y2


def _evaluate(model: MultiDigitsNet, test: MultiDigits) -> dict[int, tuple[float, float]]:
    """Task → (test accuracy, test CE) of each head."""
    model.eval()
    with torch.no_grad():
        logits = model(test.x)
    out = {}
    for t, lg in zip(model.tasks, logits, strict=True):
        y = _labels(test, t)
        out[t] = (float((lg.argmax(1) == y).float().mean()), float(F.cross_entropy(lg, y)))
    return out


def _steps_for(smoke: bool) -> int:
    return SMOKE_STEPS if smoke else EPOCHS * (N_TRAIN // BATCH_SIZE)


@functools.lru_cache(maxsize=16)
def single_task_baseline(seed: int, steps: int, smoke: bool) -> dict[str, Any]:
    """Train each task alone (seeded like an MTL run of ``seed``); accuracies, losses, curve.

    The global RNG is saved and restored, so calling this does not change the caller's run.
    """
    train, test = load_multidigits(smoke)
    batch = SMOKE_BATCH if smoke else BATCH_SIZE
    result: dict[str, Any] = {"curve": np.zeros(steps)}
    for task in (0, 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MultiDigitsNet((task,))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        order = _batches(train.x.shape[0], batch, torch.Generator().manual_seed(seed))
        y = _labels(train, task)
        model.train()
        for k in range(steps):
            idx = next(order)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train.x[idx])[0], y[idx])
            loss.backward()
            opt.step()
            result["curve"][k] += float(loss.detach())
        acc, ce = _evaluate(model, test)[task]
        result[f"acc_task{task + 1}"] = acc
        result[f"loss_task{task + 1}"] = ce
    return result


def delta_m_pct(accs: tuple[float, float], baseline: tuple[float, float]) -> float:
    """Δm% = mean_k (acc_k − base_k)/base_k × 100 (higher is better)."""
    return 100.0 * sum((a - b) / b for a, b in zip(accs, baseline, strict=True)) / len(accs)


class MultiDigitsTask(Task[BenchMethod]):
    """Two classification tasks on MultiDigits trained with an aggregator or a loss weighting
    (see module doc)."""

    deterministic = False
    loss_name = "test CE1 + CE2"
    metrics = ("acc_task1", "acc_task2", "delta_m_pct")
    higher_is_better: ClassVar[Mapping[str, bool]] = {
        "accuracy": True,
        "acc_task1": True,
        "acc_task2": True,
        "delta_m_pct": True,
    }

    def __init__(self, name: str, weight1: float) -> None:
        self.name = name
        self.weight1 = float(weight1)
        imb = f", task-1 loss ×{weight1:g}" if weight1 != 1 else ""
        self.description = (
            f"MultiDigits (two load_digits digits on a 12×12 canvas, top-left = task 1, "
            f"bottom-right = task 2){imb}; conv encoder + 2 heads, Adam lr {LR:g}, batch "
            f"{BATCH_SIZE}, {EPOCHS} epochs; accuracy = mean of both tasks; delta_m_pct = "
            "mean relative test-accuracy change vs single-task training (same seed), %"
        )

    def default_steps(self, smoke: bool) -> int:
        """15 epochs of 39 batches (585 steps); 4 in smoke mode."""
        return _steps_for(smoke)

    def hyperparams(self, method: BenchMethod) -> dict[str, Any]:
        """Adam lr 1e-3."""
        return {"lr": LR}

    def run(self, method: BenchMethod, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Train with ``method``'s aggregator or loss weighting (global RNG already seeded with
        ``seed``), or report the single-task baseline (:data:`SINGLE_TASK`)."""
        base = single_task_baseline(seed, steps, smoke)
        baseline = (base["acc_task1"], base["acc_task2"])
        if isinstance(method, TaskBaseline) and method.name == SINGLE_TASK:
            accs = baseline
            metrics = {
                "acc_task1": accs[0],
                "acc_task2": accs[1],
                "delta_m_pct": 0.0,
                "loss_task1": base["loss_task1"],
                "loss_task2": base["loss_task2"],
            }
            final = base["loss_task1"] + base["loss_task2"]
            return (
                Outcome(
                    final,
                    [float(v) for v in base["curve"]],
                    accuracy=sum(accs) / 2,
                    metrics=metrics,
                ),
                {"lr": LR},
            )
        if not isinstance(method, (AggregatorMethod, WeightingMethod)):
            raise BenchConfigError(
                f"{self.name} runs aggregators, loss weightings and {SINGLE_TASK}, not {method}"
            )
        train, test = load_multidigits(smoke)
        batch = SMOKE_BATCH if smoke else BATCH_SIZE
        model = MultiDigitsNet()
        optimizer, used = method.build(model.parameters(), self.hyperparams(method))
        order = _batches(train.x.shape[0], batch, torch.Generator().manual_seed(seed))
        train_step, prefix, kwargs, weighting = self._train_step(method, model, batch)
        curve: list[float] = []
        weights: list[list[float]] = []
        status = "ok"
        model.train()
        for k in range(steps):
            idx = next(order)
            optimizer.zero_grad(set_to_none=True)
            out1, out2 = model(train.x[idx])
            l1 = self.weight1 * F.cross_entropy(out1, train.y1[idx])
            l2 = F.cross_entropy(out2, train.y2[idx])
            value = float(l1.detach() + l2.detach())
            curve.append(value)
            if not math.isfinite(value):
                status = "diverged"
                break
            if weighting is not None:
                weights.append(weighting.weights.tolist())  # the weights this step uses
            train_step(l1, l2)
            optimizer.step()
            if weighting is not None and (k + 1) % (train.x.shape[0] // batch) == 0:
                weighting.end_epoch()
        ev = _evaluate(model, test)
        accs = (ev[0][0], ev[1][0])
        final = ev[0][1] + ev[1][1]
        if not math.isfinite(final):
            status = "diverged"
        metrics = {
            "acc_task1": accs[0],
            "acc_task2": accs[1],
            "delta_m_pct": delta_m_pct(accs, baseline),
            "loss_task1": ev[0][1],
            "loss_task2": ev[1][1],
        }
        artifacts: dict[str, Any] = {}
        if weighting is not None:
            metrics["w_task1"], metrics["w_task2"] = weighting.weights.tolist()
            artifacts["weights"] = weights
        used = {**used, **{f"{prefix}.{k}": v for k, v in kwargs.items()}}
        outcome = Outcome(
            final,
            curve,
            accuracy=sum(accs) / 2,
            metrics=metrics,
            status=status,
            artifacts=artifacts,
        )
        return outcome, used

    @staticmethod
    def _train_step(
        method: AggregatorMethod | WeightingMethod, model: MultiDigitsNet, batch: int
    ) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], str, dict[str, Any], Any]:
        """``step(l1, l2)`` filling the ``.grad`` of ``model``'s params, the prefix and options
        of the method in the record, and the weighting (``None`` for an aggregator)."""
        options = OPTIONS.get(method.name, {})
        if isinstance(method, WeightingMethod):
            weighting, kwargs = method.build_weighting(2, options)
            libmtl = getattr(weighting, "variant", "paper") == "libmtl"
            shared = list(model.encoder.parameters()) if libmtl else model.encoder.fc.weight

            def weighted(l1: torch.Tensor, l2: torch.Tensor) -> None:
                weighting.step([l1, l2], shared, batch_size=batch).backward()

            return weighted, "weighting", kwargs, weighting
        from gradkit.mtl import mtl_backward

        params = list(model.encoder.parameters())
        heads = [list(h.parameters()) for h in model.heads]
        agg, kwargs = method.build_aggregator(options)
        aggregate = as_function(agg)

        def aggregated(l1: torch.Tensor, l2: torch.Tensor) -> None:
            mtl_backward([l1, l2], params, aggregate, task_params=heads)

        return aggregated, "aggregator", kwargs, None
