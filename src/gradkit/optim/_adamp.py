r"""AdamP and SGDP: Adam and SGD whose updates of scale-invariant weights are projected.

Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. *AdamP: Slowing Down the Slowdown for Momentum
Optimizers on Scale-invariant Weights.* ICLR 2021. arXiv:2006.08217.
Reference code: ``clovaai/AdamP`` @7f6f038, packaged as ``adamp==0.3.0`` (identical), against
which the tests check parity.

Momentum makes the norm of scale-invariant weights (e.g. a conv or linear weight followed by
BatchNorm) grow quickly, which shrinks their effective step size :math:`\eta/\lVert w\rVert^2`.
AdamP/SGDP detect such weights with a cosine test on the raw gradient and remove the radial
component of the update, so the norm grows only by second-order terms
(see :func:`gradkit.transforms.radial_projection` for the test and the projection,
:math:`\Pi(W, G, U) \mapsto (U', r)` with :math:`r \in \{\text{wd\_ratio}, 1\}`).

**AdamP**, per tensor, with state :math:`m, v` initialised to 0 and :math:`t` counted from 1:

.. math::

    m &\leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2\\
    d &= \sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon\\
    u &= m / d \quad\text{or, with nesterov,}\quad u = (\beta_1 m + (1-\beta_1) g) / d\\
    (u, r) &= \Pi(\theta, g, u) \text{ if } \theta\text{.ndim} > 1 \text{ else } (u, 1)\\
    \theta &\leftarrow \theta\,(1 - \eta\lambda r) \quad\text{(only if } \lambda > 0)\\
    \theta &\leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, u

**SGDP**, with the buffer :math:`b` initialised to 0 (μ momentum, τ dampening):

.. math::

    b &\leftarrow \mu b + (1-\tau) g\\
    d &= g + \mu b \text{ if nesterov else } b\\
    (d, r) &= \Pi(\theta, g, d) \text{ if } \theta\text{.ndim} > 1 \text{ else } (d, 1)\\
    \theta &\leftarrow \theta\,(1 - \eta\lambda r / (1-\mu)) \quad\text{(only if } \lambda > 0)\\
    \theta &\leftarrow \theta - \eta\, d

Facts of the reference that gradkit reproduces (the parity tests pin them):

* The cosine test uses the raw gradient; the projection acts on the update.
* Weight decay is decoupled and applied after the projection and before the step; projected
  tensors get :math:`\lambda\cdot\text{wd\_ratio}`; SGDP divides the decay by :math:`1-\mu`.
  Tensors with ``ndim <= 1`` are never projected (for them AdamP is exactly AdamW).
* SGDP's first buffer is :math:`(1-\tau) g` (``torch.optim.SGD`` copies :math:`g`).
* **SGDP without nesterov projects its momentum buffer**: in the reference ``d_p`` aliases the
  buffer and the projection subtracts in place, so the stored ``momentum`` is the projected
  direction and the next step builds on it. gradkit reproduces this (the parity tests compare
  the buffer). With ``nesterov=True`` the buffer is not projected. The paper's algorithm keeps
  the momentum and the projected step as separate quantities (our reading of its pseudo-code,
  via secondary sources; ``pytorch_optimizer``'s SGDP clones the buffer the same way), so this
  choice between the code and the paper is the flag ``project_buffer`` (default ``True``, the
  code).

Deviations from the reference (no value changes):

* ``p.grad`` is never modified (``maximize`` negates a copy); the reference does not modify it
  either, except that it has no ``maximize``.
* ``reshape`` instead of ``view``: non-contiguous weights work (the reference raises), and
  zero-size weights are not projected (the reference raises).
* Validation: ``lr, eps, weight_decay, delta, wd_ratio >= 0``, betas and ``momentum`` in
  :math:`[0, 1)` (SGDP divides by :math:`1-\mu`), ``dampening`` in :math:`[0, 1]`; the
  reference validates nothing (a negative weight decay was silently ignored there).
* SGDP's ``lr`` has no default: omitting it raises ``TypeError`` (the reference raises
  ``ValueError`` later, at group creation, and lets every param group supply its own ``lr``).
* SGDP accepts ``nesterov=True`` with ``momentum=0`` or ``dampening != 0``, exactly as the
  reference does (``torch.optim.SGD`` rejects these); the update is then the formula above.

Example:
    >>> import torch
    >>> from gradkit.optim import AdamP
    >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    >>> opt = AdamP([w], lr=0.1)
    >>> w.grad = torch.tensor([[-4.0, 3.0]])  # orthogonal to w: the projection fires
    >>> opt.step()
    >>> w.detach()
    tensor([[3.1120, 3.9160]])
    >>> round(float(w.detach().norm()), 5)  # grows only at second order: √(5² + 0.14²)
    5.00196
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch.optim.optimizer import required

from gradkit import _validation as check
from gradkit.optim._base import GradkitOptimizer, ParamsT
from gradkit.optim._compile import compiled_step, per_tensor, scalar_tensor
from gradkit.optim._foreach import foreach_chunks
from gradkit.transforms import radial_projection

__all__ = ["SGDP", "AdamP", "adamp", "sgdp"]

Scalar = float | torch.Tensor


# ================================================================================== AdamP
def _adamp_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    lr: Scalar,
    beta1: Scalar,
    beta2: Scalar,
    bias_correction1: Scalar,
    sqrt_bias_correction2: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    delta: Scalar,
    wd_ratio: Scalar,
    nesterov: bool,
    decay: bool,
    maximize: bool,
) -> None:
    """One tensor's AdamP update, in place, in the reference's op order.

    Scalars may be Python floats (the for-loop reference) or 0-d tensors (the compiled path);
    only plain arithmetic and the branch-free :func:`radial_projection` are used.
    """
    if maximize:
        grad = -grad
    exp_avg.mul_(beta1).add_(grad * (1 - beta1))
    exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
    denom = exp_avg_sq.sqrt() / sqrt_bias_correction2 + eps
    perturb = (beta1 * exp_avg + (1 - beta1) * grad) / denom if nesterov else exp_avg / denom
    perturb, ratio = radial_projection(
        param, grad, perturb, delta=delta, wd_ratio=wd_ratio, eps=eps
    )
    if decay:
        param.mul_(1 - lr * weight_decay * ratio)
    param.sub_(perturb * (lr / bias_correction1))


def _bias_corrections(
    beta1: float, beta2: float, steps: list[int]
) -> tuple[list[float], list[float]]:
    """``1 - β1^t`` and ``√(1 - β2^t)`` per param, as the reference computes them."""
    return [1 - beta1**step for step in steps], [math.sqrt(1 - beta2**step) for step in steps]


def _single_tensor_adamp(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    bc1s, sqrt_bc2s = _bias_corrections(beta1, beta2, steps)
    for i, param in enumerate(params):
        _adamp_kernel(
            param,
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            bias_correction1=bc1s[i],
            sqrt_bias_correction2=sqrt_bc2s[i],
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
            decay=weight_decay != 0,
            maximize=maximize,
        )


def _project_and_decay(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    updates: list[torch.Tensor],
    *,
    decay_rate: float,
    delta: float,
    wd_ratio: float,
    eps: float,
    decay: bool,
    buffers: list[torch.Tensor] | None = None,
) -> None:
    """Shared by the foreach paths: project ``updates`` in place of the list entries (one tensor
    at a time, no host sync), then apply the decoupled decay ``p ← p(1 − decay_rate·r)``
    (``decay_rate`` is ``lr·λ``, or ``lr·λ/(1−μ)`` for SGDP). If ``buffers`` is given, the
    projected update is also written into it (SGDP without nesterov)."""
    unprojected: list[torch.Tensor] = []
    for i, param in enumerate(params):
        if param.ndim <= 1 or param.numel() == 0:
            unprojected.append(param)
            continue
        updates[i], ratio = radial_projection(
            param, grads[i], updates[i], delta=delta, wd_ratio=wd_ratio, eps=eps
        )
        if buffers is not None and updates[i] is not buffers[i]:
            buffers[i].copy_(updates[i])
        if decay:
            param.mul_(1 - decay_rate * ratio)
    if decay and unprojected:
        torch._foreach_mul_(unprojected, 1 - decay_rate)


def _multi_tensor_adamp(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    for (dev_params, dev_grads, dev_exp_avgs, dev_exp_avg_sqs), indices in foreach_chunks(
        [params, grads, exp_avgs, exp_avg_sqs]
    ):
        p: list[torch.Tensor] = dev_params
        g: list[torch.Tensor] = dev_grads
        m: list[torch.Tensor] = dev_exp_avgs
        v: list[torch.Tensor] = dev_exp_avg_sqs
        bc1s, sqrt_bc2s = _bias_corrections(beta1, beta2, [steps[i] for i in indices])
        if maximize:
            g = list(torch._foreach_neg(g))
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, sqrt_bc2s)
        torch._foreach_add_(denom, eps)
        if nesterov:
            updates = list(torch._foreach_mul(m, beta1))
            torch._foreach_add_(updates, torch._foreach_mul(g, 1 - beta1))
            torch._foreach_div_(updates, denom)
        else:
            updates = list(torch._foreach_div(m, denom))
        del denom
        _project_and_decay(
            p, g, updates,
            decay_rate=lr * weight_decay, delta=delta, wd_ratio=wd_ratio, eps=eps, decay=weight_decay != 0,
        )  # fmt: skip
        step_sizes = [lr / bc1 for bc1 in bc1s]
        if all(size == step_sizes[0] for size in step_sizes):
            torch._foreach_add_(p, updates, alpha=-step_sizes[0])
        else:
            torch._foreach_mul_(updates, [-size for size in step_sizes])
            torch._foreach_add_(p, updates)


def _fused_adamp_loop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    bias_corrections1: torch.Tensor,
    sqrt_bias_corrections2: torch.Tensor,
    lr: torch.Tensor,
    beta1: torch.Tensor,
    beta2: torch.Tensor,
    eps: torch.Tensor,
    weight_decay: torch.Tensor,
    delta: torch.Tensor,
    wd_ratio: torch.Tensor,
    nesterov: bool,
    decay: bool,
    maximize: bool,
) -> None:
    for i in range(len(params)):
        _adamp_kernel(
            params[i],
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            bias_correction1=bias_corrections1[i],
            sqrt_bias_correction2=sqrt_bias_corrections2[i],
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
            decay=decay,
            maximize=maximize,
        )


_compiled_adamp = compiled_step("AdamP", _fused_adamp_loop, _fused_adamp_loop)


def adamp(
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
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    maximize: bool = False,
    impl: str = "foreach",
) -> None:
    """Functional AdamP update (see :class:`AdamP`); mutates params and state in place.

    Args:
        steps: the step number of each param *after* this step (1 on the first step).
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    if not params:
        return
    if impl == "fused":
        like = params[0]
        bc1s, sqrt_bc2s = _bias_corrections(beta1, beta2, steps)
        _compiled_adamp(
            params, grads, exp_avgs, exp_avg_sqs,
            per_tensor(bc1s, like), per_tensor(sqrt_bc2s, like),
            scalar_tensor(lr, like), scalar_tensor(beta1, like), scalar_tensor(beta2, like),
            scalar_tensor(eps, like), scalar_tensor(weight_decay, like),
            scalar_tensor(delta, like), scalar_tensor(wd_ratio, like),
            nesterov, weight_decay != 0, maximize,
        )  # fmt: skip
        return
    fn = _single_tensor_adamp if impl == "forloop" else _multi_tensor_adamp
    fn(
        params, grads, exp_avgs, exp_avg_sqs, steps,
        lr=float(lr), beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        delta=delta, wd_ratio=wd_ratio, nesterov=nesterov, maximize=maximize,
    )  # fmt: skip


