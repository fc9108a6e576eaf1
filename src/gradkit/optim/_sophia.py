r"""Sophia: clipped diagonal-Hessian preconditioning (SophiaG and SophiaH).

Liu, Li, Hall, Liang, Ma. *Sophia: A Scalable Stochastic Second-order Optimizer for Language
Model Pre-training.* ICLR 2024. arXiv:2305.14342. Official code: Liuhong99/Sophia @a7e1572
(``sophia.py``, ``train_sophiag.py``); its packaged fork ``sophia-opt==0.2.2`` is the test
oracle for :class:`SophiaG`.

Per element, with state :math:`m = h = 0` initially, and no bias correction:

.. math::

    \theta &\leftarrow \theta\,(1 - \eta\lambda) \qquad\text{(decoupled weight decay)}\\
    m &\leftarrow \beta_1 m + (1-\beta_1)\, g\\
    \text{SophiaG:}\quad \theta &\leftarrow \theta - \eta\,\operatorname{sign}(m)\,
        \min\!\Big(\frac{|m|}{\rho\cdot bs\cdot h + 10^{-15}},\ 1\Big)\\
    \text{SophiaH:}\quad \theta &\leftarrow \theta - \eta\,
        \operatorname{clip}\!\Big(\frac{m}{\max(\gamma h,\ \epsilon)},\ [-1, 1]\Big)

and, every :math:`k` steps, the curvature EMA :math:`h \leftarrow \beta_2 h + (1-\beta_2)\hat h`
(:meth:`SophiaG.update_hessian`, :meth:`SophiaH.update_hessian`, or :func:`sophia_refresh`):

* **SophiaG** stores the official code's quantity, :math:`\hat h = \hat g\odot\hat g` with
  :math:`\hat g` the Gauss–Newton–Bartlett sampled-label gradient of the *mean* loss over
  :math:`bs` label positions; ``rho * bs * h`` is then the paper's :math:`\gamma\,\hat h_{GNB}`
  (:math:`\gamma = \rho`, :math:`\hat h_{GNB} = bs\cdot\hat g\odot\hat g`).
* **SophiaH** stores a diagonal in the paper's units, normally the Hutchinson estimate
  :math:`u\odot Hu`. That estimate can be **negative**; the official code's form
  :math:`\operatorname{sign}(m)\min(|m|/(\rho bs h), 1)` would then have a negative ratio and step
  *uphill*, so SophiaH uses the paper's guard :math:`\max(\gamma h, \epsilon)`: a coordinate with
  :math:`h \le \epsilon/\gamma` takes the sign step :math:`-\eta\operatorname{sign}(m)`. (For
  :math:`h \ge 0` both forms agree.) Under ``maximize=True`` SophiaH negates the Hutchinson
  estimate, since the minimised objective is then :math:`-L`.

Until the first curvature update (and wherever :math:`h = 0`) both take
:math:`\Delta\theta = -\eta\operatorname{sign}(m) - \eta\lambda\theta` (sign momentum). Every
coordinate obeys :math:`|\Delta\theta_i + \eta\lambda\theta_i| \le \eta`.

**How ``bs`` is passed.** The official ``SophiaG.step(closure=None, bs=5120)`` takes the batch size
at each step. Here ``bs`` is a constructor / param-group hyper-parameter (default 5120, the
official default), so it is saved in ``state_dict`` and works with per-group overrides;
``step(bs=...)`` is still accepted and overrides every group's ``bs`` for that step, so that
official training loops run unchanged. ``bs`` must equal the number of loss terms averaged in
the Hessian-estimation loss (tokens ``B × T`` for a language model with mean reduction, 1 for
sum reduction). :func:`sophia_refresh` warns when it differs.

**Official recipe** (``train_sophiag.py``): :math:`k = 10`; at iterations with
``iter % 10 == 9`` the normal step is taken, then a fresh batch is forwarded, labels are sampled
from the model's own softmax, the mean cross-entropy is back-propagated, the gradient is clipped
to norm 1.0, ``update_hessian()`` is called and the gradients are zeroed. With gradkit:

.. code-block:: python

    for it, (x, y) in enumerate(batches):
        logits = model(x)                                   # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it % k == k - 1:
            x_h, _ = next(hessian_batches)
            sophia_refresh(optimizer, logits=model(x_h), max_grad_norm=1.0)

:func:`sophia_refresh` never touches ``p.grad``. Calling ``optimizer.update_hessian()`` right
after a backward pass of the sampled-label loss (the official API) works too.

Deviations from the official ``SophiaG`` (none changes a value; parity is tested in float64
over 60 steps with curvature updates in between): ``bs`` is a hyper-parameter,
``update_hessian`` also accepts the estimates as an argument, ``step`` is an ``int64`` tensor, a
``foreach`` and a compiled path exist, non-finite gradients or curvature estimates follow the
``nonfinite`` policy, and ``capturable`` is not offered.

Example:
    >>> import torch
    >>> from gradkit.optim import SophiaG
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = SophiaG([w], lr=0.1, weight_decay=0.0, bs=1)
    >>> w.grad = torch.tensor([0.5, -0.5])
    >>> opt.update_hessian()          # h = (1 - 0.99) * g**2, read from p.grad as in the paper code
    >>> opt.step()                    # |m| = 0.0175 > rho * bs * h = 1e-4: ratio clipped to 1
    >>> w.detach()
    tensor([ 0.9000, -1.9000])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from gradkit import _validation as check
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError, ParamsT
from gradkit.optim._compile import compiled_kernel_loop, for_each_tensor, scalar_tensor
from gradkit.optim._foreach import foreach_chunks
from gradkit.transforms._hessian import gnb_gradient, hutchinson_diagonal, hutchinson_from_grads

__all__ = ["SophiaG", "SophiaH", "sophia_refresh", "sophiag", "sophiah"]

Scalar = float | torch.Tensor

#: The official code's constant added to ``rho * bs * h``.
SOPHIAG_EPS = 1e-15


# ---------------------------------------------------------------------------- the update
def _sophia_kernel(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    hessian: torch.Tensor,
    *,
    lr: Scalar,
    beta1: Scalar,
    scale: Scalar,
    eps: Scalar,
    weight_decay: Scalar,
    decay: bool,
    maximize: bool,
    guard: bool,
) -> None:
    """One tensor's Sophia update, in place (``guard``: SophiaH's ``max(γh, ε)`` form, else the
    official SophiaG form with ``scale = ρ·bs``). Scalars are floats or 0-d tensors."""
    if maximize:
        grad = -grad
    if decay:
        param.mul_(1 - lr * weight_decay)
    if isinstance(beta1, float):
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  # the official op order
    else:
        exp_avg.mul_(beta1).add_(grad * (1 - beta1))
    if guard:
        ratio = (exp_avg / (hessian * scale).clamp(min=eps)).clamp(-1.0, 1.0)
        param.sub_(ratio * lr)
    else:
        ratio = (exp_avg.abs() / (hessian * scale + eps)).clamp(max=1.0)
        param.sub_(exp_avg.sign() * ratio * lr)


def _multi_tensor_sophia(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    hessians: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    scale: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    guard: bool,
) -> None:
    for (p, g, m, h), _ in foreach_chunks([params, grads, exp_avgs, hessians]):
        if maximize:
            g = list(torch._foreach_neg(g))
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1 - beta1)
        denom = torch._foreach_mul(h, scale)
        if guard:
            torch._foreach_clamp_min_(denom, eps)
            ratio = torch._foreach_div(m, denom)
            torch._foreach_clamp_min_(ratio, -1.0)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_mul_(ratio, lr)
            torch._foreach_sub_(p, ratio)
        else:
            torch._foreach_add_(denom, eps)
            ratio = torch._foreach_abs(m)
            torch._foreach_div_(ratio, denom)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_mul_(ratio, torch._foreach_sign(m))
            torch._foreach_mul_(ratio, lr)
            torch._foreach_sub_(p, ratio)


_compiled_loop = compiled_kernel_loop("Sophia", _sophia_kernel)


def _sophia(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    hessians: list[torch.Tensor],
    *,
    lr: Scalar,
    beta1: float,
    scale: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    guard: bool,
    impl: str,
) -> None:
    if impl not in ("forloop", "foreach", "fused"):
        raise ValueError(f"Invalid impl: {impl!r} (must be 'forloop', 'foreach' or 'fused')")
    if not params:
        return
    lists = [params, grads, exp_avgs, hessians]
    hyper = {"lr": lr, "beta1": beta1, "scale": scale, "eps": eps, "weight_decay": weight_decay}
    flags = {"decay": weight_decay != 0, "maximize": maximize, "guard": guard}
    if impl == "fused":
        like = params[0]
        tensors = {name: scalar_tensor(value, like) for name, value in hyper.items()}
        _compiled_loop(lists, {**tensors, **flags})
    elif impl == "forloop":  # the reference
        for_each_tensor(_sophia_kernel, lists, {**hyper, "lr": float(lr), **flags})
    else:
        _multi_tensor_sophia(
            params, grads, exp_avgs, hessians,
            lr=float(lr), beta1=beta1, scale=scale, eps=eps, weight_decay=weight_decay,
            maximize=maximize, guard=guard,
        )  # fmt: skip


def sophiag(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    hessians: list[torch.Tensor],
    *,
    lr: Scalar,
    beta1: float,
    rho: float,
    bs: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    impl: str = "foreach",
) -> None:
    """Functional SophiaG step (see :class:`SophiaG`); mutates params and ``exp_avgs``.

    Args:
        hessians: the curvature EMAs :math:`h` (official units: EMA of ĝ⊙ĝ); not modified.
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    _sophia(
        params, grads, exp_avgs, hessians,
        lr=lr, beta1=beta1, scale=rho * bs, eps=SOPHIAG_EPS, weight_decay=weight_decay,
        maximize=maximize, guard=False, impl=impl,
    )  # fmt: skip


