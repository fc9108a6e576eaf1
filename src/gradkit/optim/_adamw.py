r"""The AdamW kernel: the update of the non-matrix groups of the matrix optimizers.

SWAN, SinkGD and ARO update only 2-D (or flattened conv) weights with their matrix rule;
embeddings, the output head and 1-D params go to a group flagged ``use_matrix_update=False``
inside the same optimizer, which this kernel updates. The math is ``torch.optim.AdamW``'s
(decoupled decay, ε added after the bias-corrected square root):

.. math::

    \theta &\leftarrow \theta (1 - \eta\lambda)\\
    m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
    \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gradkit.optim._compile import Kernel, KernelArgs, Scalars
from gradkit.optim._foreach import foreach_moments

__all__ = ["ADAMW", "adam_hyper", "adam_moments", "adamw_args"]


def adam_moments(exp_avg: Tensor, exp_avg_sq: Tensor, grad: Tensor, s: Scalars) -> None:
    """Adam's moments in place: ``m ← β1 m + (1−β1) g`` and ``v ← β2 v + (1−β2) g²``."""
    exp_avg.mul_(s["beta1"]).add_(grad * (1 - s["beta1"]))
    exp_avg_sq.mul_(s["beta2"]).add_(grad * grad * (1 - s["beta2"]))


def _adamw_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, s: Scalars
) -> None:
    """One tensor's AdamW update, in place (``inv_bc1 = 1/(1−β1^t)``, ``inv_sqrt_bc2 =
    1/√(1−β2^t)``)."""
    lr = s["lr"]
    param.mul_(1 - lr * s["weight_decay"])
    adam_moments(exp_avg, exp_avg_sq, grad, s)
    denom = exp_avg_sq.sqrt() * s["inv_sqrt_bc2"] + s["eps"]
    param.sub_(exp_avg / denom * (lr * s["inv_bc1"]))


def _adamw_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    p, g, m, v = lists
    lr = s["lr"]
    if s["weight_decay"] != 0:
        torch._foreach_mul_(p, 1 - lr * s["weight_decay"])
    foreach_moments(m, v, g, s["beta1"], s["beta2"])
    denom = torch._foreach_sqrt(v)
    torch._foreach_mul_(denom, s["inv_sqrt_bc2"])
    torch._foreach_add_(denom, s["eps"])
    torch._foreach_addcdiv_(p, m, denom, [-lr * c for c in s["inv_bc1"]])


#: AdamW's kernel, shared by every optimizer that updates some groups with AdamW.
ADAMW = Kernel("AdamW group", _adamw_kernel, foreach=_adamw_foreach)


def adam_hyper(group: Mapping[str, Any]) -> dict[str, Any]:
    """``lr``, ``beta1``, ``beta2``, ``eps`` and ``weight_decay`` of a group (betas as floats)."""
    beta1, beta2 = (float(beta) for beta in group["betas"])
    names = ("lr", "eps", "weight_decay")
    return {"beta1": beta1, "beta2": beta2, **{name: group[name] for name in names}}


def adamw_args(group: Mapping[str, Any], steps: list[int]) -> KernelArgs:
    """The scalars of :data:`ADAMW` for a group with ``lr``, ``betas``, ``eps``,
    ``weight_decay``."""
    hyper = adam_hyper(group)
    beta1, beta2 = hyper["beta1"], hyper["beta2"]
    return KernelArgs(
        hyper=hyper,
        per_tensor={
            "inv_bc1": [1.0 / (1 - beta1**step) for step in steps],
            "inv_sqrt_bc2": [1.0 / math.sqrt(1 - beta2**step) for step in steps],
        },
    )
