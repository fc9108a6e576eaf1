r"""Radial projection of an update for scale-invariant weights (AdamP / SGDP).

Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha. *AdamP: Slowing Down the Slowdown for Momentum
Optimizers on Scale-invariant Weights.* ICLR 2021. arXiv:2006.08217. Reference code:
``clovaai/AdamP`` (``adamp==0.3.0``), methods ``_cosine_similarity`` and ``_projection``.

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
* **branch-free**: both views are computed and the result is selected with ``torch.where`` on
  0-d boolean tensors, so there is no host synchronisation and the same function runs eagerly
  and inside ``torch.compile``. The selected values are computed with the reference's op order;
* the inputs are not modified (the reference subtracts in place from ``update``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["is_scale_invariant", "radial_projection"]

Scalar = float | torch.Tensor


def _rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    return tensor.reshape(rows, -1)


def _cosine_abs(x: torch.Tensor, y: torch.Tensor, eps: Scalar) -> torch.Tensor:
    """``F.cosine_similarity(x, y, dim=1, eps=eps).abs()`` with the same op order (torch 2.x:
    each row is divided by its norm clamped below at ``eps``, then the products are summed).
    Written out so that ``eps`` may be a 0-d tensor inside a compiled graph."""
    x_norm = torch.linalg.vector_norm(x, 2, dim=1, keepdim=True).clamp_min(eps)
    y_norm = torch.linalg.vector_norm(y, 2, dim=1, keepdim=True).clamp_min(eps)
    return ((x / x_norm) * (y / y_norm)).sum(1).abs()


def _view_test(
    param: torch.Tensor, grad: torch.Tensor, rows: int, delta: Scalar, eps: Scalar
) -> torch.Tensor:
    """0-d bool: whether the cosine test fires in the view with ``rows`` rows."""
    cosine = _cosine_abs(_rows(grad, rows), _rows(param, rows), eps)
    threshold = delta / math.sqrt(param.numel() // rows)
    if isinstance(threshold, torch.Tensor):  # compare in the cosine's dtype, like a Python float
        threshold = threshold.to(cosine.dtype)
    return cosine.max() < threshold


def _view_project(
    param: torch.Tensor, update: torch.Tensor, rows: int, eps: Scalar
) -> torch.Tensor:
    """``update`` with the radial component of each row (in the view) removed."""
    expand = [-1] + [1] * (param.ndim - 1)
    norm = _rows(param, rows).norm(dim=1).reshape(expand) + eps
    unit = param / norm
    radial = _rows(unit * update, rows).sum(dim=1).reshape(expand)
    return update - unit * radial


def _projectable(param: torch.Tensor) -> bool:
    return param.ndim > 1 and param.numel() > 0


def is_scale_invariant(
    param: torch.Tensor, grad: torch.Tensor, *, delta: Scalar, eps: Scalar
) -> torch.Tensor:
    """Whether AdamP's scale-invariance test fires on ``(param, grad)`` in either view.

    Returns a 0-d bool tensor (``False`` for tensors with ``ndim <= 1`` or no elements). Useful
    for diagnostics such as the fraction of steps on which a layer is projected.

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
    fired = _view_test(param, grad, param.shape[0], delta, eps)
    if param.shape[0] != 1:
        fired = fired | _view_test(param, grad, 1, delta, eps)
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

    See the module docstring for the math. Pure: no input is modified.

    Args:
        param: the weight :math:`W`.
        grad: its raw gradient :math:`G` (used only for the cosine test; its sign is irrelevant).
        update: the update :math:`U` to project (same shape as ``param``).
        delta: threshold coefficient δ of the test ``max_i c_i < δ/√n``.
        wd_ratio: the weight-decay ratio returned when the test fires.
        eps: ε of the cosine similarity and of the row normalisation.

    Returns:
        ``(projected_update, ratio)``. For tensors with ``ndim <= 1`` or no elements the
        update itself and the Python float ``1.0``. Otherwise a new tensor and a 0-d tensor
        equal to ``wd_ratio`` if a view fired, else 1 (float64, or ``wd_ratio``'s dtype when it
        is a tensor).

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
    rows = param.shape[0]
    channel = _view_test(param, grad, rows, delta, eps)
    projected = _view_project(param, update, rows, eps)
    if rows == 1:  # the channel view is the layer view
        fired = channel
        result = torch.where(channel, projected, update)
    else:
        layer = _view_test(param, grad, 1, delta, eps)
        layer_projected = _view_project(param, update, 1, eps)
        fired = channel | layer
        result = torch.where(channel, projected, torch.where(layer, layer_projected, update))
    dtype = wd_ratio.dtype if isinstance(wd_ratio, torch.Tensor) else torch.float64
    on = fired.to(dtype)
    # Exact: on ∈ {0, 1}, so this is wd_ratio or 1 with no rounding.
    ratio = on * wd_ratio + (1.0 - on)
    return result, ratio
