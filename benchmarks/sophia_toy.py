"""Sophia on a 2-D loss with heterogeneous curvature (spec §4(d)1, the paper's Figure-2 setting).

``L(θ1, θ2) = L1(θ1) + L2(θ2)`` with a sharp coordinate ``L1 = 50 (θ1 − 1)² + (θ1 − 1)⁴`` and a
flat one ``L2 = 0.5 (θ2 − 4)²`` (curvatures 100 and 1 at the optimum (1, 4)), started at
(−1, −1). Every method gets a log-spaced learning-rate grid; the table gives, per method, the
fewest steps (best learning rate) to bring the loss below 1e-6, within 2,000 steps.

* GD: ``torch.optim.SGD``; SignGD: ``θ ← θ − η sign(g)`` with a step decay of 0.999;
* Adam: ``torch.optim.Adam`` (β = (0.9, 0.999));
* SophiaH: :class:`gradkit.optim.SophiaH` with the *exact* diagonal Hessian as the curvature
  estimate, refreshed every ``k`` = 1 and 10 steps (γ = 1, β = (0.9, 0.99), no weight decay),
  and with β1 = 0 (no momentum: a clipped Newton step).

Expected (paper): GD is limited by the sharp coordinate (its stable learning rate is < 2/100, so
the flat coordinate needs hundreds of steps); Sophia makes uniform progress in both.

Usage::

    python benchmarks/sophia_toy.py          # about a minute
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradkit.optim import SophiaH

TARGET = 1e-6
MAX_STEPS = 2000
START = (-1.0, -1.0)


def loss_fn(theta: torch.Tensor) -> torch.Tensor:
    a, b = theta[0] - 1.0, theta[1] - 4.0
    return 50.0 * a**2 + a**4 + 0.5 * b**2


def hessian_diagonal(theta: torch.Tensor) -> torch.Tensor:
    a = float(theta[0]) - 1.0
    return torch.tensor([100.0 + 12.0 * a**2, 1.0], dtype=theta.dtype)


def steps_to_target(make: Callable[[torch.Tensor], torch.optim.Optimizer], every: int = 0) -> int:
    """Steps until the loss is below TARGET (MAX_STEPS + 1 if never, or on divergence)."""
    theta = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = make(theta)
    for step in range(1, MAX_STEPS + 1):
        if every and (step - 1) % every == 0:
            assert isinstance(opt, SophiaH)
            opt.update_hessian([hessian_diagonal(theta.detach())])
        opt.zero_grad()
        loss = loss_fn(theta)
        loss.backward()
        opt.step()
        with torch.no_grad():
            value = float(loss_fn(theta))
        if not math.isfinite(value) or value > 1e12:
            return MAX_STEPS + 1
        if value < TARGET:
            return step
    return MAX_STEPS + 1


class SignGD(torch.optim.Optimizer):
    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * p.grad.sign())
                    group["lr"] *= 0.999


def main() -> None:
    grid = [10.0 ** (e / 2) for e in range(-8, 1)]  # 1e-4 … 1, half decades
    methods: dict[str, tuple[Callable[[float], Callable], int]] = {
        "GD": (lambda lr: lambda t: torch.optim.SGD([t], lr=lr), 0),
        "SignGD": (lambda lr: lambda t: SignGD([t], lr=lr), 0),
        "Adam": (lambda lr: lambda t: torch.optim.Adam([t], lr=lr), 0),
        "SophiaH k=1 (exact diag)": (
            lambda lr: lambda t: SophiaH([t], lr=lr, gamma=1.0, betas=(0.9, 0.99)),
            1,
        ),
        "SophiaH k=10 (exact diag)": (
            lambda lr: lambda t: SophiaH([t], lr=lr, gamma=1.0, betas=(0.9, 0.99)),
            10,
        ),
        "SophiaH k=1, beta1=0 (clipped Newton)": (
            lambda lr: lambda t: SophiaH([t], lr=lr, gamma=1.0, betas=(0.0, 0.99)),
            1,
        ),
    }
    print(f"| method | best lr | steps to loss < {TARGET:g} |")
    print("|---|---|---|")
    for name, (factory, every) in methods.items():
        results = [(steps_to_target(factory(lr), every), lr) for lr in grid]
        steps, lr = min(results)
        shown = str(steps) if steps <= MAX_STEPS else f"> {MAX_STEPS}"
        print(f"| {name} | {lr:.3g} | {shown} |")


if __name__ == "__main__":
    main()