def sophiah(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    hessians: list[torch.Tensor],
    *,
    lr: Scalar,
    beta1: float,
    gamma: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    impl: str = "foreach",
) -> None:
    """Functional SophiaH step (see :class:`SophiaH`); mutates params and ``exp_avgs``.

    Args:
        hessians: the curvature EMAs :math:`h` (paper units); not modified.
        impl: ``"forloop"`` (the reference), ``"foreach"`` or ``"fused"``.
    """
    _sophia(
        params, grads, exp_avgs, hessians,
        lr=lr, beta1=beta1, scale=gamma, eps=eps, weight_decay=weight_decay,
        maximize=maximize, guard=True, impl=impl,
    )  # fmt: skip


# ---------------------------------------------------------------------------- the shells
class _Sophia(GradkitOptimizer):
    """Shared shell: state ``exp_avg`` and ``hessian``, and the curvature EMA."""

    _state_names = ("exp_avg", "hessian")
    #: Whether the curvature estimate is squared (SophiaG stores ĝ⊙ĝ) or used as is.
    _square_estimate = False

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self.skipped_hessian_updates = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("skipped_hessian_updates", 0)

    def _all_params(self) -> list[torch.Tensor]:
        return [param for group in self.param_groups for param in group["params"]]

    def _aligned(
        self, estimates: Sequence[torch.Tensor | None], what: str
    ) -> list[torch.Tensor | None]:
        params = self._all_params()
        if isinstance(estimates, torch.Tensor):
            raise TypeError(f"{what}: expected a sequence of tensors (one per param), not a Tensor")
        estimates = list(estimates)
        if len(estimates) != len(params):
            raise ValueError(
                f"{what}: got {len(estimates)} estimates for {len(params)} params (one per param "
                "of the optimizer, in param-group order; None to leave a param's curvature as is)"
            )
        for index, (estimate, param) in enumerate(zip(estimates, params, strict=True)):
            if estimate is None:
                continue
            if not isinstance(estimate, torch.Tensor):
                raise TypeError(f"{what}: estimate {index} is a {type(estimate).__name__}")
            if estimate.shape != param.shape:
                raise ValueError(
                    f"{what}: estimate {index} has shape {tuple(estimate.shape)}, its param has "
                    f"{tuple(param.shape)}"
                )
        return estimates

    @torch.no_grad()
    def _update_curvature(self, estimates: list[torch.Tensor | None], what: str) -> None:
        """``h ← β2 h + (1−β2) ĥ`` for every param with an estimate (ĝ⊙ĝ for SophiaG)."""
        name = type(self).__name__
        position = 0
        work = []
        for group_index, group in enumerate(self.param_groups):
            params, values = [], []
            for index, param in enumerate(group["params"]):
                estimate = estimates[position]
                position += 1
                if estimate is None:
                    continue
                if group["nonfinite"] == "raise" and not bool(torch.isfinite(estimate).all()):
                    kind = "NaN" if bool(torch.isnan(estimate).any()) else "inf"
                    raise NonFiniteGradientError(
                        f"{name}.{what}: the curvature estimate of param {index} of group "
                        f"{group_index} (shape {tuple(param.shape)}) contains {kind}; nothing was "
                        "updated"
                    )
                params.append(param)
                values.append(estimate.detach().to(dtype=param.dtype, device=param.device))
            if params:
                work.append((group, params, values))
        for group, params, values in work:
            if group["nonfinite"] == "skip" and not all(
                bool(torch.isfinite(value).all()) for value in values
            ):
                self.skipped_hessian_updates += 1
                continue
            hessians = [self._init_state(param, group)["hessian"] for param in params]
            beta2 = float(group["betas"][1])
            sign = -1.0 if group["maximize"] and not self._square_estimate else 1.0
            if self._impl(group) == "forloop":
                for h, value in zip(hessians, values, strict=True):
                    if self._square_estimate:
                        h.mul_(beta2).addcmul_(value, value, value=1 - beta2)  # official op order
                    else:
                        h.mul_(beta2).add_(value, alpha=sign * (1 - beta2))
            else:
                torch._foreach_mul_(hessians, beta2)
                if self._square_estimate:
                    torch._foreach_addcmul_(hessians, values, values, value=1 - beta2)
                else:
                    torch._foreach_add_(hessians, values, alpha=sign * (1 - beta2))

    def win_rate(self) -> float:
        """Fraction of coordinates whose last update was *not* clipped, from the current state
        (the official README's tuning target: keep it in 0.1–0.5 by adjusting ``rho``). It uses
        the groups' hyper-parameters (a ``step(bs=...)`` override is not remembered)."""
        unclipped, total = 0, 0
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state.get(param)
                if not state or "exp_avg" not in state:
                    continue
                m, h = state["exp_avg"], state["hessian"]
                unclipped += int((m.abs() < self._denominator(group, h)).sum())
                total += m.numel()
        return unclipped / total if total else 0.0

    def _denominator(self, group: dict[str, Any], hessian: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SophiaG(_Sophia):
    r"""SophiaG (Liu et al., ICLR 2024): the official ``SophiaG`` update (GNB curvature).

    See the module docstring for the update, the ``bs`` convention and the training recipe.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η, the largest per-coordinate step (default 1e-4). May be a 0-d tensor.
        betas: (β1, β2): momentum and curvature-EMA coefficients (default (0.965, 0.99)).
        rho: ρ, the paper's γ (default 0.04).
        weight_decay: decoupled weight decay λ, θ ← θ(1 − ηλ) (default 0.1).
        bs: the number of loss terms averaged in the Hessian-estimation loss (default 5120, the
            official ``step(bs=5120)`` default).
        maximize: maximize the objective instead of minimizing it.
        foreach: use the ``torch._foreach`` implementation (default when ``None``).
        fused: use the single compiled-graph implementation (``torch.compile``).
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"ignore"`` for NaN/inf gradients and
            curvature estimates.

    Constructor keyword names match ``sophia_opt.SophiaG`` (plus ``bs``).
    """

    _square_estimate = True
    _nonnegative_state = frozenset({"hessian"})  # an EMA of squared sampled gradients
    _validators = {
        "lr": check.nonnegative,
        "betas": check.betas,
        "rho": check.nonnegative,
        "weight_decay": check.nonnegative,
        "bs": check.positive,
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        *,
        bs: float = 5120,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str = "raise",
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            rho=rho,
            weight_decay=weight_decay,
            bs=bs,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )
        self._bs_override: float | None = None
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, bs: float | None = None) -> Any:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.
            bs: overrides every group's ``bs`` for this step only (the official signature,
                ``step(bs=5120)``); ``None`` uses the groups' ``bs``.
        """
        if bs is not None:
            check.positive("bs", bs)
        self._bs_override = bs
        try:
            return super().step(closure)
        finally:
            self._bs_override = None

    def update_hessian(self, grads: Sequence[torch.Tensor | None] | None = None) -> None:
        r"""Refresh the curvature EMA: :math:`h \leftarrow \beta_2 h + (1-\beta_2)\,\hat g\odot\hat g`.

        Args:
            grads: :math:`\hat g`, one tensor (or ``None`` to skip) per param of the optimizer in
                param-group order, e.g. from :func:`gradkit.transforms.gnb_gradient`. When
                ``None``, ``p.grad`` is read, as the official ``update_hessian()`` does (the
                caller has just back-propagated the sampled-label loss); params without a
                ``.grad`` are skipped.
        """
        if grads is None:
            estimates: list[torch.Tensor | None] = [p.grad for p in self._all_params()]
        else:
            estimates = self._aligned(grads, "update_hessian")
        self._update_curvature(estimates, "update_hessian")

    def _denominator(self, group: dict[str, Any], hessian: torch.Tensor) -> torch.Tensor:
        return group["rho"] * group["bs"] * hessian + SOPHIAG_EPS

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, list[torch.Tensor]],
        steps: list[int],
        impl: str,
    ) -> None:
        bs = group["bs"] if self._bs_override is None else self._bs_override
        sophiag(
            params,
            grads,
            state["exp_avg"],
            state["hessian"],
            lr=group["lr"],
            beta1=float(group["betas"][0]),
            rho=float(group["rho"]),
            bs=float(bs),
            weight_decay=float(group["weight_decay"]),
            maximize=group["maximize"],
            impl=impl,
        )


class SophiaH(_Sophia):
    r"""SophiaH (Liu et al., ICLR 2024): Hutchinson curvature, the paper's guarded clip.

    :math:`\theta \leftarrow \theta(1-\eta\lambda) - \eta\operatorname{clip}(m/\max(\gamma h,
    \epsilon), 1)`, :math:`h` an EMA of :math:`u\odot Hu` refreshed every :math:`k` steps. See the
    module docstring.

    Defaults follow the community reference ``pytorch_optimizer.SophiaH`` (4.1.0; the official
    repository has no SophiaH), re-expressed in the paper's clip-at-1 form: its
    ``clamp(m / max(h, eps_p), -p, p)`` with step ``lr_p`` equals this class with
    ``lr = lr_p·p``, ``gamma = p``, ``eps = p·eps_p`` and ``weight_decay = wd_p / p``. Its
    defaults (lr 6e-2, p 0.01, betas (0.96, 0.99)) map to lr 6e-4, gamma 0.01 here; ``eps`` is
    the floor of :math:`\gamma h` (1e-12 here, i.e. ``eps_p`` 1e-10).

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η, the largest per-coordinate step (default 6e-4). May be a 0-d tensor.
        betas: (β1, β2) (default (0.96, 0.99)).
        gamma: γ, the curvature scale (default 0.01).
        eps: ε, the floor of γh (default 1e-12; must be > 0).
        weight_decay: decoupled weight decay λ (default 0).
        maximize: maximize the objective (the curvature estimate is then negated).
        foreach / fused / nonfinite: as for :class:`SophiaG`.
    """

    _validators = {
        "lr": check.nonnegative,
        "betas": check.betas,
        "gamma": check.nonnegative,
        "eps": check.positive,
        "weight_decay": check.nonnegative,
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | torch.Tensor = 6e-4,
        betas: tuple[float, float] = (0.96, 0.99),
        gamma: float = 0.01,
        eps: float = 1e-12,
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
            gamma=gamma,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )
        super().__init__(params, defaults)

    def update_hessian(
        self,
        hessian: Sequence[torch.Tensor | None] | None = None,
        *,
        n_samples: int = 1,
        distribution: str = "gaussian",
        generator: torch.Generator | None = None,
    ) -> None:
        r"""Refresh the curvature EMA: :math:`h \leftarrow \beta_2 h + (1-\beta_2)\hat h`.

        Args:
            hessian: diagonal estimates :math:`\hat h` in the paper's units, one per param of
                the optimizer in param-group order (``None`` to skip a param), e.g. from
                :func:`gradkit.transforms.hutchinson_diagonal` or
                :func:`gradkit.transforms.gnb_diagonal`. When ``None``, the Hutchinson estimate
                is computed from ``p.grad``, which must carry its graph
                (``loss.backward(create_graph=True)``, as ``pytorch_optimizer.SophiaH`` expects).
            n_samples / distribution / generator: the probes when ``hessian`` is ``None`` (see
                :func:`~gradkit.transforms.hutchinson_diagonal`).
        """
        if hessian is None:
            params = self._all_params()
            grads = [p.grad for p in params]
            if not any(g is not None and g.requires_grad for g in grads):
                raise ValueError(
                    "SophiaH.update_hessian(): no p.grad carries a graph; call "
                    "loss.backward(create_graph=True) first, or pass the estimates"
                )
            with torch.enable_grad():
                estimates = hutchinson_from_grads(
                    grads, params, n_samples=n_samples, distribution=distribution,
                    generator=generator,
                )  # fmt: skip
        else:
            estimates = self._aligned(hessian, "update_hessian")
        self._update_curvature(estimates, "update_hessian")

    def _denominator(self, group: dict[str, Any], hessian: torch.Tensor) -> torch.Tensor:
        return (group["gamma"] * hessian).clamp(min=group["eps"])

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, list[torch.Tensor]],
        steps: list[int],
        impl: str,
    ) -> None:
        sophiah(
            params,
            grads,
            state["exp_avg"],
            state["hessian"],
            lr=group["lr"],
            beta1=float(group["betas"][0]),
            gamma=float(group["gamma"]),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            maximize=group["maximize"],
            impl=impl,
        )


# ---------------------------------------------------------------------------- the refresh helper
def _clip_total_norm(grads: list[torch.Tensor | None], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` semantics on a list (in place, ``None`` skipped)."""
    present = [g for g in grads if g is not None]
    if not present:
        return
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().double()) for g in present])
    )
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in present:
        g.mul_(coefficient.to(g.dtype))


