"""diffGrad: Adam whose first moment is scaled by a friction coefficient."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gradkit.optim._adamw import adam_hyper, adam_moments
from gradkit.optim._base import GradkitOptimizer, ParamsT, hyperparams
from gradkit.optim._compile import Kernel, KernelArgs, Scalars
from gradkit.optim._foreach import foreach_moments

__all__ = ["DiffGrad"]


def _diffgrad_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, previous: Tensor, s: Scalars
) -> None:
    """One tensor's diffGrad update, in place. ``step_factor = √bc2/bc1``.

    Scalars may be Python floats (the for-loop reference) or 0-d tensors (the compiled path);
    only plain arithmetic is used so that both behave the same.
    """
    if s["decay"]:
        grad = grad + param * s["weight_decay"]
    adam_moments(exp_avg, exp_avg_sq, grad, s)
    # ξ m / (√v + ε) with ξ = 1/(1 + e^{-|g_prev - g|}), as one division (compiled, the step is
    # compute-bound as much as memory-bound on CPU).
    denom = (exp_avg_sq.sqrt() + s["eps"]) * (1.0 + torch.exp(-(previous - grad).abs()))
    previous.copy_(grad)
    param.sub_(exp_avg / denom * (s["lr"] * s["step_factor"]))


def _diffgrad_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    # The friction is built in place in the previous-gradient buffer, which is overwritten with
    # the new gradient at the end, so the only temporary is the denominator.
    p, g, m, v, prev = lists
    if s["decay"]:
        g = list(torch._foreach_add(g, p, alpha=s["weight_decay"]))
    foreach_moments(m, v, g, s["beta1"], s["beta2"])
    torch._foreach_sub_(prev, g)
    torch._foreach_abs_(prev)
    torch._foreach_sigmoid_(prev)  # = 1/(1 + exp(-|g_prev - g|)), the friction ξ
    torch._foreach_mul_(prev, m)
    denom = torch._foreach_sqrt(v)
    torch._foreach_add_(denom, s["eps"])
    torch._foreach_addcdiv_(p, prev, denom, [-s["lr"] * f for f in s["step_factor"]])
    torch._foreach_copy_(prev, g)


DIFFGRAD_KERNEL = Kernel("DiffGrad", _diffgrad_kernel, foreach=_diffgrad_foreach)


class DiffGrad(GradkitOptimizer):
    r"""diffGrad (Dubey et al., 2020), following the authors' ``diffGrad_v2``.

    Paper: Dubey, Chakraborty, Roy, Mukherjee, Singh, Chaudhuri. *diffGrad: An Optimization
    Method for Convolutional Neural Networks.* IEEE TNNLS 31(11), 2020, arXiv:1909.11015.

    Per element, with state :math:`m, v, g_{prev}` initialised to 0 and :math:`t` counted from 1:

    .. math::

        g &\leftarrow g + \lambda\theta \quad\text{(coupled L2, only if } \lambda > 0)\\
        m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
        \xi &= \operatorname{sigmoid}(|g_{prev} - g|) = 1 / (1 + e^{-|g_{prev} - g|})\\
        g_{prev} &\leftarrow g\\
        \theta &\leftarrow \theta - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{\xi \odot m}{\sqrt{v} + \epsilon}

    Reference implementation: semantics follow the authors' fixed ``diffGrad_v2.py`` (shivram1987/diffGrad @73233ba) and its
    packaged copy ``torch_optimizer.DiffGrad`` 0.3.0, against which the tests check parity:

    * ε is added to :math:`\sqrt{v}` *before* bias correction; :math:`\sqrt{1-\beta_2^t}` is folded
      into the step size (unlike ``torch.optim.Adam``).
    * The stored previous gradient is the L2-decayed gradient, copied (the original
      ``diffGrad.py`` aliased ``p.grad``, which makes ξ ≡ 0.5 under in-place ``zero_grad``; that
      bug is not reproduced and no compatibility mode is offered).
    * ξ scales the first moment used in the step only; the stored ``exp_avg`` is unscaled.

    Deviation from the reference (documented and tested): the reference adds the L2 term to
    ``p.grad`` in place; gradkit never modifies ``p.grad``.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε added to √v before bias correction (default 1e-8).
        weight_decay: coupled L2 coefficient λ, added to the gradient (default 0).
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    Constructor keyword names match ``torch_optimizer.DiffGrad``, so swapping the import works.

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

    _state_names = ("exp_avg", "exp_avg_sq", "previous_grad")
    _nonnegative_state = frozenset({"exp_avg_sq"})
    _kernel = DIFFGRAD_KERNEL
    paper = "Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS 2020 (arXiv:1909.11015)"

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
        *, maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        hyper = adam_hyper(group)
        beta1, beta2 = hyper["beta1"], hyper["beta2"]
        return KernelArgs(
            hyper=hyper,
            per_tensor={"step_factor": [math.sqrt(1 - beta2**t) / (1 - beta1**t) for t in steps]},
            static={"decay": group["weight_decay"] != 0},
        )


def registry_spec() -> Any:
    """The registry entry for :class:`DiffGrad` (see :mod:`gradkit.registry`)."""
    from gradkit._specs import ErrorInput
    from gradkit.optim._entries import optimizer_entry

    return optimizer_entry(
        DiffGrad,
        "Adam with a friction coefficient sigmoid(|g_prev - g|) on the first moment",
        [
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
