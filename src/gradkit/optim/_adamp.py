"""AdamP and SGDP: Adam and SGD whose updates of scale-invariant weights are projected.

Both share the projection (:func:`gradkit.transforms.radial_projection`) and the layout of the
reference code, ``clovaai/AdamP``; each class states its own update rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import required

from gradkit import _validation as check
from gradkit.optim._adamw import adam_moments
from gradkit.optim._base import GradkitOptimizer, ParamsT, hyperparams
from gradkit.optim._compile import ONE_READ_PASS, Kernel, KernelArgs, Scalars
from gradkit.optim._foreach import foreach_moments
from gradkit.transforms import radial_projection

__all__ = ["SGDP", "AdamP"]


# ================================================================================== AdamP
def _project(param: Tensor, grad: Tensor, update: Tensor, s: Scalars) -> tuple[Tensor, Any]:
    """:func:`~gradkit.transforms.radial_projection` with the group's δ, wd_ratio and ε."""
    return radial_projection(
        param, grad, update, delta=s["delta"], wd_ratio=s["wd_ratio"], eps=s["eps"]
    )


def _adamp_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, s: Scalars
) -> None:
    """One tensor's AdamP update, in place, in the reference's op order.

    Scalars may be Python floats (the for-loop reference) or 0-d tensors (the compiled path);
    only plain arithmetic and the branch-free :func:`radial_projection` are used.
    """
    lr, beta1 = s["lr"], s["beta1"]
    adam_moments(exp_avg, exp_avg_sq, grad, s)
    denom = exp_avg_sq.sqrt() * s["inv_sqrt_bc2"] + s["eps"]
    first = beta1 * exp_avg + (1 - beta1) * grad if s["nesterov"] else exp_avg
    perturb = first / denom
    perturb, ratio = _project(param, grad, perturb, s)
    if s["decay"]:
        param.mul_(1 - lr * s["weight_decay"] * ratio)
    param.sub_(perturb * (lr / s["bias_correction1"]))


def _project_and_decay(
    lists: list[list[Tensor]],
    updates: list[Tensor],
    decay_rate: float,
    s: Scalars,
    buffers: list[Tensor] | None = None,
) -> None:
    """Shared by the foreach paths: project ``updates`` in place of the list entries (one tensor
    at a time, no host sync), then apply the decoupled decay ``p ← p(1 − decay_rate·r)``
    (``decay_rate`` is ``lr·λ``, or ``lr·λ/(1−μ)`` for SGDP). If ``buffers`` is given, the
    projected update is also written into it (SGDP without nesterov)."""
    params, grads, decay = lists[0], lists[1], s["decay"]
    unprojected: list[Tensor] = []
    for i, param in enumerate(params):
        if param.ndim <= 1 or param.numel() == 0:
            unprojected.append(param)
            continue
        updates[i], ratio = _project(param, grads[i], updates[i], s)
        if buffers is not None and updates[i] is not buffers[i]:
            buffers[i].copy_(updates[i])
        if decay:
            param.mul_(1 - decay_rate * ratio)
    if decay and unprojected:
        torch._foreach_mul_(unprojected, 1 - decay_rate)


def _adamp_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    p, g, m, v = lists
    lr, beta1 = s["lr"], s["beta1"]
    foreach_moments(m, v, g, beta1, s["beta2"])
    denom = torch._foreach_sqrt(v)
    torch._foreach_mul_(denom, s["inv_sqrt_bc2"])
    torch._foreach_add_(denom, s["eps"])
    if s["nesterov"]:
        updates = list(torch._foreach_mul(m, beta1))
        torch._foreach_add_(updates, torch._foreach_mul(g, 1 - beta1))
        torch._foreach_div_(updates, denom)
    else:
        updates = list(torch._foreach_div(m, denom))
    del denom
    _project_and_decay(lists, updates, lr * s["weight_decay"], s)
    step_sizes = [lr / bc1 for bc1 in s["bias_correction1"]]
    if all(size == step_sizes[0] for size in step_sizes):
        torch._foreach_add_(p, updates, alpha=-step_sizes[0])
    else:
        torch._foreach_mul_(updates, [-size for size in step_sizes])
        torch._foreach_add_(p, updates)