def sophia_refresh(
    optimizer: SophiaG | SophiaH,
    *,
    logits: torch.Tensor | None = None,
    loss: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_grad_norm: float | None = None,
    n_samples: int = 1,
    distribution: str = "gaussian",
) -> torch.Tensor:
    r"""Refresh a Sophia optimizer's curvature from a model output; ``p.grad`` is not touched.

    Pass exactly one of:

    * ``logits`` (shape ``(..., V)`` with their graph, e.g. ``model(x)`` of shape ``(B, T, V)``):
      the **Gauss–Newton–Bartlett** estimator. Labels are sampled from ``softmax(logits)``, the
      mean cross-entropy over all positions is differentiated, and for :class:`SophiaG`
      ``update_hessian(ĝ)`` stores ĝ⊙ĝ (official units; ``bs`` should equal the number of
      positions, a ``UserWarning`` says when a group's differs), for :class:`SophiaH` the
      paper-units diagonal ``n·ĝ⊙ĝ``.
    * ``loss`` (a scalar with its graph, the real training loss on a batch): the **Hutchinson**
      estimator ``u⊙Hu`` (SophiaH only: SophiaG's units are those of GNB).

    Call it every ``k`` steps (the official recipe: ``k = 10``, after that iteration's step, on
    a fresh batch, with ``max_grad_norm=1.0``).

    Args:
        optimizer: a :class:`SophiaG` or :class:`SophiaH`.
        logits / loss: see above.
        generator: random generator for label sampling / Hutchinson probes.
        max_grad_norm: clip ĝ to this total norm before squaring (GNB only; the official
            recipe uses 1.0; ``None``: no clipping).
        n_samples / distribution: Hutchinson probes (see
            :func:`~gradkit.transforms.hutchinson_diagonal`).

    Returns:
        The detached loss that was differentiated (the sampled-label cross-entropy for GNB).

    Example:
        >>> import torch
        >>> from gradkit.optim import SophiaG, sophia_refresh
        >>> model = torch.nn.Linear(4, 3)
        >>> opt = SophiaG(model.parameters(), bs=8)
        >>> x = torch.randn(2, 4, 4)                 # (B=2, T=4, features)
        >>> _ = sophia_refresh(opt, logits=model(x))  # 8 label positions = bs
        >>> sorted(opt.state[model.weight])
        ['exp_avg', 'hessian', 'step']
    """
    if not isinstance(optimizer, _Sophia):
        raise TypeError(
            f"sophia_refresh expects a SophiaG or SophiaH optimizer, got {type(optimizer).__name__}"
        )
    if (logits is None) == (loss is None):
        raise ValueError("sophia_refresh: pass exactly one of logits= (GNB) or loss= (Hutchinson)")
    if max_grad_norm is not None:
        check.positive("max_grad_norm", max_grad_norm)
    params = optimizer._all_params()
    name = type(optimizer).__name__
    if logits is not None:
        grads, positions, sampled_loss = gnb_gradient(logits, params, generator=generator)
        if max_grad_norm is not None:
            _clip_total_norm(grads, float(max_grad_norm))
        if isinstance(optimizer, SophiaG):
            mismatched = sorted(
                {float(g["bs"]) for g in optimizer.param_groups if float(g["bs"]) != positions}
            )
            if mismatched:
                warnings.warn(
                    f"sophia_refresh: the GNB loss averages {positions} label positions but the "
                    f"optimizer's bs is {mismatched}; bs should equal the number of positions "
                    "(rho * bs * h is then the paper's gamma * h_GNB)",
                    UserWarning,
                    stacklevel=2,
                )
            optimizer.update_hessian(grads)
        else:
            optimizer.update_hessian([None if g is None else g * g * positions for g in grads])
        return sampled_loss
    loss = cast(torch.Tensor, loss)  # exactly one of logits / loss is set (checked above)
    if isinstance(optimizer, SophiaG):
        raise ValueError(
            f"sophia_refresh: {name} uses the Gauss–Newton–Bartlett estimator; pass logits= "
            "(use SophiaH for the Hutchinson estimator on a loss)"
        )
    if max_grad_norm is not None:
        raise ValueError("sophia_refresh: max_grad_norm applies to the GNB estimator only")
    estimates = hutchinson_diagonal(
        loss, params, n_samples=n_samples, distribution=distribution, generator=generator
    )
    optimizer.update_hessian(estimates)
    return loss.detach()


