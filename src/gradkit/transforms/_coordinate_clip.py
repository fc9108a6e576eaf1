r"""Coordinate-wise clipping of an update direction, for any optimizer.

Pan & Li. *Toward Understanding Why Adam Converges Faster Than SGD for Transformers.* arXiv
2306.00204, 2023. No official code was found (spec §8); the definition follows the paper's
summary:

.. math::

    \operatorname{clip}_\tau(u)_i = \operatorname{sign}(u_i)\,\min(|u_i|, \tau),
    \qquad \theta \leftarrow \theta - \eta\,\operatorname{clip}_\tau(u),

where :math:`u` is the optimizer's update direction **after preconditioning**: the momentum
buffer (or the gradient) for SGD, :math:`\hat m/(\sqrt{\hat v}+\epsilon)` for Adam. The threshold
is either

* a value, ``threshold=τ``, or
* a fraction, ``fraction=f``: the :math:`k = \lfloor f n\rfloor` coordinates of largest
  :math:`|u_i|` are clipped to the magnitude of the largest remaining one,
  :math:`\tau = |u|_{(n-k)}` (the :math:`(n-k)`-th smallest; at :math:`f = 1`, the smallest,
  which turns the step into a scaled sign step). With distinct magnitudes exactly :math:`k`
  coordinates change; coordinates tied at :math:`\tau` are left as they are (they already have
  magnitude :math:`\tau`), and all coordinates tied above :math:`\tau` are clipped.
  :math:`f n` is evaluated exactly for decimal fractions (``0.29 * 100`` counts 29, not 28).

``scope`` says over which coordinates the fraction is counted: ``"tensor"`` (default: one
``kthvalue`` per parameter tensor, cheap) or ``"global"`` (over all parameters together: one
``kthvalue`` over a concatenated copy of every magnitude, a full extra copy of the update in
memory). The paper does not say which it used (spec: GAP). ``threshold`` ignores ``scope``.

Two pieces:

* :func:`coordinate_clip`: the function on a list of tensors (out of place).
* :class:`CoordinateClip`: a wrapper around *any* ``torch.optim.Optimizer`` (``torch.optim.Adam``,
  ``SGD``, gradkit's optimizers), with two modes:

  - ``mode="update"`` (default, the paper's definition): the base optimizer takes its step
    (its state evolves exactly as without clipping), the displacement
    :math:`\Delta = \theta_{new} - \theta_{old} = -\eta u` is read back, and every coordinate
    with :math:`|\Delta_i| > \eta\tau` is reset to :math:`\theta_{old} + \operatorname{sign}
    (\Delta_i)\,\eta\tau`; unclipped coordinates keep the base optimizer's value bit for bit.
    ``η`` is the group's current ``lr`` (so LR schedulers scale the threshold consistently; a
    group with ``lr = 0`` does not move). Exactness: :math:`\Delta` carries one rounding of
    the parameter update, so the result equals :math:`\theta - \eta\operatorname{clip}_\tau(u)`
    to floating-point rounding, not bit for bit; per-tensor fractions are taken on
    :math:`|\Delta|` directly (same order as :math:`|u|` up to that rounding).
  - ``mode="gradient"``: the raw gradients are clipped (on copies) before the base step,
    and ``p.grad`` is restored afterwards.

  The displacement includes everything the base optimizer does in its step: with decoupled
  weight decay (``AdamW``) the clipped direction is :math:`\hat m/(\sqrt{\hat v}+\epsilon) +
  \lambda\theta`. Use ``weight_decay=0`` in the base to clip the adaptive direction alone. The
  wrapper shares ``param_groups`` and ``state`` with the base, so LR schedulers, ``state_dict``
  and ``zero_grad`` behave as for the base; the clip settings themselves are constructor
  arguments, not state. Optimizers whose ``step`` needs a closure (L-BFGS) are not supported.
  Cost per step in ``mode="update"``: a copy of the params before the base step and the
  displacement (two temporaries of the params' size), plus one ``kthvalue`` per tensor (or one
  over all magnitudes for ``scope="global"``) in fraction mode.

Example:
    >>> import torch
    >>> from gradkit.transforms import CoordinateClip, coordinate_clip
    >>> coordinate_clip([torch.tensor([3.0, -0.5, -2.0, 1.0])], fraction=0.5)
    [tensor([ 1.0000, -0.5000, -1.0000,  1.0000])]
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = CoordinateClip(torch.optim.SGD([w], lr=0.1), threshold=1.0)
    >>> w.grad = torch.tensor([5.0, 0.5])
    >>> opt.step()
    >>> w.detach()
    tensor([0.9000, 0.9500])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, cast

import torch

__all__ = ["CoordinateClip", "clip_thresholds", "coordinate_clip"]

SCOPES = ("tensor", "global")
MODES = ("update", "gradient")


def _validate(threshold: Any, fraction: Any, scope: Any) -> None:
    if (threshold is None) == (fraction is None):
        raise ValueError("pass exactly one of threshold= (a value) or fraction= (top fraction)")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise TypeError(f"Invalid threshold: {threshold!r} (expected a real number)")
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"Invalid threshold: {threshold!r} (must be finite and >= 0)")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"Invalid fraction: {fraction!r} (expected a real number)")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"Invalid fraction: {fraction!r} (must be in [0, 1])")
    if scope not in SCOPES:
        raise ValueError(f"Invalid scope: {scope!r} (must be one of {', '.join(SCOPES)})")


def _clipped_count(fraction: float, n: int) -> int:
    """⌊f·n⌋, exact for decimal fractions (``Fraction('0.29') * 100 == 29``)."""
    return math.floor(Fraction(repr(float(fraction))) * n)


def _kth_threshold(magnitudes: torch.Tensor, fraction: float) -> torch.Tensor:
    """τ for ``fraction`` over a flat tensor of magnitudes (``inf`` when nothing is clipped)."""
    n = magnitudes.numel()
    k = _clipped_count(fraction, n)
    if n == 0 or k == 0:
        return torch.tensor(math.inf, dtype=magnitudes.dtype, device=magnitudes.device)
    return torch.kthvalue(magnitudes, max(n - k, 1)).values


def clip_thresholds(
    tensors: Sequence[torch.Tensor],
    *,
    threshold: float | None = None,
    fraction: float | None = None,
    scope: str = "tensor",
    scales: Sequence[float] | None = None,
) -> list[torch.Tensor]:
    r"""The clipping threshold :math:`\tau` for each tensor (0-d tensors; ``inf`` where nothing
    is clipped).

    Math: with ``threshold=τ`` every tensor gets :math:`\tau`. With ``fraction=f`` the
    :math:`k = \lfloor f n\rfloor` coordinates of largest :math:`|u_i|` are to be clipped to
    the magnitude of the largest remaining one, :math:`\tau = |u|_{(n-k)}` (the
    :math:`(n-k)`-th smallest), counted per tensor (``scope="tensor"``, one ``kthvalue`` each)
    or over all tensors together (``scope="global"``, one ``kthvalue`` over a concatenated copy
    of every magnitude). :math:`fn` is exact for decimal fractions (``0.29 * 100`` counts 29).

    Paper: Pan & Li, *Toward Understanding Why Adam Converges Faster Than SGD for
    Transformers*, arXiv:2306.00204 (2023). Reference implementation: none was found; the
    definition follows the paper's summary. Deviations: the paper does not say whether the fraction is counted per
    tensor or globally (both are offered; per tensor is the default).

    Args:
        tensors: the update directions :math:`u`.
        threshold: the clip value τ (exactly one of ``threshold`` and ``fraction``).
        fraction: the top fraction of coordinates to clip, in [0, 1].
        scope: ``"tensor"`` (default) or ``"global"``: where the fraction is counted
            (``threshold`` ignores it).
        scales: optional positive per-tensor factors :math:`s_j` when the tensors hold
            :math:`s_j u_j` (e.g. :math:`\eta_j u_j` with per-group learning rates): a value
            threshold becomes :math:`s_j\tau`, and a global fraction is counted on
            :math:`|t_j|/s_j`. A tensor with :math:`s_j = 0` gets threshold 0.

    Returns:
        One 0-d tensor per input tensor, in its dtype and device.

    Raises:
        ValueError: both or neither of ``threshold`` and ``fraction``, a negative or
            non-finite threshold, a fraction outside [0, 1], an unknown scope, or a
            ``scales`` of the wrong length.
        TypeError: a threshold or fraction that is not a real number.

    Example:
        >>> import torch
        >>> from gradkit.transforms import clip_thresholds
        >>> u = [torch.tensor([4.0, 1.0, 2.0, 3.0]), torch.tensor([0.5, 8.0])]
        >>> clip_thresholds(u, fraction=0.5)                  # per tensor
        [tensor(2.), tensor(0.5000)]
        >>> clip_thresholds(u, fraction=0.5, scope="global")  # over all six magnitudes
        [tensor(2.), tensor(2.)]
    """
    _validate(threshold, fraction, scope)
    tensors = list(tensors)
    _check_real(tensors, "tensor")
    factors = [1.0] * len(tensors) if scales is None else [float(s) for s in scales]
    if len(factors) != len(tensors):
        raise ValueError(f"got {len(factors)} scales for {len(tensors)} tensors")

    def zero_d(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(())

    if threshold is not None:
        return [zero_d(s * threshold, t) for t, s in zip(tensors, factors, strict=True)]
    fraction = cast(float, fraction)  # exactly one of threshold / fraction is set
    if scope == "tensor":
        return [
            _kth_threshold(t.detach().abs().reshape(-1), fraction) if s > 0 else zero_d(0.0, t)
            for t, s in zip(tensors, factors, strict=True)
        ]
    live = [(t, s) for t, s in zip(tensors, factors, strict=True) if s > 0 and t.numel()]
    if not live:
        return [
            zero_d(0.0 if s == 0 else math.inf, t) for t, s in zip(tensors, factors, strict=True)
        ]
    dtype = torch.promote_types(live[0][0].dtype, torch.float32)
    for t, _ in live[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([(t.detach().abs().reshape(-1).to(dtype) / s) for t, s in live])
    tau = _kth_threshold(flat, fraction)
    return [zero_d(tau * s, t) for t, s in zip(tensors, factors, strict=True)]


def _check_real(tensors: Sequence[torch.Tensor], what: str) -> None:
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what} {index}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.is_complex():
            raise TypeError(
                f"coordinate clipping needs real tensors: {what} {index} is {tensor.dtype} "
                "(the sign of a complex number is not defined here); clip "
                "torch.view_as_real(...) instead"
            )


def coordinate_clip(
    tensors: Sequence[torch.Tensor],
    *,
    threshold: float | None = None,
    fraction: float | None = None,
    scope: str = "tensor",
) -> list[torch.Tensor]:
    r"""Coordinate-wise clipping, :math:`\operatorname{clip}_\tau(u)_i =
    \operatorname{sign}(u_i)\min(|u_i|, \tau)`, of each tensor (out of place).

    Math: :math:`\tau` comes from :func:`clip_thresholds` (a value, or the top fraction of
    coordinates per tensor or globally). With distinct magnitudes exactly
    :math:`\lfloor fn\rfloor` coordinates change; coordinates tied at :math:`\tau` are left as
    they are (they already have magnitude :math:`\tau`), and all coordinates tied above
    :math:`\tau` are clipped. At ``fraction=1`` the result is :math:`\tau\,\operatorname{sign}(u)`
    with the smallest magnitude as :math:`\tau`, a scaled sign step.

    Paper: Pan & Li, *Toward Understanding Why Adam Converges Faster Than SGD for
    Transformers*, arXiv:2306.00204 (2023). Reference implementation: none was found; the
    definition follows the paper's summary. Deviations: see :func:`clip_thresholds` (the scope).

    Args:
        tensors: the update directions :math:`u` (not modified).
        threshold: the clip value τ (exactly one of ``threshold`` and ``fraction``).
        fraction: the top fraction of coordinates to clip, in [0, 1].
        scope: ``"tensor"`` (default) or ``"global"``.

    Returns:
        New tensors, one per input.

    Raises:
        ValueError: see :func:`clip_thresholds`.
        TypeError: see :func:`clip_thresholds`.

    Example:
        >>> import torch
        >>> from gradkit.transforms import coordinate_clip
        >>> coordinate_clip([torch.tensor([3.0, -0.5, -2.0, 1.0])], fraction=0.5)
        [tensor([ 1.0000, -0.5000, -1.0000,  1.0000])]
        >>> coordinate_clip([torch.tensor([3.0, -0.5])], threshold=1.0)
        [tensor([ 1.0000, -0.5000])]
    """
    tensors = list(tensors)
    taus = clip_thresholds(tensors, threshold=threshold, fraction=fraction, scope=scope)
    return [_clip(t, tau) for t, tau in zip(tensors, taus, strict=True)]


def _clip(tensor: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    return torch.where(tensor.abs() > tau, tensor.sign() * tau, tensor)


class CoordinateClip(torch.optim.Optimizer):
    r"""Wrap any optimizer so that its update direction is clipped coordinate-wise.

    Math (``mode="update"``, the paper's definition): the step becomes
    :math:`\theta \leftarrow \theta - \eta\,\operatorname{clip}_\tau(u)`, where :math:`u` is the
    base optimizer's direction **after preconditioning** (the momentum buffer for SGD,
    :math:`\hat m/(\sqrt{\hat v}+\epsilon)` for Adam). The base optimizer takes its step (its
    state evolves exactly as without clipping), the displacement
    :math:`\Delta = \theta_{new} - \theta_{old} = -\eta u` is read back, and every coordinate
    with :math:`|\Delta_i| > \eta\tau` is reset to
    :math:`\theta_{old} + \operatorname{sign}(\Delta_i)\,\eta\tau`; unclipped coordinates keep the
    base optimizer's value bit for bit. :math:`\eta` is the group's current ``lr`` (schedulers
    scale the threshold consistently; a group with ``lr = 0`` does not move). The result equals
    :math:`\theta - \eta\operatorname{clip}_\tau(u)` to floating-point rounding (:math:`\Delta`
    carries one rounding). With ``mode="gradient"`` the raw gradients are clipped (on copies)
    before the base step, and ``p.grad`` is restored afterwards.

    The displacement includes everything the base step does: with decoupled weight decay
    (``AdamW``) the clipped direction is :math:`\hat m/(\sqrt{\hat v}+\epsilon) + \lambda\theta`;
    use ``weight_decay=0`` in the base to clip the adaptive direction alone. The wrapper shares
    ``param_groups`` and ``state`` with the base, so LR schedulers, ``state_dict`` and
    ``zero_grad`` behave as for the base; the clip settings are constructor arguments, not
    state. Cost per step (``mode="update"``): two temporaries of the params' size and one
    ``kthvalue`` per tensor (one over all magnitudes with ``scope="global"``).

    Paper: Pan & Li, *Toward Understanding Why Adam Converges Faster Than SGD for
    Transformers*, arXiv:2306.00204 (2023). Reference implementation: none was found; the
    definition follows the paper's summary. Deviations: the paper does not say whether the fraction is counted per
    tensor or globally (``scope``); ``mode="gradient"`` is an addition for comparison.
    Optimizers whose ``step`` needs a closure (L-BFGS) are not supported.

    Args:
        optimizer: the base optimizer (``torch.optim.Adam``, ``SGD``, a gradkit optimizer, ...).
        threshold: clip value τ (in units of the update direction, i.e. the step is at most
            ``lr * threshold`` per coordinate in ``mode="update"``).
        fraction: clip the top ``fraction`` of coordinates instead (exactly one of the two).
        scope: ``"tensor"`` (default) or ``"global"``, where the fraction is counted.
        mode: ``"update"`` (default; after preconditioning) or ``"gradient"`` (raw gradients).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``, or a threshold or
            fraction that is not a real number.
        ValueError: both or neither of ``threshold`` and ``fraction``, a value out of range,
            or an unknown ``scope`` or ``mode``.

    Example:
        >>> import torch
        >>> from gradkit.transforms import CoordinateClip
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
        >>> opt = CoordinateClip(torch.optim.SGD([w], lr=0.1), threshold=1.0)
        >>> w.grad = torch.tensor([5.0, 0.5])
        >>> opt.step()
        >>> w.detach()                      # the first coordinate moved lr * threshold = 0.1
        tensor([0.9000, 0.9500])
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        threshold: float | None = None,
        fraction: float | None = None,
        scope: str = "tensor",
        mode: str = "update",
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"CoordinateClip wraps a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        _validate(threshold, fraction, scope)
        if mode not in MODES:
            raise ValueError(f"Invalid mode: {mode!r} (must be one of {', '.join(MODES)})")
        # Optimizer.__init__ sets up the hook tables (with a placeholder group); the groups and
        # the state are then the base optimizer's own objects.
        super().__init__([torch.empty(0, requires_grad=True)], {})
        self.optimizer = optimizer
        self.threshold = threshold
        self.fraction = fraction
        self.scope = scope
        self.mode = mode
        self._share()

    def __getstate__(self) -> dict[str, Any]:  # keep the wrapper's attributes (deepcopy, pickle)
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _share(self) -> None:
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        self.defaults = self.optimizer.defaults

    def __repr__(self) -> str:
        limit = (
            f"threshold={self.threshold}"
            if self.threshold is not None
            else f"fraction={self.fraction}"
        )
        return (
            f"CoordinateClip({limit}, scope={self.scope!r}, mode={self.mode!r}, "
            f"optimizer={self.optimizer!r})"
        )

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (clipping adds no state)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
        self._share()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not hasattr(self, "optimizer"):  # the placeholder group of Optimizer.__init__
            super().add_param_group(param_group)
            return
        self.optimizer.add_param_group(param_group)
        self._share()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _with_grads(self) -> list[tuple[dict[str, Any], torch.Tensor]]:
        return [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluate ``closure`` (if given), then take the base optimizer's step, clipped."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = self._with_grads()
        _check_real([p for _, p in pairs], "param")  # before the base optimizer moves anything
        if not pairs:
            self.optimizer.step()
            return loss
        params = [p for _, p in pairs]
        if self.mode == "gradient":
            saved = [p.grad for p in params]
            clipped = coordinate_clip(
                [g for g in saved if g is not None],
                threshold=self.threshold, fraction=self.fraction, scope=self.scope,
            )  # fmt: skip
            for p, g in zip(params, clipped, strict=True):
                p.grad = g
            try:
                self.optimizer.step()
            finally:
                for p, original in zip(params, saved, strict=True):
                    p.grad = original
            return loss
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        deltas = [p.detach() - b for p, b in zip(params, before, strict=True)]
        lrs = [float(group["lr"]) for group, _ in pairs]
        taus = clip_thresholds(
            deltas, threshold=self.threshold, fraction=self.fraction, scope=self.scope, scales=lrs
        )
        for p, b, d, tau in zip(params, before, deltas, taus, strict=True):
            p.copy_(torch.where(d.abs() > tau, b + d.sign() * tau, p))
        return loss