ADAMP_KERNEL = Kernel("AdamP", _adamp_kernel, foreach=_adamp_foreach, compile_options=ONE_READ_PASS)


# =================================================================================== SGDP
def _sgdp_kernel(param: Tensor, grad: Tensor, buf: Tensor, s: Scalars) -> None:
    """One tensor's SGDP update, in place, in the reference's op order (same scalar rules as
    :func:`_adamp_kernel`)."""
    lr, momentum, nesterov = s["lr"], s["momentum"], s["nesterov"]
    buf.mul_(momentum).add_(grad * (1 - s["dampening"]))
    d_p = grad + momentum * buf if nesterov else buf
    d_p, ratio = _project(param, grad, d_p, s)
    if s["project_buffer"] and not nesterov and d_p is not buf:
        buf.copy_(d_p)  # the reference projects the buffer itself (d_p aliases it)
    if s["decay"]:
        param.mul_(1 - lr * s["weight_decay"] * ratio / (1 - momentum))
    param.sub_(d_p * lr)


def _sgdp_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    p, g, bufs = lists
    lr, momentum, nesterov = s["lr"], s["momentum"], s["nesterov"]
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, g, alpha=1 - s["dampening"])
    if nesterov:
        updates = list(torch._foreach_mul(bufs, momentum))
        torch._foreach_add_(updates, g)
    else:
        updates = list(bufs)  # aliases, as in the reference (projected entries are new)
    buffers = bufs if s["project_buffer"] and not nesterov else None
    _project_and_decay(lists, updates, lr * s["weight_decay"] / (1 - momentum), s, buffers)
    torch._foreach_add_(p, updates, alpha=-lr)


SGDP_KERNEL = Kernel("SGDP", _sgdp_kernel, foreach=_sgdp_foreach, compile_options=ONE_READ_PASS)


_PAPER = (
    "Heo et al., AdamP: Slowing Down the Slowdown for Momentum Optimizers on "
    "Scale-invariant Weights, ICLR 2021 (arXiv:2006.08217)"
)
#: The projection's hyper-parameters (AdamP and SGDP).
_PROJECTION_VALIDATORS = {"delta": check.nonnegative, "wd_ratio": check.nonnegative}


def _projection_args(group: Mapping[str, Any]) -> dict[str, float]:
    """The hyper-parameters AdamP and SGDP share: the projection's and the decay's."""
    return {name: float(group[name]) for name in ("eps", "weight_decay", "delta", "wd_ratio")}