# ---------------------------------------------------------------------------- registry
def _probe_seed(optimizer: torch.optim.Optimizer, shape: torch.Size) -> int:
    steps = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
    return (
        7919 * (max(steps) if steps else 0)
        + 104729 * len(shape)
        + sum((i + 1) * d for i, d in enumerate(shape))
    )


def _conformance_refresh_g(
    optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]
) -> None:
    """Conformance hook for SophiaG: the toy problem is a regression, so ĝ is the data-loss
    gradient (an empirical-Fisher stand-in for GNB); it exercises the same curvature path."""
    sophia = cast(SophiaG, optimizer)
    params = sophia._all_params()
    wanted = [p for p in params if p.requires_grad]
    with torch.enable_grad():
        found = torch.autograd.grad(loss_fn(), wanted, allow_unused=True)
    by_id = {id(p): g for p, g in zip(wanted, found, strict=True)}
    sophia.update_hessian([by_id.get(id(p)) for p in params])


def _conformance_refresh_h(
    optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]
) -> None:
    """Conformance hook for SophiaH: a block-wise Hutchinson estimate ``u_i ⊙ (H_ii u_i)`` per
    param tensor (unbiased for the diagonal like the full-vector estimate). Probes are seeded
    from the step count and the param's shape, and the block form does not depend on which
    other params the optimizer holds, so twin optimizers (checkpoint, deepcopy, the per-group
    split) draw identical estimates."""
    sophia = cast(SophiaH, optimizer)
    params = sophia._all_params()
    estimates: list[torch.Tensor | None] = []
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        for param, grad in zip(params, grads, strict=True):
            seed = _probe_seed(sophia, param.shape)
            probe = torch.randn(
                param.shape, generator=torch.Generator().manual_seed(seed), dtype=param.dtype
            )
            if not grad.requires_grad:  # constant gradient: zero Hessian block
                estimates.append(torch.zeros_like(param))
                continue
            (block,) = torch.autograd.grad(
                grad, param, grad_outputs=probe, retain_graph=True, allow_unused=True
            )
            estimates.append(torch.zeros_like(param) if block is None else probe * block)
    sophia.update_hessian(estimates)


