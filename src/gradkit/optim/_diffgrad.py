r"""diffGrad: Adam whose first moment is scaled by a friction coefficient.

Dubey, Chakraborty, Roy, Mukherjee, Singh, Chaudhuri. *diffGrad: An Optimization Method for
Convolutional Neural Networks.* IEEE TNNLS 31(11), 2020. arXiv:1909.11015.

Per element, with state :math:`m, v, g_{prev}` initialised to 0 and :math:`t` counted from 1:

.. math::

    g &\leftarrow g + \lambda\theta \quad\text{(coupled L2, only if } \lambda > 0)\\
    m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
    \xi &= \operatorname{sigmoid}(|g_{prev} - g|) = 1 / (1 + e^{-|g_{prev} - g|})\\
    g_{prev} &\leftarrow g\\
    \theta &\leftarrow \theta - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
        \frac{\xi \odot m}{\sqrt{v} + \epsilon}

Semantics follow the authors' fixed ``diffGrad_v2.py`` (shivram1987/diffGrad @73233ba) and its
packaged copy ``torch_optimizer.DiffGrad`` 0.3.0, against which the tests check parity:

* ε is added to :math:`\sqrt{v}` *before* bias correction; :math:`\sqrt{1-\beta_2^t}` is folded
  into the step size (unlike ``torch.optim.Adam``).
* The stored previous gradient is the L2-decayed gradient, copied (the original
  ``diffGrad.py`` aliased ``p.grad``, which makes ξ ≡ 0.5 under in-place ``zero_grad``; that
  bug is not reproduced and no compatibility mode is offered).
* ξ scales the first moment used in the step only; the stored ``exp_avg`` is unscaled.

Deviation from the reference (documented and tested): the reference adds the L2 term to
``p.grad`` in place; gradkit never modifies ``p.grad``.

Example:
    >>> import torch
    >>> from gradkit.optim import DiffGrad
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = DiffGrad([w], lr=0.1)
    >>> w.grad = torch.tensor([0.5, -0.5])
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9378, -1.9378])
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradkit import _validation as check
from gradkit.optim._base import GradkitOptimizer, ParamsT
from gradkit.optim._compile import compiled_step, per_tensor, scalar_tensor
from gradkit.optim._foreach import foreach_chunks

__all__ = ["DiffGrad", "diffgrad"]

Scalar = float | torch.Tensor


def _diffgrad_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    previous_grad: torch.Tensor,
    *,
    step_size: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    decay: bool,
    maximize: bool,
) -> None:
    """One tensor's diffGrad update, in place. ``step_size = lr·√bc2/bc1``.

    Scalars may be Python floats (the for-loop reference) or 0-d tensors (the compiled path);
    only plain arithmetic is used so that both behave the same.
    """
    if maximize:
        grad = -grad
    if decay:
        grad = grad + param * weight_decay
    exp_avg.mul_(beta1).add_(grad * (1 - beta1))
    exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
    denom = exp_avg_sq.sqrt() + eps
    friction = 1.0 / (1.0 + torch.exp(-(previous_grad - grad).abs()))
    previous_grad.copy_(grad)
    param.sub_(exp_avg * friction / denom * step_size)


def _step_sizes(lr: float, beta1: float, beta2: float, steps: list[int]) -> list[float]:
    return [lr * math.sqrt(1 - beta2**step) / (1 - beta1**step) for step in steps]


def _single_tensor_diffgrad(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    previous_grads: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    for i, param in enumerate(params):
        (step_size,) = _step_sizes(lr, beta1, beta2, [steps[i]])
        _diffgrad_kernel(
            param,
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            previous_grads[i],
            step_size=step_size,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            decay=weight_decay != 0,
            maximize=maximize,
        )


def _multi_tensor_diffgrad(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    previous_grads: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    # Chunked for cache locality (see _foreach.py). The friction is built in place in the
    # previous-gradient buffer, which is overwritten with the new gradient at the end, so the
    # only temporary is the denominator.
    for (p, g, m, v, prev), indices in foreach_chunks(
        [params, grads, exp_avgs, exp_avg_sqs, previous_grads]
    ):
        if maximize:
            g = list(torch._foreach_neg(g))
        if weight_decay != 0:
            g = list(torch._foreach_add(g, p, alpha=weight_decay))
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        torch._foreach_sub_(prev, g)
        torch._foreach_abs_(prev)
        torch._foreach_sigmoid_(prev)  # = 1/(1 + exp(-|g_prev - g|)), the friction ξ
        torch._foreach_mul_(prev, m)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        step_sizes = _step_sizes(lr, beta1, beta2, [steps[i] for i in indices])
        torch._foreach_addcdiv_(p, prev, denom, [-size for size in step_sizes])
        torch._foreach_copy_(prev, g)


def _fused_loop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    previous_grads: list[torch.Tensor],
    step_sizes: torch.Tensor,
    beta1: torch.Tensor,
    beta2: torch.Tensor,
    eps: torch.Tensor,
    weight_decay: torch.Tensor,
    decay: bool,
    maximize: bool,
) -> None:
    for i in range(len(params)):
        _diffgrad_kernel(
            params[i],
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            previous_grads[i],
            step_size=step_sizes[i],
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            decay=decay,
            maximize=maximize,
        )


_compiled_loop = compiled_step("DiffGrad", _fused_loop, _fused_loop)


def _fused_diffgrad(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    previous_grads: list[torch.Tensor],
    steps: list[int],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    like = params[0]
    factors = per_tensor(_step_sizes(1.0, beta1, beta2, steps), like)
    _compiled_loop(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        previous_grads,
        factors * scalar_tensor(lr, like),
        scalar_tensor(beta1, like),
        scalar_tensor(beta2, like),
        scalar_tensor(eps, like),
        scalar_tensor(weight_decay, like),
        weight_decay != 0,
        maximize,
    )


def diffgrad(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    previous_grads: list[torch.Tensor],
    steps: list[int],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    impl: str = "foreach",
) -> None:
    """Functional diffGrad update (see :class:`DiffGrad`); mutates params and state in place.

    Args:
        steps: the step number of each param *after* this step (1 on the first step).
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    if impl == "fused":
        _fused_diffgrad(
            params, grads, exp_avgs, exp_avg_sqs, previous_grads, steps,
            lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, maximize=maximize,
        )  # fmt: skip
        return
    fn = _single_tensor_diffgrad if impl == "forloop" else _multi_tensor_diffgrad
    fn(
        params, grads, exp_avgs, exp_avg_sqs, previous_grads, steps,
        lr=float(lr), beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, maximize=maximize,
    )  # fmt: skip


