"""MGDA: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch

from gradkit import _validation as check
from gradkit.mtl._base import Aggregator
from gradkit.mtl._gramian import combine, gramian_list

__all__ = ["MGDA", "mgda_weights"]


def mgda_weights(
    gram: list[list[float]], epsilon: float = 1e-3, max_iters: int = 100
) -> list[float]:
    r"""Frank–Wolfe for :math:`\min_{w\in\Delta} \|\sum_k w_k g_k\|^2` on the Gramian.

    Sener & Koltun (2018), Algorithm 2, as in TorchJD's ``MGDAWeighting``: start at
    :math:`w = \mathbf 1/K`; repeat: :math:`t = \arg\min_k (Gw)_k`, exact line search
    :math:`\gamma` between :math:`w` and :math:`e_t` (:math:`a = w^\top G e_t`,
    :math:`b = w^\top G w`, :math:`c = G_{tt}`: :math:`\gamma = 1` if :math:`c \le a`, 0 if
    :math:`b \le a`, else :math:`(b-a)/(b+c-2a)`), :math:`w \leftarrow (1-\gamma) w + \gamma
    e_t`; stop when :math:`\gamma <` ``epsilon`` or after ``max_iters`` iterations.
    """
    k = len(gram)
    w = [1.0 / k] * k
    for _ in range(max_iters):
        gw = [sum(gram[i][j] * w[j] for j in range(k)) for i in range(k)]
        t = min(range(k), key=gw.__getitem__)
        a = gw[t]
        b = sum(w[i] * gw[i] for i in range(k))
        c = gram[t][t]
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = (b - a) / (b + c - 2 * a)
        w = [(1 - gamma) * x for x in w]
        w[t] += gamma
        if gamma < epsilon:
            break
    return w


class MGDA(Aggregator):
    r"""MGDA (Désidéri 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018).

    .. math:: w^* = \arg\min_{w\in\Delta} \Big\|\sum_k w_k g_k\Big\|^2, \qquad d = \sum_k w^*_k g_k

    solved by Frank–Wolfe on the Gramian (:func:`mgda_weights`; TorchJD 0.18's solver and
    defaults). At the optimum :math:`\langle g_k, d\rangle \ge \|d\|^2 \ge 0` for every task
    (non-conflicting); :math:`d = 0` when :math:`0` is in the convex hull (Pareto-stationary).
    For ``K = 2`` the first iteration is exact:
    :math:`\gamma = \mathrm{clip}(\langle g_2 - g_1, g_2\rangle / \|g_1 - g_2\|^2, 0, 1)`,
    :math:`d = \gamma g_1 + (1-\gamma) g_2`.

    Args:
        epsilon: stop when the Frank–Wolfe step :math:`\gamma` falls below it (default 1e-3).
        max_iters: at most this many iterations (default 100).

    Stateless; permutation invariant.

    Papers: Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective
    optimization", C. R. Math. 2012 (no arXiv); Sener & Koltun, arXiv:1810.04650.
    Reference implementations: ``torchjd.aggregation.MGDA`` 0.18 (matched to 1e-10 with the
    same ``epsilon``/``max_iters``) and Sener & Koltun's ``MinNormSolver``
    (isl-org/MultiObjectiveOptimization).

    Deviations: the gradients are used unnormalised (Sener & Koltun's ``l2``/``loss``/
    ``loss+`` normalisations are not implemented), and the MGDA-UB encoder bound is not used.
    The Frank–Wolfe iterate that stops at :math:`\gamma <` ``epsilon`` is only approximately
    the minimum-norm point, so the output is only approximately non-conflicting: on a random
    3-task Jacobian one task gets :math:`\langle g_k, d\rangle = -0.0027` while the others
    get 0.011 and 0.147. The registry therefore does not claim ``non_conflicting``.

    Example:
        >>> import torch
        >>> from gradkit.mtl import MGDA
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> d = MGDA()(jac)
        >>> [round(x, 4) for x in d.tolist()]
        [0.2, 0.4]
        >>> [round(x, 4) for x in (jac @ d).tolist()]  # both tasks improve, equally
        [0.2, 0.2]
    """

    hyperparameter_names = ("epsilon", "max_iters")

    def __init__(self, epsilon: float = 1e-3, max_iters: int = 100) -> None:
        check.positive("epsilon", epsilon)
        if isinstance(max_iters, bool) or not isinstance(max_iters, int):
            raise TypeError(f"Invalid max_iters: {max_iters!r} (expected an int)")
        if max_iters < 1:
            raise ValueError(f"Invalid max_iters: {max_iters} (must be >= 1)")
        self.epsilon = epsilon
        self.max_iters = max_iters

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        weights = mgda_weights(gramian_list(jacobian), float(self.epsilon), self.max_iters)
        return combine(weights, jacobian)