def registry_specs() -> list[Any]:
    """The registry entries of :class:`SophiaG` and :class:`SophiaH`."""
    from gradkit._specs import ErrorInput, OptimizerSpec

    paper = (
        "Liu et al., Sophia: A Scalable Stochastic Second-order Optimizer for Language Model "
        "Pre-training, ICLR 2024 (arXiv:2305.14342)"
    )
    common_errors = [
        ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({"lr": "0.1"}, TypeError, r"Invalid lr: '0\.1'"),
        ErrorInput({"betas": (1.0, 0.99)}, ValueError, r"Invalid betas\[0\]: 1\.0"),
        ErrorInput({"betas": (0.9, -0.1)}, ValueError, r"Invalid betas\[1\]: -0\.1"),
        ErrorInput({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1"),
    ]
    return [
        OptimizerSpec(
            name="sophiag",
            cls=SophiaG,
            paper=paper,
            summary="clipped momentum / (rho * bs * EMA of GNB curvature); official SophiaG",
            configs=[
                {},
                {"bs": 8, "rho": 0.05, "weight_decay": 0.0},
                {"betas": (0.9, 0.95), "weight_decay": 0.2, "bs": 64, "rho": 0.02},
            ],
            error_inputs=[
                *common_errors,
                ErrorInput({"rho": -0.04}, ValueError, r"Invalid rho: -0\.04 \(must be >= 0\)"),
                ErrorInput({"bs": 0}, ValueError, r"Invalid bs: 0 \(must be > 0\)"),
                ErrorInput({"bs": "5120"}, TypeError, r"Invalid bs: '5120'"),
            ],
            hyperparams=("lr", "betas", "rho", "weight_decay", "bs"),
            hessian_refresh=_conformance_refresh_g,
            lr=0.01,
        ),
        OptimizerSpec(
            name="sophiah",
            cls=SophiaH,
            paper=paper,
            summary="clip(momentum / max(gamma * h, eps), 1) with Hutchinson curvature",
            configs=[
                {},
                {"gamma": 0.05, "weight_decay": 0.1, "betas": (0.9, 0.95)},
            ],
            error_inputs=[
                *common_errors,
                ErrorInput({"gamma": -1.0}, ValueError, r"Invalid gamma: -1\.0 \(must be >= 0\)"),
                ErrorInput({"eps": 0.0}, ValueError, r"Invalid eps: 0\.0 \(must be > 0\)"),
            ],
            hyperparams=("lr", "betas", "gamma", "eps", "weight_decay"),
            hessian_refresh=_conformance_refresh_h,
            lr=0.01,
        ),
    ]