class DiffGrad(GradkitOptimizer):
    r"""diffGrad (Dubey et al., 2020), following the authors' ``diffGrad_v2``.

    See the module docstring for the update rule and the deviations from the reference.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε added to √v before bias correction (default 1e-8).
        weight_decay: coupled L2 coefficient λ, added to the gradient (default 0).
        maximize: maximize the objective instead of minimizing it.
        foreach: use the ``torch._foreach`` implementation (default when ``None``).
        fused: use the single compiled-graph implementation (``torch.compile``).
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"ignore"`` for NaN/inf gradients.

    Constructor keyword names match ``torch_optimizer.DiffGrad``, so swapping the import works.
    """

    _state_names = ("exp_avg", "exp_avg_sq", "previous_grad")
    _nonnegative_state = frozenset({"exp_avg_sq"})
    _validators = {
        "lr": check.nonnegative,
        "betas": check.betas,
        "eps": check.nonnegative,
        "weight_decay": check.nonnegative,
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str = "raise",
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )
        super().__init__(params, defaults)

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, list[torch.Tensor]],
        steps: list[int],
        impl: str,
    ) -> None:
        beta1, beta2 = group["betas"]
        diffgrad(
            params,
            grads,
            state["exp_avg"],
            state["exp_avg_sq"],
            state["previous_grad"],
            steps,
            lr=group["lr"],
            beta1=float(beta1),
            beta2=float(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
            impl=impl,
        )


def registry_spec() -> Any:
    """The registry entry for :class:`DiffGrad` (see :mod:`gradkit.registry`)."""
    from gradkit._specs import ErrorInput, OptimizerSpec

    return OptimizerSpec(
        name="diffgrad",
        cls=DiffGrad,
        paper="Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS 2020 (arXiv:1909.11015)",
        summary="Adam with a friction coefficient sigmoid(|g_prev - g|) on the first moment",
        configs=[
            {},
            {"weight_decay": 0.1},
            {"betas": (0.5, 0.99), "eps": 1e-6, "weight_decay": 0.01},
        ],
        error_inputs=[
            ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
            ErrorInput({"betas": (1.0, 0.999)}, ValueError, r"Invalid betas\[0\]: 1\.0"),
            ErrorInput({"betas": (0.9, -0.1)}, ValueError, r"Invalid betas\[1\]: -0\.1"),
            ErrorInput({"eps": -1e-8}, ValueError, r"Invalid eps: -1e-08"),
            ErrorInput({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1"),
            ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
            ErrorInput({"lr": "0.1"}, TypeError, r"Invalid lr: '0\.1'"),
        ],
        hyperparams=("lr", "betas", "eps", "weight_decay"),
        lr=0.05,
    )
