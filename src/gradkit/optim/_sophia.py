r"""Sophia: clipped diagonal-Hessian preconditioning (SophiaG and SophiaH).

Liu, Li, Hall, Liang, Ma. *Sophia: A Scalable Stochastic Second-order Optimizer for Language
Model Pre-training.* ICLR 2024. arXiv:2305.14342. Each class states its own update rule; this
page holds what both share: how ``bs`` is passed and the training recipe.

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from gradkit import _validation as check
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError, ParamsT, hyperparams
from gradkit.optim._compile import Kernel, KernelArgs, Scalars
from gradkit.transforms._hessian import hutchinson_from_grads

__all__ = ["SophiaG", "SophiaH"]

#: The official code's constant added to ``rho * bs * h``.
SOPHIAG_EPS = 1e-15


def _sophia_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, hessian: Tensor, s: Scalars
) -> None:
    """One tensor's Sophia update, in place (``guard``: SophiaH's ``max(γh, ε)`` form, else the
    official SophiaG form with ``scale = ρ·bs``). Scalars are floats or 0-d tensors."""
    lr, beta1, scale, eps = s["lr"], s["beta1"], s["scale"], s["eps"]
    if s["decay"]:
        param.mul_(1 - lr * s["weight_decay"])
    if isinstance(beta1, float):
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  # the official op order
    else:
        exp_avg.mul_(beta1).add_(grad * (1 - beta1))
    if s["guard"]:
        ratio = (exp_avg / (hessian * scale).clamp(min=eps)).clamp(-1.0, 1.0)
        param.sub_(ratio * lr)
    else:
        ratio = (exp_avg.abs() / (hessian * scale + eps)).clamp(max=1.0)
        param.sub_(exp_avg.sign() * ratio * lr)


def _sophia_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    p, g, m, h = lists
    lr, eps = s["lr"], s["eps"]
    if s["decay"]:
        torch._foreach_mul_(p, 1 - lr * s["weight_decay"])
    torch._foreach_mul_(m, s["beta1"])
    torch._foreach_add_(m, g, alpha=1 - s["beta1"])
    denom = torch._foreach_mul(h, s["scale"])
    if s["guard"]:
        torch._foreach_clamp_min_(denom, eps)
        ratio = torch._foreach_div(m, denom)
        torch._foreach_clamp_min_(ratio, -1.0)
        torch._foreach_clamp_max_(ratio, 1.0)
    else:
        torch._foreach_add_(denom, eps)
        ratio = torch._foreach_abs(m)
        torch._foreach_div_(ratio, denom)
        torch._foreach_clamp_max_(ratio, 1.0)
        torch._foreach_mul_(ratio, torch._foreach_sign(m))
    torch._foreach_mul_(ratio, lr)
    torch._foreach_sub_(p, ratio)


SOPHIA_KERNEL = Kernel("Sophia", _sophia_kernel, foreach=_sophia_foreach)


def _sophia_args(group: Mapping[str, Any], *, scale: float, eps: float, guard: bool) -> KernelArgs:
    return KernelArgs(
        hyper={
            "lr": group["lr"],
            "beta1": float(group["betas"][0]),
            "scale": scale,
            "eps": eps,
            "weight_decay": float(group["weight_decay"]),
        },
        static={"decay": group["weight_decay"] != 0, "guard": guard},
    )


# ---------------------------------------------------------------------------- the shells
class _Sophia(GradkitOptimizer):
    """Shared shell: state ``exp_avg`` and ``hessian``, and the curvature EMA."""

    paper = (
        "Liu et al., Sophia: A Scalable Stochastic Second-order Optimizer for Language Model "
        "Pre-training, ICLR 2024 (arXiv:2305.14342)"
    )
    _kernel = SOPHIA_KERNEL
    _state_names = ("exp_avg", "hessian")
    #: The method is only itself with a curvature refresh every few steps (without one it runs
    #: as clipped sign-momentum); ``gradkit bench`` refuses to run it where none is supplied.
    needs_curvature_refresh: ClassVar[bool] = True
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

    Paper: Liu, Li, Hall, Liang, Ma. *Sophia: A Scalable Stochastic Second-order Optimizer for
    Language Model Pre-training.* ICLR 2024, arXiv:2305.14342.

    Reference implementation: the official code, Liuhong99/Sophia @a7e1572 (``sophia.py``,
    ``train_sophiag.py``); its packaged fork ``sophia-opt==0.2.2`` is the test oracle (parity in
    float64 over 60 steps with curvature updates in between). Constructor keyword names match
    ``sophia_opt.SophiaG`` (plus ``bs``).

    Per element, with state :math:`m = h = 0` initially and no bias correction:

    .. math::

        \theta &\leftarrow \theta\,(1 - \eta\lambda) \qquad\text{(decoupled weight decay)}\\
        m &\leftarrow \beta_1 m + (1-\beta_1)\, g\\
        \theta &\leftarrow \theta - \eta\,\operatorname{sign}(m)\,
            \min\!\Big(\frac{|m|}{\rho\cdot bs\cdot h + 10^{-15}},\ 1\Big)

    and, every :math:`k` steps (:meth:`update_hessian` or :func:`sophia_refresh`), the curvature
    EMA :math:`h \leftarrow \beta_2 h + (1-\beta_2)\,\hat g\odot\hat g`, with :math:`\hat g`
    the Gauss–Newton–Bartlett sampled-label gradient of the *mean* loss over :math:`bs` label
    positions; ``rho * bs * h`` is then the paper's :math:`\gamma\,\hat h_{GNB}`
    (:math:`\gamma = \rho`, :math:`\hat h_{GNB} = bs\cdot\hat g\odot\hat g`). Until the first
    curvature update (and wherever :math:`h = 0`) the step is the sign step
    :math:`-\eta\operatorname{sign}(m) - \eta\lambda\theta`; every coordinate obeys
    :math:`|\Delta\theta_i + \eta\lambda\theta_i| \le \eta`.

    Deviations from the official code (none changes a value): ``bs`` is a hyper-parameter (see
    the module docstring; ``step(bs=...)`` still works), ``update_hessian`` also accepts the
    estimates as an argument, ``step`` is an ``int64`` tensor, a ``foreach`` and a compiled
    path exist, non-finite gradients or curvature estimates follow the ``nonfinite`` policy, and
    ``capturable`` is not offered.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η, the largest per-coordinate step (default 1e-4). May be a 0-d tensor.
        betas: (β1, β2): momentum and curvature-EMA coefficients (default (0.965, 0.99)).
        rho: ρ, the paper's γ (default 0.04).
        weight_decay: decoupled weight decay λ, θ ← θ(1 − ηλ) (default 0.1).
        bs: the number of loss terms averaged in the Hessian-estimation loss (default 5120, the
            official ``step(bs=5120)`` default).
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.


    Example:
        >>> import torch
        >>> from gradkit.optim import SophiaG
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = SophiaG([w], lr=0.1, weight_decay=0.0, bs=1)
        >>> w.grad = torch.tensor([0.5, -0.5])
        >>> opt.update_hessian()  # h = (1 - 0.99) * g**2, read from p.grad as in the paper code
        >>> opt.step()  # |m| = 0.0175 > rho * bs * h = 1e-4: ratio clipped to 1
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    _square_estimate = True
    _nonnegative_state = frozenset({"hessian"})  # an EMA of squared sampled gradients
    _validators = {"rho": check.nonnegative, "bs": check.positive}

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04, weight_decay: float = 0.1,
        *, bs: float = 5120, maximize: bool = False, foreach: bool | None = None,
        fused: bool | None = None, nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        self._bs_override: float | None = None
        super().__init__(params, hyperparams(locals()))

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

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        bs = group["bs"] if self._bs_override is None else self._bs_override
        return _sophia_args(
            group, scale=float(group["rho"]) * float(bs), eps=SOPHIAG_EPS, guard=False
        )


class SophiaH(_Sophia):
    r"""SophiaH (Liu et al., ICLR 2024): Hutchinson curvature, the paper's guarded clip.

    Paper: Liu et al., *Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
    Pre-training.* ICLR 2024, arXiv:2305.14342 (Algorithm 3, the Hutchinson estimator).

    Reference implementation: the official repository has no SophiaH; the community
    ``pytorch_optimizer.SophiaH`` (4.1.0) is the test oracle, re-expressed in the paper's
    clip-at-1 form: its ``clamp(m / max(h, eps_p), -p, p)`` with step ``lr_p`` equals this class
    with ``lr = lr_p·p``, ``gamma = p``, ``eps = p·eps_p`` and ``weight_decay = wd_p / p``. Its
    defaults (lr 6e-2, p 0.01, betas (0.96, 0.99)) map to lr 6e-4, gamma 0.01 here; ``eps`` is
    the floor of :math:`\gamma h` (1e-12 here, i.e. ``eps_p`` 1e-10).

    Per element, with :math:`m = h = 0` initially and no bias correction:

    .. math::

        \theta &\leftarrow \theta\,(1 - \eta\lambda), \qquad
            m \leftarrow \beta_1 m + (1-\beta_1)\, g\\
        \theta &\leftarrow \theta - \eta\,
            \operatorname{clip}\!\Big(\frac{m}{\max(\gamma h,\ \epsilon)},\ [-1, 1]\Big)

    and, every :math:`k` steps (:meth:`update_hessian` or :func:`sophia_refresh`),
    :math:`h \leftarrow \beta_2 h + (1-\beta_2)\hat h` with :math:`\hat h` a diagonal in the
    paper's units, normally the Hutchinson estimate :math:`u\odot Hu`.

    Deviation from the official ``SophiaG`` form: the Hutchinson estimate can be **negative**,
    and :math:`\operatorname{sign}(m)\min(|m|/(\rho bs h), 1)` would then step *uphill*, so
    SophiaH uses the paper's guard :math:`\max(\gamma h, \epsilon)`: a coordinate with
    :math:`h \le \epsilon/\gamma` takes the sign step :math:`-\eta\operatorname{sign}(m)` (for
    :math:`h \ge 0` both forms agree). Under ``maximize=True`` the Hutchinson estimate is negated,
    since the minimised objective is then :math:`-L`.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η, the largest per-coordinate step (default 6e-4). May be a 0-d tensor.
        betas: (β1, β2) (default (0.96, 0.99)).
        gamma: γ, the curvature scale (default 0.01).
        eps: ε, the floor of γh (default 1e-12; must be > 0).
        weight_decay: decoupled weight decay λ (default 0).
        maximize, foreach, fused, nonfinite: as for every gradkit optimizer (see
            :class:`~gradkit.optim.GradkitOptimizer`); ``maximize`` also negates the curvature
            estimate.

    Example:
        >>> import torch
        >>> from gradkit.optim import SophiaH, sophia_refresh
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = SophiaH([w], lr=0.1, gamma=1.0)
        >>> _ = sophia_refresh(opt, loss=(w**2).sum())  # Hutchinson u * (H u), H = 2 I
        >>> w.grad = 2 * w.detach()
        >>> opt.step()  # each coordinate moves towards 0 by at most lr
        >>> bool((w.detach().abs() < torch.tensor([1.0, 2.0])).all())
        True
    """

    _validators = {"gamma": check.nonnegative, "eps": check.positive}

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 6e-4,
        betas: tuple[float, float] = (0.96, 0.99), gamma: float = 0.01, eps: float = 1e-12,
        weight_decay: float = 0.0,
        *, maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))

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

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        return _sophia_args(group, scale=float(group["gamma"]), eps=float(group["eps"]), guard=True)
