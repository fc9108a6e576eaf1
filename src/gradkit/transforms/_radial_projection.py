r"""Radial projection of an update for scale-invariant weights (AdamP / SGDP).

:func:`radial_projection` states the math. Three evaluation strategies give the same decisions
(the tests check the first two against the reference bit for bit, the third up to rounding):

* **single pass** (inside ``torch.compile``): the four per-row sums both views need, computed
  in one read of the inputs, then the projection (:func:`_single_pass`).
* **branch-free** (eagerly on accelerators): both views are tested, the
  view and the "fired" flag are selected with ``torch.where`` on 0-d booleans and small
  ``(rows, 1)`` tensors, and the projection is arithmetic that reduces to the identity when
  nothing fires. No host synchronisation.
* **branching** (eager on CPU, where reading a flag is free): the reference's control flow,
  testing the layer view only when the channel view did not fire and skipping the projection
  when neither fires; about 1.5× cheaper than computing everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["is_scale_invariant", "radial_projection"]

Scalar = float | torch.Tensor


def _rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    return tensor.reshape(rows, -1)


def _view_test(
    param: torch.Tensor, grad: torch.Tensor, rows: int, delta: Scalar, eps: Scalar
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine test in the view with ``rows`` rows: ``(fires, row_norms)``, a 0-d bool and
    the ``(rows, 1)`` norms of ``param``'s rows (reused by the projection).

    The cosine is ``F.cosine_similarity(grad, param, dim=1, eps=eps).abs()`` with the same op
    order (torch 2.x divides each row by its norm clamped below at ``eps``, then sums the
    products); it is written out so that ``eps`` may be a 0-d tensor in a compiled graph and so
    that the param norms (``Tensor.norm(dim=1)`` in the reference, the same kernel) are shared.
    """
    param_rows, grad_rows = _rows(param, rows), _rows(grad, rows)
    param_norm = torch.linalg.vector_norm(param_rows, 2, dim=1, keepdim=True)
    grad_norm = torch.linalg.vector_norm(grad_rows, 2, dim=1, keepdim=True)
    cosine = (
        (grad_rows / grad_norm.clamp_min(eps)) * (param_rows / param_norm.clamp_min(eps))
    ).sum(1)
    threshold = delta / math.sqrt(param_rows.shape[1])
    if isinstance(threshold, torch.Tensor):  # compare in the cosine's dtype, like a Python float
        threshold = threshold.to(cosine.dtype)
    return cosine.abs().max() < threshold, param_norm


def _projectable(param: torch.Tensor) -> bool:
    return param.ndim > 1 and param.numel() > 0


def is_scale_invariant(
    param: torch.Tensor, grad: torch.Tensor, *, delta: Scalar, eps: Scalar
) -> torch.Tensor:
    r"""Whether AdamP's scale-invariance test fires on ``(param, grad)`` in either view.

    The test of :func:`radial_projection` (Heo et al., *AdamP*, ICLR 2021, arXiv:2006.08217;
    reference: ``clovaai/AdamP``'s ``_cosine_similarity`` and ``_projection``): in the channel
    view (one row per output channel, :math:`n` = numel / rows) or the layer view (one row),
    :math:`\max_i |\cos(G_i, W_i)| < \delta/\sqrt{n}`, the cosine with norms clamped below at
    :math:`\epsilon`. Deviation: none in value; ``reshape`` is used, so non-contiguous weights
    work where the reference raises.

    Args:
        param: the weight :math:`W`.
        grad: its raw gradient :math:`G`.
        delta: threshold coefficient δ.
        eps: ε of the cosine similarity.

    Returns:
        A 0-d bool tensor (``False`` for tensors with ``ndim <= 1`` or no elements). Useful for
        diagnostics such as the fraction of steps on which a layer is projected.

    Example:
        >>> import torch
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> bool(is_scale_invariant(w, torch.tensor([[0.0, 1.0], [3.0, 0.0]]), delta=0.1, eps=1e-8))
        True
        >>> bool(is_scale_invariant(w, w, delta=0.1, eps=1e-8))
        False
    """
    if not _projectable(param):
        return torch.zeros((), dtype=torch.bool, device=param.device)
    fired, _ = _view_test(param, grad, param.shape[0], delta, eps)
    if param.shape[0] != 1:
        fired = fired | _view_test(param, grad, 1, delta, eps)[0]
    return fired


