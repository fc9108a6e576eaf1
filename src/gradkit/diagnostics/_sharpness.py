r"""Directional sharpness: the curvature of the loss along an update direction.

Pan & Li. *Toward Understanding Why Adam Converges Faster Than SGD for Transformers.* arXiv
2306.00204, 2023. For a loss :math:`f` with Hessian :math:`H` at :math:`\theta` and a direction
:math:`v` (for example an optimizer's update),

.. math::

    S(\theta; v) = \frac{v^\top H v}{\lVert v\rVert^2}
    \qquad(\text{or } v^\top H v \text{ with } \texttt{normalize=False}).

It enters the second-order model of a step :math:`\theta - \eta v`,
:math:`f(\theta - \eta v) \approx f(\theta) - \eta\,\nabla f^\top v + \tfrac12\eta^2 v^\top H v`,
whose best decrease :math:`(\nabla f^\top v)^2 / (2 v^\top H v)` is reached at
:math:`\eta^* = \nabla f^\top v / v^\top H v`: at equal alignment, lower sharpness allows a
larger step and a larger decrease. :math:`Hv` is computed with one Hessian-vector product
(double back-propagation), never the Hessian itself.

Example:
    >>> import torch
    >>> from gradkit.diagnostics import directional_sharpness
    >>> w = torch.tensor([1.0, 1.0], requires_grad=True)
    >>> loss = 2.0 * w[0] ** 2 + 0.5 * w[1] ** 2       # H = diag(4, 1)
    >>> directional_sharpness(loss, [w], [torch.tensor([1.0, 1.0])])
    tensor(2.5000)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from gradkit.transforms._hessian import hessian_vector_product

__all__ = ["directional_sharpness", "step_direction"]


def directional_sharpness(
    loss: torch.Tensor | Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    direction: Sequence[torch.Tensor],
    *,
    normalize: bool = True,
) -> torch.Tensor:
    r"""Directional sharpness :math:`v^\top H v / \lVert v\rVert^2` of ``loss`` along ``direction``.

    Math: with :math:`H = \nabla^2_\theta f` at the current params,
    :math:`S(\theta; v) = v^\top H v / \lVert v\rVert^2` (``normalize=True``) or
    :math:`v^\top H v`. :math:`Hv` comes from one Hessian-vector product (double
    back-propagation, :func:`gradkit.transforms.hessian_vector_product`); the Hessian is never
    formed, so the cost is about two backward passes.

    Paper: Pan & Li, *Toward Understanding Why Adam Converges Faster Than SGD for
    Transformers*, arXiv:2306.00204 (2023), where :math:`v` is an optimizer's update direction.
    Reference implementation: none was found; this is the paper's definition, tested against
    quadratics with a known :math:`H`. Deviations: none (``normalize=False`` is an addition).

    Args:
        loss: the scalar loss with its autograd graph, or a zero-argument function returning
            it (called with gradients enabled).
        params: the tensors :math:`\theta` the Hessian is taken with respect to.
        direction: :math:`v`, one tensor per param with the param's shape (e.g. the update
            ``θ_new − θ_old`` from :func:`step_direction`).
        normalize: ``True`` (default) divides by :math:`\lVert v\rVert^2`: the curvature
            along the *unit* direction, independent of the step's length, so directions of
            different optimizers and steps compare (the paper's directional sharpness).
            ``False`` returns :math:`v^\top H v`, which grows with :math:`\lVert v\rVert^2`:
            the second-order term of the loss change along a step :math:`v`
            (:math:`\Delta L \approx g^\top v + \tfrac12 v^\top H v`).

    Returns:
        A 0-d tensor (detached), in the promoted dtype of ``direction`` (at least float32).

    Raises:
        ValueError: ``direction`` does not match ``params`` (length or a shape), contains
            NaN/inf, or is zero with ``normalize=True``; ``loss`` is not a differentiable scalar.
        TypeError: ``params`` or ``direction`` is a bare tensor.

    Example:
        >>> import torch
        >>> from gradkit.diagnostics import directional_sharpness
        >>> w = torch.tensor([1.0, 1.0], requires_grad=True)
        >>> def loss():
        ...     return 2.0 * w[0] ** 2 + 0.5 * w[1] ** 2   # H = diag(4, 1)
        >>> directional_sharpness(loss, [w], [torch.tensor([1.0, 0.0])])
        tensor(4.)
        >>> directional_sharpness(loss, [w], [torch.tensor([2.0, 2.0])], normalize=False)
        tensor(20.)
    """
    if isinstance(params, torch.Tensor) or isinstance(direction, torch.Tensor):
        raise TypeError("params and direction must be sequences of tensors (one per param)")
    params, direction = list(params), list(direction)
    if len(direction) != len(params):
        raise ValueError(
            f"direction has {len(direction)} tensors but there are {len(params)} params"
        )
    for index, (v, p) in enumerate(zip(direction, params, strict=True)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"direction[{index}] is a {type(v).__name__}, not a Tensor")
        if v.shape != p.shape:
            raise ValueError(
                f"direction[{index}] has shape {tuple(v.shape)}, its param has {tuple(p.shape)}"
            )
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"direction[{index}] contains NaN or inf")
    dtype = torch.float32
    for v in direction:
        dtype = torch.promote_types(dtype, v.dtype)
    squared_norm = sum(
        (v.detach().to(dtype).pow(2).sum() for v in direction), torch.zeros((), dtype=dtype)
    )
    if normalize and float(squared_norm) == 0.0:
        raise ValueError("directional_sharpness: the direction is zero (its norm is 0)")
    if callable(loss) and not isinstance(loss, torch.Tensor):
        with torch.enable_grad():
            loss = loss()
    with torch.enable_grad():
        products = hessian_vector_product(
            loss, params, [v.detach().to(p.dtype) for v, p in zip(direction, params, strict=True)]
        )
    curvature = sum(
        (
            (v.detach().to(dtype) * hv.to(dtype)).sum()
            for v, hv in zip(direction, products, strict=True)
        ),
        torch.zeros((), dtype=dtype),
    )
    return curvature / squared_norm if normalize else curvature


def step_direction(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    r"""The displacement :math:`\theta_{new} - \theta` that ``optimizer.step()`` would make now,
    without making it.

    Behaviour: the step is taken on a deep copy of the optimizer (its params with their
    ``.grad``, and its state); nothing of the original changes, so calling it and then
    ``optimizer.step()`` gives the same result as the step alone. For Adam the displacement is
    :math:`-\eta\,\hat m/(\sqrt{\hat v}+\epsilon)` (plus any weight decay), for SGD
    :math:`-\eta g` or the momentum step: pass it to :func:`directional_sharpness`, where its
    sign and scale do not matter. This is how Pan & Li (arXiv:2306.00204) measure the
    sharpness along Adam's and SGD's update directions; the paper has no public code, and this
    helper is gradkit's own. Cost: one copy of the params, their gradients and the optimizer
    state.

    Args:
        optimizer: any ``torch.optim.Optimizer`` whose ``step`` works without a closure (one
            that needs a closure, such as L-BFGS, is not supported: the closure would act on
            the original params).

    Returns:
        One tensor per param, in param-group order (zeros for params without a gradient).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.

    Example:
        >>> import torch
        >>> from gradkit.diagnostics import step_direction
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> w.grad = torch.tensor([3.0, 1.0])
        >>> step_direction(opt)
        [tensor([-0.3000, -0.1000])]
        >>> w.detach()                                       # unchanged
        tensor([ 1., -2.])
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"step_direction expects a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    twin = copy.deepcopy(optimizer)
    twin_params = [p for group in twin.param_groups for p in group["params"]]
    for p, q in zip(params, twin_params, strict=True):
        # deepcopy does not copy an nn.Parameter's .grad; a copy keeps the original's safe
        q.grad = None if p.grad is None else p.grad.detach().clone()
    twin.step()
    return [q.detach() - p.detach() for p, q in zip(params, twin_params, strict=True)]