# =================================================================================== SGDP
def _sgdp_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor,
    *,
    lr: Scalar,
    momentum: Scalar,
    dampening: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    delta: Scalar,
    wd_ratio: Scalar,
    nesterov: bool,
    project_buffer: bool,
    decay: bool,
    maximize: bool,
) -> None:
    """One tensor's SGDP update, in place, in the reference's op order (same scalar rules as
    :func:`_adamp_kernel`)."""
    if maximize:
        grad = -grad
    buf.mul_(momentum).add_(grad * (1 - dampening))
    d_p = grad + momentum * buf if nesterov else buf
    d_p, ratio = radial_projection(param, grad, d_p, delta=delta, wd_ratio=wd_ratio, eps=eps)
    if project_buffer and not nesterov and d_p is not buf:
        buf.copy_(d_p)  # the reference projects the buffer itself (d_p aliases it)
    if decay:
        param.mul_(1 - lr * weight_decay * ratio / (1 - momentum))
    param.sub_(d_p * lr)


def _single_tensor_sgdp(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    project_buffer: bool,
    maximize: bool,
) -> None:
    for i, param in enumerate(params):
        _sgdp_kernel(
            param,
            grads[i],
            momentum_buffers[i],
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
            project_buffer=project_buffer,
            decay=weight_decay != 0,
            maximize=maximize,
        )


