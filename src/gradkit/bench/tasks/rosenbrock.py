"""The 2-D Rosenbrock function from the classic start (−1.2, 1), fixed number of steps.

f(x, y) = (1 − x)² + 100 (y − x²)², minimum f(1, 1) = 0.

Learning rates (one per optimizer family, the same for every member, float64):

==========================  ======  ==============================================
family                      lr      chosen as
==========================  ======  ==============================================
adaptive (takes ``betas``)  0.1     best of {1e-3, 3e-3, 1e-2, 3e-2, 0.1} for
                                    torch Adam at 1000 steps
momentum (``sgd``, SGDP)    2e-3    best of {1e-4, 3e-4, 1e-3, 2e-3} for torch SGD
                                    (momentum 0.9) at 1000 steps; 2e-3 is close to
                                    the stability limit at the start
other                       1e-3    fallback for optimizers of neither family
==========================  ======  ==============================================

``betas`` and ``eps`` stay at each optimizer's defaults, momentum 0.9 where accepted, no
weight decay.

Known outcome: gradkit's AdaBelief with its defaults (``rectify=True``,
``degenerated_to_sgd=True``, as in adabelief-pytorch 0.2) takes plain SGD steps ``lr · m̂``
for the first iterations, before the rectification term is defined; with lr = 0.1 and
‖∇f(−1.2, 1)‖ ≈ 230 the first step lands at x ≈ 20 and the run diverges. With
``rectify=False`` the same rate converges. The benchmark keeps every optimizer's defaults and
reports the divergence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from gradkit.bench.methods import Method
from gradkit.bench.tasks.base import Outcome, Task, lr_for

__all__ = ["LR_TABLE", "RosenbrockTask", "rosenbrock"]

START = (-1.2, 1.0)
OPTIMUM = (1.0, 1.0)
STEPS = 1000
SMOKE_STEPS = 20

#: Per-method overrides (none: every method uses its family's rate).
LR_TABLE: dict[str, float] = {}
#: Learning rate per :attr:`Method.family`.
FAMILY_LR = {"adaptive": 0.1, "momentum": 2e-3, "other": 1e-3}


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    """f(p) = (1 − p₀)² + 100 (p₁ − p₀²)² for a 2-element tensor ``p``."""
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


class RosenbrockTask(Task[Method]):
    """Minimise Rosenbrock from (−1.2, 1); report final f and the distance to (1, 1)."""

    name = "rosenbrock"
    loss_name = "f(x, y)"
    deterministic = True
    seconds_per_run = 0.7  # measured on the 2-core machine, quiet, incl. the study database
    optimum = 0.0
    metrics = ("dist_to_opt",)
    higher_is_better: ClassVar[Mapping[str, bool]] = {"dist_to_opt": False}
    description = (
        "Rosenbrock f(x, y) = (1−x)² + 100(y−x²)² from (−1.2, 1); untuned learning rate "
        "(--trials 0) per optimizer family: adaptive 0.1, momentum 2e-3"
    )

    def default_steps(self, smoke: bool) -> int:
        """1000 steps, 20 in smoke mode."""
        return SMOKE_STEPS if smoke else STEPS

    def hyperparams(self, method: Method) -> dict[str, Any]:
        """Learning rate from the table, momentum 0.9 where accepted, no weight decay."""
        return {
            "lr": lr_for(LR_TABLE, FAMILY_LR, method),
            "momentum": 0.9,
            "weight_decay": 0.0,
        }

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Plain autograd loop; the curve holds f at the start and after every step."""
        p = torch.nn.Parameter(torch.tensor(START, dtype=torch.float64))
        optimizer, used = method.build([p], self.hyperparams(method))
        curve: list[float] = []
        status = "ok"
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = rosenbrock(p)
            value = float(loss.detach())
            curve.append(value)
            if not math.isfinite(value):
                status = "diverged"
                break
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            final = float(rosenbrock(p))
            dist = float(torch.linalg.vector_norm(p - torch.tensor(OPTIMUM, dtype=p.dtype)))
        if status == "ok":
            curve.append(final)
            if not math.isfinite(final):
                status = "diverged"
        return Outcome(final, curve, metrics={"dist_to_opt": dist}, status=status), used