def radial_projection(
    param: torch.Tensor,
    grad: torch.Tensor,
    update: torch.Tensor,
    *,
    delta: Scalar,
    wd_ratio: Scalar,
    eps: Scalar,
) -> tuple[torch.Tensor, Scalar]:
    r"""Remove the radial component of ``update`` when ``param`` looks scale invariant.

    Paper: Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. *AdamP: Slowing Down the Slowdown for Momentum
    Optimizers on Scale-invariant Weights.* ICLR 2021, arXiv:2006.08217.

    Reference implementation: ``clovaai/AdamP`` (``adamp==0.3.0``), methods ``_cosine_similarity``
    and ``_projection``; the tests compare this function with them bit for bit.

    For a weight :math:`W` (``ndim >= 2``) with raw gradient :math:`G` and update :math:`U` (the
    Adam direction or the SGD momentum), two views are tried in order, and the first that fires
    wins:

    * **channel view**: reshape to :math:`(r, n) = (W\text{.shape}[0], \text{numel}/r)`, one row per
      output channel / neuron;
    * **layer view**: reshape to :math:`(1, \text{numel})`.

    In a view with rows :math:`W_i, G_i, U_i \in \mathbb{R}^n` the **scale-invariance test** is

    .. math::

        c_i = \left| \left\langle \frac{G_i}{\max(\lVert G_i\rVert, \epsilon)},
              \frac{W_i}{\max(\lVert W_i\rVert, \epsilon)} \right\rangle \right|, \qquad
        \text{fires} \iff \max_i c_i < \frac{\delta}{\sqrt{n}}

    (:math:`c_i` is ``F.cosine_similarity(G, W, dim=1, eps=eps).abs()``, with torch's
    normalise-first op order). When it fires the radial component of every row is removed,

    .. math::

        \hat W_i = \frac{W_i}{\lVert W_i\rVert + \epsilon}, \qquad
        U_i \leftarrow U_i - \hat W_i \langle \hat W_i, U_i\rangle,

    and the weight-decay ratio ``wd_ratio`` is returned; otherwise :math:`U` is returned unchanged
    with ratio 1. The test uses the **raw gradient**, the projection acts on the **update**. Tensors
    with ``ndim <= 1`` or no elements are never projected (ratio 1).

    Implementation notes (deviations from the reference, none of which changes a value):

    * ``reshape`` instead of ``view``, so non-contiguous weights work (the reference raises);
    * zero-size weights are passed through (the reference raises on ``view(0, -1)``);
    * the inputs are not modified (the reference subtracts in place from ``update``).

    The function is pure: no input is modified.

    Args:
        param: the weight :math:`W`.
        grad: its raw gradient :math:`G` (used only for the cosine test; its sign is irrelevant).
        update: the update :math:`U` to project (same shape as ``param``).
        delta: threshold coefficient δ of the test ``max_i c_i < δ/√n``.
        wd_ratio: the weight-decay ratio returned when the test fires.
        eps: ε of the cosine similarity and of the row normalisation.

    Returns:
        ``(projected_update, ratio)`` with ``ratio`` equal to ``wd_ratio`` if a view fired, else
        1. When nothing fires (and always for tensors with ``ndim <= 1`` or no elements) the
        update may be returned as is. Eagerly on CPU the ratio is ``wd_ratio`` itself or the
        float ``1.0``; in the branch-free mode (compiled, accelerators) it is a 0-d tensor
        (float64, or ``wd_ratio``'s dtype when that is a tensor).

    Example:
        >>> import torch
        >>> w = torch.tensor([[3.0, 4.0]])
        >>> u, ratio = radial_projection(w, torch.tensor([[-4.0, 3.0]]), torch.tensor([[1.0, 1.0]]),
        ...                              delta=0.1, wd_ratio=0.1, eps=0.0)
        >>> u, float(ratio)
        (tensor([[ 0.1600, -0.1200]]), 0.1)
    """
    if not _projectable(param):
        return update, 1.0
    if torch.compiler.is_compiling():
        return _single_pass(param, grad, update, delta=delta, wd_ratio=wd_ratio, eps=eps)
    if param.device.type == "cpu":
        return _branching(param, grad, update, delta=delta, wd_ratio=wd_ratio, eps=eps)
    return _branch_free(param, grad, update, delta=delta, wd_ratio=wd_ratio, eps=eps)