def _multi_tensor_sgdp(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    project_buffer: bool,
    maximize: bool,
) -> None:
    for (dev_params, dev_grads, dev_bufs), _ in foreach_chunks([params, grads, momentum_buffers]):
        p: list[torch.Tensor] = dev_params
        g: list[torch.Tensor] = dev_grads
        bufs: list[torch.Tensor] = dev_bufs
        if maximize:
            g = list(torch._foreach_neg(g))
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, g, alpha=1 - dampening)
        if nesterov:
            updates = list(torch._foreach_mul(bufs, momentum))
            torch._foreach_add_(updates, g)
        else:
            updates = list(bufs)  # aliases, as in the reference (projected entries are new)
        _project_and_decay(
            p, g, updates,
            decay_rate=lr * weight_decay / (1 - momentum), delta=delta, wd_ratio=wd_ratio, eps=eps,
            decay=weight_decay != 0, buffers=bufs if project_buffer and not nesterov else None,
        )  # fmt: skip
        torch._foreach_add_(p, updates, alpha=-lr)


def _fused_sgdp_loop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    lr: torch.Tensor,
    momentum: torch.Tensor,
    dampening: torch.Tensor,
    eps: torch.Tensor,
    weight_decay: torch.Tensor,
    delta: torch.Tensor,
    wd_ratio: torch.Tensor,
    nesterov: bool,
    project_buffer: bool,
    decay: bool,
    maximize: bool,
) -> None:
    for i in range(len(params)):
        _sgdp_kernel(
            params[i],
            grads[i],
            momentum_buffers[i],
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            eps=eps,
            weight_decay=weight_decay,
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
            project_buffer=project_buffer,
            decay=decay,
            maximize=maximize,
        )


