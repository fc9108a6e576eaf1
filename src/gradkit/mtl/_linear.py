"""Linear scalarisation: :class:`Mean` and :class:`Sum` of the task gradients."""

from __future__ import annotations

import torch

from gradkit.mtl._base import Aggregator

__all__ = ["Mean", "Sum"]


class Sum(Aggregator):
    r"""Sum of the task gradients, :math:`d = \sum_k g_k` (the gradient of :math:`\sum_k L_k`).

    Linear scalarisation with unit weights: the baseline every multi-task method is compared
    against (no paper of its own). Stateless; permutation invariant; linear
    (``Sum()(a·G) = a·Sum()(G)``). Accepts ``K >= 1``. Not non-conflicting: a task whose
    gradient opposes the sum gets worse.

    Reference implementation: ``torchjd.aggregation.Sum`` (TorchJD 0.18); no deviation.

    Example:
        >>> import torch
        >>> from gradkit.mtl import Sum
        >>> Sum()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]])).tolist()
        [0.0, 1.0]
    """

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.sum(dim=0)


class Mean(Aggregator):
    r"""Mean of the task gradients, :math:`d = \frac1K \sum_k g_k` (gradient of the mean loss).

    Linear scalarisation with weights :math:`1/K`: the usual "equal weighting" baseline (no
    paper of its own). Stateless; permutation invariant; linear. Accepts ``K >= 1``.

    Reference implementation: ``torchjd.aggregation.Mean`` (TorchJD 0.18); no deviation.

    Example:
        >>> import torch  # the gradient of the mean loss, through mtl_backward
        >>> from gradkit.mtl import Mean, mtl_backward
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> losses = [w.sum(), (w * w).sum()]  # gradients [1, 1] and [2, 4]
        >>> mtl_backward(losses, [w], Mean()).tolist(), w.grad.tolist()
        ([1.5, 2.5], [1.5, 2.5])
    """

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0)