def _remove_radial(
    param: torch.Tensor,
    update: torch.Tensor,
    rows: int,
    divisor: torch.Tensor,
    coefficient: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``U - Ŵ⟨Ŵ, U⟩`` per row of the view with ``rows`` rows, ``Ŵ = W/divisor``.

    ``coefficient(products)`` maps ``Ŵ ⊙ U`` (as ``(rows, n)``) to the ``(rows, 1)`` radial
    coefficients."""
    unit = _rows(param, rows) / divisor
    update_rows = _rows(update, rows)
    radial = coefficient(unit * update_rows)
    return (update_rows - unit * radial).reshape(update.shape)


def _ratio(fired: Tensor, wd_ratio: Scalar) -> Tensor:
    """``wd_ratio`` where ``fired``, else 1, as a 0-d tensor (float64, or ``wd_ratio``'s dtype);
    exact, since ``fired`` is 0 or 1."""
    dtype = wd_ratio.dtype if isinstance(wd_ratio, torch.Tensor) else torch.float64
    on = fired.to(dtype)
    return on * wd_ratio + (1.0 - on)


def _row_sums(products: torch.Tensor) -> torch.Tensor:
    return products.sum(dim=1, keepdim=True)


class _Screen:
    """Per-row sums ``‖W_i‖², ‖G_i‖², ⟨G_i, W_i⟩`` (no full-size temporaries), from which the
    cosine of either view follows up to rounding."""

    def __init__(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        rows = param.shape[0]
        w, g = param.reshape(rows, -1), grad.reshape(rows, -1)
        self.ww = torch.linalg.vector_norm(w, 2, dim=1).square()
        self.gg = torch.linalg.vector_norm(g, 2, dim=1).square()
        self.gw = torch.einsum("ij,ij->i", g, w)
        self.numel = param.numel()
        self.tiny = torch.finfo(param.dtype).eps

    def surely_not_fired(self, rows: int, delta: Scalar, eps: Scalar) -> bool:
        """True when the largest row cosine exceeds the threshold by more than a rounding
        margin, so the exact test cannot fire. The margin, ``max(0.1·threshold,
        64·log2(n+1)·ε_dtype)``, is far above the error of two cascade-summed reductions of
        length ``n``; near the threshold the exact test always runs."""
        n = self.numel // rows
        if rows == 1:
            ww, gg, gw = self.ww.sum(), self.gg.sum(), self.gw.sum()
        else:
            ww, gg, gw = self.ww, self.gg, self.gw
        cosine = gw / (gg.sqrt().clamp_min(eps) * ww.sqrt().clamp_min(eps))
        threshold = float(delta) / math.sqrt(n)
        margin = max(0.1 * threshold, 64 * math.log2(n + 1) * self.tiny)
        return bool(cosine.abs().max() > threshold + margin)


def _branching(param: Tensor, grad: Tensor, update: Tensor, **h: Scalar) -> tuple[Tensor, Scalar]:
    """The reference's control flow (reads the 0-d test results on the host).

    A view whose cheap cosine bound (:func:`_surely_not_fired`) rules firing out is skipped
    without the exact, allocation-heavy test; every decision that is taken is the exact one.
    """
    delta, eps, rows = h["delta"], h["eps"], param.shape[0]
    screen = _Screen(param, grad)
    for view_rows in (rows, 1) if rows > 1 else (1,):
        if screen.surely_not_fired(view_rows, delta, eps):
            continue
        fired, norm = _view_test(param, grad, view_rows, delta, eps)
        if bool(fired):
            return _remove_radial(param, update, view_rows, norm + eps, _row_sums), h["wd_ratio"]
    return update, 1.0


def _branch_free(
    param: Tensor, grad: Tensor, update: Tensor, **h: Scalar
) -> tuple[Tensor, torch.Tensor]:
    """Both views, selected with ``torch.where`` on 0-d booleans (no host synchronisation)."""
    delta, eps, rows = h["delta"], h["eps"], param.shape[0]
    fired, norm = _view_test(param, grad, rows, delta, eps)
    if rows > 1:  # (with one row the channel view is the layer view)
        channel = fired
        layer, layer_norm = _view_test(param, grad, 1, delta, eps)
        fired = channel | layer
        norm = torch.where(channel, norm, layer_norm)
    # Only small (rows, 1) tensors are selected. When nothing fires the divisor is 1 and the
    # radial coefficient 0, so the update comes back unchanged (and finite even where a zero row
    # with eps = 0 would give 0/0).
    divisor = torch.where(fired, norm + eps, torch.ones_like(norm))

    def coefficient(products: torch.Tensor) -> torch.Tensor:
        radial = _row_sums(products)
        if rows > 1:
            radial = torch.where(channel, radial, _row_sums(products.reshape(1, -1)))
        return torch.where(fired, radial, torch.zeros_like(radial))

    return _remove_radial(param, update, rows, divisor, coefficient), _ratio(fired, h["wd_ratio"])


def _single_pass(
    param: Tensor, grad: Tensor, update: Tensor, **h: Scalar
) -> tuple[Tensor, torch.Tensor]:
    """Branch-free, from per-row sums only (used inside ``torch.compile``).

    Everything both views need is four row reductions, ``ΣW², ΣG², ΣGW, ΣWU``, that Inductor
    computes in one pass together with the update itself; the layer view sums them over rows.
    Then ``cos = ΣGW / (max(‖G‖, ε)·max(‖W‖, ε))`` (equal to the normalise-first cosine) and
    ``U − W·ΣWU/(‖W‖+ε)²`` (equal to ``U − Ŵ⟨Ŵ, U⟩``). The values agree with the other
    strategies up to rounding; the fused optimizers' tests compare them with the for-loop.
    """
    delta, eps, rows = h["delta"], h["eps"], param.shape[0]
    w, g, u = param.reshape(rows, -1), grad.reshape(rows, -1), update.reshape(rows, -1)
    ww, gg = (w * w).sum(1, keepdim=True), (g * g).sum(1, keepdim=True)
    gw, wu = (g * w).sum(1, keepdim=True), (w * u).sum(1, keepdim=True)
    w_norm, g_norm = ww.sqrt(), gg.sqrt()
    cosine = gw / (g_norm.clamp_min(eps) * w_norm.clamp_min(eps))
    channel = cosine.abs().amax() < delta / math.sqrt(w.shape[1])
    w_norm_all = ww.sum().sqrt()
    cosine_all = gw.sum() / (gg.sum().sqrt().clamp_min(eps) * w_norm_all.clamp_min(eps))
    layer = cosine_all.abs() < delta / math.sqrt(param.numel())
    radial_channel = wu / (w_norm + eps) ** 2
    radial_layer = wu.sum() / (w_norm_all + eps) ** 2
    zero = torch.zeros_like(radial_channel)
    radial = torch.where(channel, radial_channel, torch.where(layer, radial_layer, zero))
    return (u - w * radial).reshape(param.shape), _ratio(channel | layer, h["wd_ratio"])
