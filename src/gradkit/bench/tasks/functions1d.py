"""diffGrad's three 1-D synthetic functions, fed to optimizers through analytic gradients.

From the analytical notebook of the diffGrad paper (Dubey et al., IEEE TNNLS 2020,
``diffGrad_analytical.ipynb`` in the authors' repository), which defines the functions by
their gradients:

* F1'(x) = 2x + 0.6 for x ≤ 0, 2x − 0.4 for x > 0.
  F1 = x² + 0.6x (x ≤ 0), x² − 0.4x (x > 0): global minimum F1(−0.3) = −0.09, local minimum
  F1(0.2) = −0.04.
* F2'(x) = −40 for x ≤ −0.9, else x·cos 8x + sin 8x + 3x².
  F2 = x³ + x·sin(8x)/8 − 7·cos(8x)/64 for x > −0.9, continued linearly (slope −40) to the
  left. The global minimum is the kink x = −0.9 (F2 ≈ −0.706): the gradient is −40 left of it
  and about +1 right of it, so adaptive methods that reach this basin orbit the kink (diffGrad
  ends at x ≈ −0.81, F2 ≈ −0.62). Local minimum at x = 0 (F2 = −7/64), where Adam ends.
  F is only defined up to a constant; this choice puts the constant of the smooth branch at 0
  (other write-ups shift all values by a constant; differences are the same).
* F3'(x) = 2x (x ≤ −0.5), 1 (x ≤ −0.4), −7/8 (x ≤ 0), 7/8 (x ≤ 0.4), −1 (x ≤ 0.5), 2x otherwise.
  F3 is the continuous even function with F3 = x² for |x| ≥ 0.5; global minimum F3(0) = 0,
  local minima F3(±0.5) = 0.25.

Protocol of the notebook: start x0 = −1, lr = 0.1, β = (0.95, 0.999), 300 iterations; the
gradient is written into ``x.grad`` before each ``step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from gradkit.bench.methods import Method
from gradkit.bench.tasks.base import Outcome, Task

__all__ = ["F1", "F2", "F3", "FUNCTIONS", "Function1D", "FunctionTask"]


@dataclass(frozen=True)
class Function1D:
    """A 1-D test function given by its value and analytic gradient."""

    name: str
    value: Callable[[float], float]
    grad: Callable[[float], float]
    global_min_x: float


def _f1(x: float) -> float:
    return x * x + 0.6 * x if x <= 0 else x * x - 0.4 * x


def _g1(x: float) -> float:
    return 2 * x + 0.6 if x <= 0 else 2 * x - 0.4


def _f2_smooth(x: float) -> float:
    return x**3 + x * math.sin(8 * x) / 8 - 7 * math.cos(8 * x) / 64


def _f2(x: float) -> float:
    if x <= -0.9:
        return _f2_smooth(-0.9) - 40 * (x + 0.9)
    return _f2_smooth(x)


def _g2(x: float) -> float:
    if x <= -0.9:
        return -40.0
    return x * math.cos(8 * x) + math.sin(8 * x) + 3 * x * x


def _f3(x: float) -> float:
    a = abs(x)  # F3 is even: F3'(−x) = −F3'(x)
    if a >= 0.5:
        return a * a
    if a >= 0.4:
        return 0.75 - a
    return 7 * a / 8


def _g3(x: float) -> float:
    if x <= -0.5:
        return 2 * x
    if x <= -0.4:
        return 1.0
    if x <= 0.0:
        return -7 / 8
    if x <= 0.4:
        return 7 / 8
    if x <= 0.5:
        return -1.0
    return 2 * x


F1 = Function1D("F1", _f1, _g1, global_min_x=-0.3)
F2 = Function1D("F2", _f2, _g2, global_min_x=-0.9)
F3 = Function1D("F3", _f3, _g3, global_min_x=0.0)
FUNCTIONS = {"f1": F1, "f2": F2, "f3": F3}

#: The notebook's settings.
START_X = -1.0
LR = 0.1
BETAS = (0.95, 0.999)
STEPS = 300
SMOKE_STEPS = 20


class FunctionTask(Task[Method]):
    """Minimise one of F1, F2, F3 from x0 = −1 with the notebook's settings.

    Every method gets lr = 0.1; ``betas = (0.95, 0.999)`` goes to methods that accept ``betas``,
    ``momentum = 0.9`` to those that accept ``momentum``; ``eps`` stays at each optimizer's own
    default; no weight decay. Computation is in float64.
    """

    deterministic = True
    seconds_per_run = 0.3  # measured on the 2-core machine, quiet, incl. the study database
    metrics = ("final_x", "dist_to_global_min")
    higher_is_better: ClassVar[Mapping[str, bool]] = {"dist_to_global_min": False}

    def __init__(self, key: str) -> None:
        if key not in FUNCTIONS:
            raise ValueError(f"unknown function {key!r}; valid: {', '.join(FUNCTIONS)}")
        self.function = FUNCTIONS[key]
        self.name = key
        self.optimum = self.function.value(self.function.global_min_x)
        self.loss_name = f"{self.function.name}(x)"
        self.description = (
            f"diffGrad synthetic function {self.function.name} (analytic gradient, x0 = "
            f"{START_X}, betas = {BETAS}, untuned lr = {LR}); global minimum at x ≈ "
            f"{self.function.global_min_x}"
        )

    def default_steps(self, smoke: bool) -> int:
        """300 iterations as in the notebook, 20 in smoke mode."""
        return SMOKE_STEPS if smoke else STEPS

    def hyperparams(self, method: Method) -> dict[str, Any]:
        """The notebook's settings, the same for every method."""
        return {"lr": LR, "betas": BETAS, "momentum": 0.9, "weight_decay": 0.0}

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Iterate ``x ← step(x, F'(x))``; the curve holds F at x0 and after every step."""
        fn = self.function
        x = torch.nn.Parameter(torch.tensor([START_X], dtype=torch.float64))
        optimizer, used = method.build([x], self.hyperparams(method))
        curve = [fn.value(START_X)]
        status = "ok"
        for _ in range(steps):
            xv = float(x.detach()[0])
            x.grad = torch.tensor([fn.grad(xv)], dtype=torch.float64)
            optimizer.step()
            xv = float(x.detach()[0])
            if not math.isfinite(xv):
                status = "diverged"
                curve.append(math.nan)
                break
            curve.append(fn.value(xv))
        xv = float(x.detach()[0])
        final = fn.value(xv) if math.isfinite(xv) else math.nan
        metrics = {"final_x": xv, "dist_to_global_min": abs(xv - fn.global_min_x)}
        return Outcome(final, curve, metrics=metrics, status=status), used
