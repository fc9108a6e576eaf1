r"""Functional AdamW, the update of the non-matrix groups of the matrix optimizers.

SWAN, SinkGD and ARO update only 2-D (or flattened conv) weights with their matrix rule;
embeddings, the output head and 1-D params go to a group flagged ``use_matrix_update=False``
inside the same optimizer, which this module updates. The math is ``torch.optim.AdamW``'s
(decoupled decay, ε added after the bias-corrected square root):

.. math::

    \theta &\leftarrow \theta (1 - \eta\lambda)\\
    m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
    \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}

Three implementations as everywhere in gradkit: the for-loop reference, ``foreach`` (chunked
``torch._foreach_*``) and ``fused`` (one ``torch.compile``'d graph).
"""

from __future__ import annotations

import math

import torch

from gradkit.optim._compile import compiled_step, per_tensor, scalar_tensor
from gradkit.optim._foreach import foreach_chunks

__all__ = ["adamw"]

Scalar = float | torch.Tensor


def _adamw_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    step_size: Scalar,
    inv_sqrt_bc2: Scalar,
    lr: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    maximize: bool,
) -> None:
    """One tensor's AdamW update, in place (``step_size = lr/bc1``)."""
    if maximize:
        grad = -grad
    param.mul_(1 - lr * weight_decay)
    exp_avg.mul_(beta1).add_(grad * (1 - beta1))
    exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
    denom = exp_avg_sq.sqrt() * inv_sqrt_bc2 + eps
    param.sub_(exp_avg / denom * step_size)


def _corrections(beta1: float, beta2: float, steps: list[int]) -> tuple[list[float], list[float]]:
    """``1/bc1`` and ``1/√bc2`` per param."""
    return (
        [1.0 / (1 - beta1**step) for step in steps],
        [1.0 / math.sqrt(1 - beta2**step) for step in steps],
    )


def _fused_loop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    inv_bc1: torch.Tensor,
    inv_sqrt_bc2: torch.Tensor,
    lr: torch.Tensor,
    beta1: torch.Tensor,
    beta2: torch.Tensor,
    eps: torch.Tensor,
    weight_decay: torch.Tensor,
    maximize: bool,
) -> None:
    for i in range(len(params)):
        _adamw_kernel(
            params[i],
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            step_size=lr * inv_bc1[i],
            inv_sqrt_bc2=inv_sqrt_bc2[i],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
        )


_compiled_loop = compiled_step("AdamW group", _fused_loop, _fused_loop)


def adamw(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[int],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    impl: str = "foreach",
) -> None:
    """Functional AdamW (``torch.optim.AdamW`` math); mutates params and state in place.

    Args:
        steps: the step number of each param *after* this step (1 on the first step).
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    inv_bc1, inv_sqrt_bc2 = _corrections(beta1, beta2, steps)
    if impl == "fused":
        like = params[0]
        _compiled_loop(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            per_tensor(inv_bc1, like),
            per_tensor(inv_sqrt_bc2, like),
            scalar_tensor(lr, like),
            scalar_tensor(beta1, like),
            scalar_tensor(beta2, like),
            scalar_tensor(eps, like),
            scalar_tensor(weight_decay, like),
            maximize,
        )
        return
    lr = float(lr)
    if impl == "forloop":
        for i, param in enumerate(params):
            _adamw_kernel(
                param,
                grads[i],
                exp_avgs[i],
                exp_avg_sqs[i],
                step_size=lr * inv_bc1[i],
                inv_sqrt_bc2=inv_sqrt_bc2[i],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                maximize=maximize,
            )
        return
    for (p, g, m, v), indices in foreach_chunks([params, grads, exp_avgs, exp_avg_sqs]):
        if maximize:
            g = list(torch._foreach_neg(g))
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, [inv_sqrt_bc2[i] for i in indices])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(p, m, denom, [-lr * inv_bc1[i] for i in indices])