# ================================================================================ classes
class AdamP(GradkitOptimizer):
    r"""AdamP (Heo et al., ICLR 2021): Adam with decoupled weight decay whose updates of
    scale-invariant weights have their radial component removed.

    Paper: Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. *AdamP: Slowing Down the Slowdown for Momentum
    Optimizers on Scale-invariant Weights.* ICLR 2021, arXiv:2006.08217.

    Reference implementation: ``clovaai/AdamP`` @7f6f038, packaged as ``adamp==0.3.0``
    (identical); the tests check parity with it. Constructor keyword names and defaults match
    ``adamp.AdamP``, so swapping the import works.

    Momentum makes the norm of scale-invariant weights (a weight followed by BatchNorm) grow,
    which shrinks their effective step size :math:`\eta/\lVert w\rVert^2`. AdamP detects such
    weights with a cosine test on the raw gradient and removes the radial component of the
    update, :math:`\Pi(W, G, U) \mapsto (U', r)` with :math:`r \in \{\text{wd\_ratio}, 1\}`
    (:func:`gradkit.transforms.radial_projection`). Per tensor, with state :math:`m, v`
    initialised to 0 and :math:`t` counted from 1:

    .. math::

        m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
        d &= \sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon\\
        u &= m / d \quad\text{or, with nesterov,}\quad u = (\beta_1 m + (1-\beta_1) g) / d\\
        (u, r) &= \Pi(\theta, g, u) \text{ if } \theta\text{.ndim} > 1 \text{ else } (u, 1)\\
        \theta &\leftarrow \theta\,(1 - \eta\lambda r) \quad\text{(only if } \lambda > 0)\\
        \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, u

    Facts of the reference that gradkit reproduces: the cosine test uses the raw gradient, the
    projection acts on the update; the decay is decoupled, applied after the projection and
    before the step, with :math:`\lambda\cdot\text{wd\_ratio}` for projected tensors; tensors
    with ``ndim <= 1`` are never projected (for them AdamP is exactly AdamW).

    Deviations from the reference (no value changes): ``p.grad`` is never modified
    (``maximize`` negates a copy; the reference has no ``maximize``); ``reshape`` instead of
    ``view``, so non-contiguous weights work and zero-size weights pass through (the reference
    raises on both); the hyper-parameters are validated (``lr, eps, weight_decay, delta,
    wd_ratio >= 0``, betas in :math:`[0, 1)`; the reference validates nothing). ``fused=True``
    computes the projection's row sums in one pass (``radial_projection``'s single-pass form),
    equal to the reference up to rounding.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε added to the bias-corrected √v, also used by the projection (default 1e-8).
        weight_decay: decoupled decay λ (default 0); projected tensors get λ·wd_ratio.
        delta: threshold coefficient δ of the cosine test ``max |cos| < δ/√n`` (default 0.1).
        wd_ratio: weight-decay multiplier for projected tensors (default 0.1).
        nesterov: use the Nesterov form ``(β1 m + (1−β1) g)/d`` of the update (default False).
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    Example:
        >>> import torch
        >>> from gradkit.optim import AdamP
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False), torch.nn.BatchNorm1d(8))
        >>> opt = AdamP(model.parameters(), lr=1e-3, weight_decay=1e-2)
        >>> model(torch.randn(16, 4)).pow(3).mean().backward()
        >>> opt.step()
        >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
        >>> opt = AdamP([w], lr=0.1)
        >>> w.grad = torch.tensor([[-4.0, 3.0]])  # orthogonal to w: the projection fires
        >>> opt.step()
        >>> w.detach()
        tensor([[3.1120, 3.9160]])
        >>> round(float(w.detach().norm()), 5)  # grows only at second order: √(5² + 0.14²)
        5.00196
    """

    paper = _PAPER

    _kernel = ADAMP_KERNEL
    _state_names: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    _nonnegative_state = frozenset({"exp_avg_sq"})
    _validators = _PROJECTION_VALIDATORS

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
        delta: float = 0.1, wd_ratio: float = 0.1, nesterov: bool = False,
        *, maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        beta1, beta2 = (float(beta) for beta in group["betas"])
        return KernelArgs(
            hyper={"lr": group["lr"], "beta1": beta1, "beta2": beta2, **_projection_args(group)},
            per_tensor={
                "bias_correction1": [1 - beta1**step for step in steps],
                "inv_sqrt_bc2": [1.0 / math.sqrt(1 - beta2**step) for step in steps],
            },
            static={"nesterov": group["nesterov"], "decay": group["weight_decay"] != 0},
        )


