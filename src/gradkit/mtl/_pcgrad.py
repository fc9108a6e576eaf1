"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

import torch

from gradkit.mtl._base import Aggregator
from gradkit.mtl._gramian import combine, gramian_list

__all__ = ["PCGrad", "pcgrad_weights"]

REDUCTIONS = ("sum", "mean")


def pcgrad_weights(
    gram: list[list[float]], generator: torch.Generator | None = None
) -> list[float]:
    r"""PCGrad's implicit weights on the original gradients, from the Gramian ``G Gᵀ``.

    For each task ``i``: start from :math:`g_i^{PC} = g_i` (weights :math:`e_i`) and, for ``j``
    in ``torch.randperm(K)`` (``j ≠ i``), if :math:`\langle g_i^{PC}, g_j\rangle < 0` project
    onto the normal plane of the **original** :math:`g_j`:
    :math:`g_i^{PC} \leftarrow g_i^{PC} - \frac{\langle g_i^{PC}, g_j\rangle}{\|g_j\|^2} g_j`.
    The weights ``w`` satisfy :math:`\sum_i g_i^{PC} = \sum_k w_k g_k`. One ``randperm`` per
    task, in task order, exactly like TorchJD's ``PCGradWeighting`` (same seed, same result).
    """
    k = len(gram)
    total = [0.0] * k
    for i in range(k):
        perm = torch.randperm(k, generator=generator).tolist()
        w = [0.0] * k
        w[i] = 1.0
        for j in perm:
            if j == i:
                continue
            inner = sum(gram[j][m] * w[m] for m in range(k))
            if inner < 0.0:
                w[j] -= inner / gram[j][j]
        total = [t + x for t, x in zip(total, w, strict=True)]
    return total


class PCGrad(Aggregator):
    r"""PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

    .. math:: d = \sum_i g_i^{PC}

    where each :math:`g_i^{PC}` is :math:`g_i` projected, in a random task order, onto the
    normal plane of every original :math:`g_j` it conflicts with (see :func:`pcgrad_weights`).
    For ``K = 2`` and :math:`c = \langle g_1, g_2\rangle < 0`:
    :math:`d = g_1 + g_2 - c\,(g_1/\|g_1\|^2 + g_2/\|g_2\|^2)`; without conflict :math:`d =
    \sum_k g_k`. Matches ``torchjd.aggregation.PCGrad`` (0.18) under the same seed.

    Args:
        reduction: ``"sum"`` (default; TorchJD, Nash-MTL code) or ``"mean"`` (divides by ``K``,
            the CAGrad toy's convention).
        generator: the ``torch.Generator`` for the task orders; ``None`` uses the global RNG
            (seed it with ``torch.manual_seed`` for reproducibility).

    Stateless (the generator, if any, is the caller's). A task with a zero gradient is never
    projected onto (its Gramian row is zero, so it never conflicts). Not permutation invariant
    for ``K >= 3`` (the projection order is random); non-conflicting for ``K = 2`` only.

    Paper: arXiv:2001.06782. Reference implementations: the official code
    (tianheyu927/PCGrad) and ``torchjd.aggregation.PCGrad`` 0.18, which this matches exactly
    under the same seed.

    Deviations: the method is computed on the Gramian (the weights of the original
    gradients), not by projecting vectors: the same numbers up to rounding. The task orders
    come from ``torch.randperm`` (TorchJD's draw), so a seed reproduces TorchJD's orders, not
    the official code's.

    Example:
        >>> import torch
        >>> from gradkit.mtl import PCGrad
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # <g1, g2> = -1: a conflict
        >>> PCGrad()(jac).tolist()  # g1 + g2 + (g1/|g1|^2 + g2/|g2|^2)
        [0.5, 1.5]
        >>> PCGrad(generator=torch.Generator().manual_seed(0))(torch.eye(2)).tolist()
        [1.0, 1.0]
    """

    hyperparameter_names = ("reduction",)

    def __init__(self, reduction: str = "sum", generator: torch.Generator | None = None) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"Invalid reduction: {reduction!r} (must be one of {REDUCTIONS})")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"Invalid generator: expected a torch.Generator, got {type(generator).__name__}"
            )
        self.reduction = reduction
        self.generator = generator

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        weights = pcgrad_weights(gramian_list(jacobian), self.generator)
        if self.reduction == "mean":
            weights = [w / len(weights) for w in weights]
        return combine(weights, jacobian)