_compiled_sgdp = compiled_step("SGDP", _fused_sgdp_loop, _fused_sgdp_loop)


def sgdp(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor],
    *,
    lr: Scalar,
    momentum: float = 0.0,
    dampening: float = 0.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    project_buffer: bool = True,
    maximize: bool = False,
    impl: str = "foreach",
) -> None:
    """Functional SGDP update (see :class:`SGDP`); mutates params and buffers in place.

    Args:
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    if not params:
        return
    if impl == "fused":
        like = params[0]
        _compiled_sgdp(
            params, grads, momentum_buffers,
            scalar_tensor(lr, like), scalar_tensor(momentum, like), scalar_tensor(dampening, like),
            scalar_tensor(eps, like), scalar_tensor(weight_decay, like),
            scalar_tensor(delta, like), scalar_tensor(wd_ratio, like),
            nesterov, project_buffer, weight_decay != 0, maximize,
        )  # fmt: skip
        return
    fn = _single_tensor_sgdp if impl == "forloop" else _multi_tensor_sgdp
    fn(
        params, grads, momentum_buffers,
        lr=float(lr), momentum=momentum, dampening=dampening, eps=eps, weight_decay=weight_decay,
        delta=delta, wd_ratio=wd_ratio, nesterov=nesterov, project_buffer=project_buffer,
        maximize=maximize,
    )  # fmt: skip


# ================================================================================ classes
class AdamP(GradkitOptimizer):
    r"""AdamP (Heo et al., ICLR 2021): Adam with decoupled weight decay whose updates of
    scale-invariant weights have their radial component removed.

    See the module docstring for the update rule, the reference facts it reproduces and the
    deviations. Constructor keyword names and defaults match ``adamp.AdamP`` 0.3.0, so swapping
    the import works.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε added to the bias-corrected √v, also used by the projection (default 1e-8).
        weight_decay: decoupled decay λ (default 0); projected tensors get λ·wd_ratio.
        delta: threshold coefficient δ of the cosine test ``max |cos| < δ/√n`` (default 0.1).
        wd_ratio: weight-decay multiplier for projected tensors (default 0.1).
        nesterov: use the Nesterov form ``(β1 m + (1−β1) g)/d`` of the update (default False).
        maximize: maximize the objective instead of minimizing it.
        foreach: use the ``torch._foreach`` implementation (default when ``None``).
        fused: use the single compiled-graph implementation (``torch.compile``).
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"ignore"`` for NaN/inf gradients.

    Example:
        >>> import torch
        >>> from gradkit.optim import AdamP
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False), torch.nn.BatchNorm1d(8))
        >>> opt = AdamP(model.parameters(), lr=1e-3, weight_decay=1e-2)
        >>> model(torch.randn(16, 4)).pow(3).mean().backward()
        >>> opt.step()
    """

    _state_names: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    _nonnegative_state = frozenset({"exp_avg_sq"})
    _validators: ClassVar[dict[str, check.Check]] = {
        "lr": check.nonnegative,
        "betas": check.betas,
        "eps": check.nonnegative,
        "weight_decay": check.nonnegative,
        "delta": check.nonnegative,
        "wd_ratio": check.nonnegative,
        "nesterov": check.boolean,
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
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
            delta=delta,
            wd_ratio=wd_ratio,
            nesterov=nesterov,
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
        adamp(
            params,
            grads,
            state["exp_avg"],
            state["exp_avg_sq"],
            steps,
            lr=group["lr"],
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            delta=float(group["delta"]),
            wd_ratio=float(group["wd_ratio"]),
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            impl=impl,
        )


class SGDP(GradkitOptimizer):
    r"""SGDP (Heo et al., ICLR 2021): SGD with momentum and decoupled weight decay whose
    updates of scale-invariant weights have their radial component removed.

    See the module docstring for the update rule, the reference facts it reproduces (notably
    that without nesterov the momentum buffer itself is projected) and the deviations.
    Constructor keyword names and defaults match ``adamp.SGDP`` 0.3.0.

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
        maximize: maximize the objective instead of minimizing it.
        foreach: use the ``torch._foreach`` implementation (default when ``None``).
        fused: use the single compiled-graph implementation (``torch.compile``).
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"ignore"`` for NaN/inf gradients.

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

    _state_names: ClassVar[tuple[str, ...]] = ("momentum",)
    _validators: ClassVar[dict[str, check.Check]] = {
        "lr": check.nonnegative,
        "momentum": check.unit_interval,
        "dampening": check.closed_unit_interval,
        "weight_decay": check.nonnegative,
        "nesterov": check.boolean,
        "project_buffer": check.boolean,
        "eps": check.nonnegative,
        "delta": check.nonnegative,
        "wd_ratio": check.nonnegative,
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = required,  # type: ignore[assignment]  # or in every group
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        *,
        project_buffer: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str = "raise",
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            eps=eps,
            delta=delta,
            wd_ratio=wd_ratio,
            project_buffer=project_buffer,
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
        sgdp(
            params,
            grads,
            state["momentum"],
            lr=group["lr"],
            momentum=float(group["momentum"]),
            dampening=float(group["dampening"]),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            delta=float(group["delta"]),
            wd_ratio=float(group["wd_ratio"]),
            nesterov=group["nesterov"],
            project_buffer=group["project_buffer"],
            maximize=group["maximize"],
            impl=impl,
        )


# =============================================================================== registry
_PAPER = (
    "Heo et al., AdamP: Slowing Down the Slowdown for Momentum Optimizers on "
    "Scale-invariant Weights, ICLR 2021 (arXiv:2006.08217)"
)


def _common_errors(**base: Any) -> list[Any]:
    from gradkit._specs import ErrorInput

    return [
        ErrorInput({**base, "lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({**base, "lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({**base, "eps": -1e-8}, ValueError, r"Invalid eps: -1e-08 \(must be >= 0\)"),
        ErrorInput(
            {**base, "weight_decay": -0.1},
            ValueError,
            r"Invalid weight_decay: -0\.1 \(must be >= 0\)",
        ),
        ErrorInput({**base, "delta": -0.1}, ValueError, r"Invalid delta: -0\.1 \(must be >= 0\)"),
        ErrorInput(
            {**base, "delta": float("inf")}, ValueError, r"Invalid delta: inf \(must be finite\)"
        ),
        ErrorInput(
            {**base, "wd_ratio": -0.5}, ValueError, r"Invalid wd_ratio: -0\.5 \(must be >= 0\)"
        ),
        ErrorInput(
            {**base, "nesterov": 1}, TypeError, r"Invalid nesterov: 1 \(expected a bool, got int\)"
        ),
    ]


def registry_specs() -> list[Any]:
    """The registry entries of this module: ``adamp`` and ``sgdp`` (see :mod:`gradkit.registry`)."""
    return [_adamp_spec(), _sgdp_spec()]


def _adamp_spec() -> Any:
    from gradkit._specs import ErrorInput, OptimizerSpec

    return OptimizerSpec(
        name="adamp",
        cls=AdamP,
        paper=_PAPER,
        summary="Adam (decoupled decay) that removes the radial component of updates of scale-invariant weights",
        configs=[
            {},
            {"nesterov": True, "weight_decay": 1e-2, "wd_ratio": 0.5},
            {"betas": (0.5, 0.99), "eps": 1e-6, "weight_decay": 0.1, "delta": 1.0},
        ],
        error_inputs=[
            *_common_errors(),
            ErrorInput(
                {"betas": (1.0, 0.999)},
                ValueError,
                r"Invalid betas\[0\]: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"betas": (0.9, -0.1)},
                ValueError,
                r"Invalid betas\[1\]: -0\.1 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"betas": (0.9,)}, ValueError, r"Invalid betas: \(0\.9,\) \(expected a pair"
            ),
        ],
        hyperparams=("lr", "betas", "eps", "weight_decay", "delta", "wd_ratio", "nesterov"),
        lr=0.05,
    )


def _sgdp_spec() -> Any:
    from gradkit._specs import ErrorInput, OptimizerSpec

    lr = 0.05
    return OptimizerSpec(
        name="sgdp",
        cls=SGDP,
        paper=_PAPER,
        summary="SGD (momentum, decoupled decay) that removes the radial component of updates of scale-invariant weights",
        configs=[
            {"lr": lr},
            {"lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
            {
                "lr": lr,
                "momentum": 0.9,
                "dampening": 0.1,
                "weight_decay": 0.1,
                "delta": 1.0,
                "wd_ratio": 0.5,
                "eps": 1e-6,
            },
            {"lr": lr, "momentum": 0.9, "weight_decay": 1e-2, "project_buffer": False},
        ],
        error_inputs=[
            *_common_errors(lr=lr),
            ErrorInput(
                {"lr": lr, "momentum": 1.0},
                ValueError,
                r"Invalid momentum: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"lr": lr, "momentum": -0.1},
                ValueError,
                r"Invalid momentum: -0\.1 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"lr": lr, "dampening": 1.5},
                ValueError,
                r"Invalid dampening: 1\.5 \(must be in \[0, 1\]\)",
            ),
            ErrorInput(
                {"lr": lr, "project_buffer": "yes"},
                TypeError,
                r"Invalid project_buffer: 'yes' \(expected a bool, got str\)",
            ),
            ErrorInput(
                {"lr": lr, "dampening": -0.1},
                ValueError,
                r"Invalid dampening: -0\.1 \(must be in \[0, 1\]\)",
            ),
        ],
        hyperparams=(
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "eps",
            "delta",
            "wd_ratio",
            "nesterov",
            "project_buffer",
        ),
        lr=lr,
    )
