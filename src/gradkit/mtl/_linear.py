"""Linear scalarisation: :class:`Mean` and :class:`Sum` of the task gradients."""

from __future__ import annotations

import torch

from gradkit.mtl._base import Aggregator

__all__ = ["Mean", "Sum"]


class Sum(Aggregator):
    r"""Sum of the task gradients, :math:`d = \sum_k g_k` (the gradient of :math:`\sum_k L_k`).

    Stateless; permutation invariant; linear (``Sum()(a·G) = a·Sum()(G)``). Accepts ``K >= 1``.
    """

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.sum(dim=0)


class Mean(Aggregator):
    r"""Mean of the task gradients, :math:`d = \frac1K \sum_k g_k` (gradient of the mean loss).

    Stateless; permutation invariant; linear. Accepts ``K >= 1``.
    """

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0)