class SGDP(GradkitOptimizer):
    r"""SGDP (Heo et al., ICLR 2021): SGD with momentum and decoupled weight decay whose
    updates of scale-invariant weights have their radial component removed.

    Paper: Heo et al., *AdamP: Slowing Down the Slowdown for Momentum Optimizers on
    Scale-invariant Weights.* ICLR 2021, arXiv:2006.08217 (SGDP is its SGD variant).

    Reference implementation: ``clovaai/AdamP`` @7f6f038 (``adamp==0.3.0``), class ``SGDP``;
    the tests check parity with it. Constructor keyword names and defaults match ``adamp.SGDP``.

    With the buffer :math:`b` initialised to 0 (μ momentum, τ dampening) and the projection
    :math:`\Pi` of :func:`gradkit.transforms.radial_projection`:

    .. math::

        b &\leftarrow \mu b + (1-\tau) g\\
        d &= g + \mu b \text{ if nesterov else } b\\
        (d, r) &= \Pi(\theta, g, d) \text{ if } \theta\text{.ndim} > 1 \text{ else } (d, 1)\\
        \theta &\leftarrow \theta\,(1 - \eta\lambda r / (1-\mu)) \quad\text{(only if } \lambda > 0)\\
        \theta &\leftarrow \theta - \eta\, d

    Facts of the reference that gradkit reproduces (the parity tests pin them): the first
    buffer is :math:`(1-\tau) g` (``torch.optim.SGD`` copies :math:`g`); the decay is divided
    by :math:`1-\mu`; and **without nesterov the momentum buffer itself is projected** (in the
    reference ``d_p`` aliases the buffer and the projection subtracts in place, so the next step
    builds on the projected direction). The paper's algorithm keeps momentum and projected step
    apart (our reading of its pseudo-code, as ``pytorch_optimizer.SGDP`` does), so this choice
    is the flag ``project_buffer`` (default ``True``, the code).

    Deviations from the reference: ``p.grad`` is never modified; ``reshape`` instead of
    ``view`` (non-contiguous and zero-size weights work); validation (``momentum`` in
    :math:`[0, 1)` since the decay divides by :math:`1-\mu`, ``dampening`` in :math:`[0, 1]`,
    the rest ``>= 0``); ``lr`` has no default, so omitting it raises ``TypeError`` (the
    reference raises ``ValueError`` at group creation). ``nesterov=True`` with ``momentum=0``
    or ``dampening != 0`` is accepted, as in the reference (``torch.optim.SGD`` rejects it).

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (required). May be a 0-d tensor.
        momentum: momentum factor μ in [0, 1) (default 0).
        dampening: dampening τ in [0, 1] of the gradient added to the buffer (default 0).
        weight_decay: decoupled decay λ (default 0), applied as ``θ(1 − ηλr/(1−μ))``.
        nesterov: use ``d = g + μ b`` instead of ``d = b`` (default False).
        eps: ε of the projection's cosine similarity and normalisation (default 1e-8).
        delta: threshold coefficient δ of the cosine test ``max |cos| < δ/√n`` (default 0.1).
        wd_ratio: weight-decay multiplier r for projected tensors (default 0.1).
        project_buffer: without nesterov, store the *projected* direction as the momentum
            buffer, as the official code does (default True). ``False`` keeps the buffer
            unprojected and projects only the step, as the paper's algorithm is written (and as
            ``pytorch_optimizer.SGDP`` does). No effect with ``nesterov=True``.
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    Example:
        >>> import torch
        >>> from gradkit.optim import SGDP
        >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
        >>> opt = SGDP([w], lr=0.1, momentum=0.9, nesterov=True)
        >>> w.grad = torch.tensor([[-4.0, 3.0]])
        >>> opt.step()
        >>> w.detach()
        tensor([[3.7600, 3.4300]])
    """

    paper = _PAPER

    _kernel = SGDP_KERNEL
    _state_names: ClassVar[tuple[str, ...]] = ("momentum",)
    _validators = {
        **_PROJECTION_VALIDATORS,
        "momentum": check.unit_interval,
        "dampening": check.closed_unit_interval,
    }

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = required, momentum: float = 0.0,  # type: ignore[assignment]
        dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
        eps: float = 1e-8, delta: float = 0.1, wd_ratio: float = 0.1,
        *, project_buffer: bool = True, maximize: bool = False, foreach: bool | None = None,
        fused: bool | None = None, nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        return KernelArgs(
            hyper={
                "lr": group["lr"],
                "momentum": float(group["momentum"]),
                "dampening": float(group["dampening"]),
                **_projection_args(group),
            },
            static={
                "nesterov": group["nesterov"],
                "project_buffer": group["project_buffer"],
                "decay": group["weight_decay"] != 0,
            },
        )
