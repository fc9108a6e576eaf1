"""SAM-GS: similarity-aware momentum gradient surgery (Borsani et al., ECML-PKDD 2025)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from gradkit import _validation as check
from gradkit.mtl._base import Aggregator

__all__ = ["SAMGS", "SAMGSStep", "magnitude_similarity", "samgs_step"]

#: Added to norms in denominators (the official code has no guard and gives NaN for a zero
#: task gradient).
GUARD_EPS = 1e-12


def magnitude_similarity(norm_i: float, norm_j: float) -> float:
    r""":math:`\psi(g_i, g_j) = 2\|g_i\|\|g_j\| / (\|g_i\|^2 + \|g_j\|^2)` from the two norms."""
    return 2.0 * norm_i * norm_j / (norm_i * norm_i + norm_j * norm_j)


def mean_similarity(norms: list[float], include_diagonal: bool) -> float:
    """Ψ: mean ψ over the pairs ``i < j`` (code) or all ``(i, j)`` (paper), skipping zero-norm
    tasks; 1.0 when fewer than two tasks have a non-zero gradient."""
    live = [n for n in norms if n > 0.0]
    if len(live) < 2:
        return 1.0
    n = len(live)
    pairs = [
        magnitude_similarity(live[i], live[j])
        for i in range(n)
        for j in range(n)
        if i < j or include_diagonal
    ]
    return sum(pairs) / len(pairs)


class SAMGSStep(NamedTuple):
    """Output of :func:`samgs_step`."""

    update: torch.Tensor
    m: torch.Tensor
    h: float
    psi: float
    equalised: bool


def samgs_step(
    jacobian: torch.Tensor,
    m: torch.Tensor,
    h: float,
    step: int,
    *,
    gamma: float,
    beta1: float,
    beta2: float,
    eps: float,
    include_diagonal: bool = False,
) -> SAMGSStep:
    r"""One SAM-GS step (pure): ``step`` is the new step number ``t >= 1``; returns the update
    ``d`` (before the optional ×K scaling and clipping), the new ``m`` and ``h``, Ψ and the
    branch taken. See :class:`SAMGS` for the equations."""
    norms = jacobian.double().norm(dim=1).tolist()
    psi = mean_similarity(norms, include_diagonal)
    m = beta1 * m + (1.0 - beta1) * jacobian
    h = beta2 * h + (1.0 - beta2) * (1.0 - psi) ** 2 + eps
    if psi < gamma:
        mean_norm = sum(norms) / len(norms)
        w = torch.tensor(
            [mean_norm / (n + GUARD_EPS) for n in norms],
            dtype=jacobian.dtype,
            device=jacobian.device,
        )
        return SAMGSStep(w @ jacobian, m, h, psi, True)
    m_hat = m / (1.0 - beta1**step)
    h_hat = h / (1.0 - beta2**step)
    update = (m_hat.abs() * jacobian).sum(dim=0) / math.sqrt(h_hat)
    return SAMGSStep(update, m, h, psi, False)


class SAMGS(Aggregator):
    r"""SAM-GS (Borsani, Rosani, Nicosia, Di Fatta, "Gradient Similarity Surgery in Multi-Task
    Deep Learning", ECML-PKDD 2025, arXiv 2506.06130; official code ThomBors/samgs).

    Gradient magnitude similarity and its mean over task pairs:

    .. math:: \psi(g_i, g_j) = \frac{2\|g_i\|\|g_j\|}{\|g_i\|^2 + \|g_j\|^2},\qquad
              \Psi = \operatorname{mean}_{i<j} \psi(g_i, g_j)

    Each step (``t ← t+1``; ``m_k`` and ``h`` are updated on **every** step):

    .. math::
        m_k \leftarrow \beta_1 m_k + (1-\beta_1) g_k,\qquad
        h \leftarrow \beta_2 h + (1-\beta_2)(1-\Psi)^2 + \epsilon,

        \hat m_k = m_k/(1-\beta_1^t),\qquad \hat h = h/(1-\beta_2^t),

        d = \begin{cases}
            \sum_k \frac{\operatorname{mean}_j\|g_j\|}{\|g_k\|} g_k & \Psi < \gamma
                \text{ (equalisation)}\\
            \sum_k \frac{|\hat m_k|}{\sqrt{\hat h}} \odot g_k & \text{otherwise (momentum)}
        \end{cases}

    (ε inside the ``h`` EMA and no ε in the square root, as in the official code.)

    Args:
        gamma: the similarity threshold γ. **Default 0.1** (Algorithm 1 of the paper and the
            repo's toy configs); the repo uses 0.7 on NYUv2 / CityScapes / CelebA.
        beta1, beta2, eps: 0.9, 0.99, 1e-8 as in the paper and code.
        include_diagonal: ``False`` (default, code): Ψ averages the pairs ``i < j``; ``True``
            (paper): all ``K²`` ordered pairs, diagonal included.
        scale_by_num_tasks: ``False`` (default, the paper's form); ``True`` multiplies ``d``
            by ``K`` like the repo's ``overwrite_grad`` ("to match the sum loss").
        max_norm: ``None`` (default); a float clips ``‖d‖`` to it after the ×K scaling, like
            the repo's built-in ``clip_grad_norm_(shared, 1.0)`` (``max_norm=1.0`` for parity).

    Needs ``K >= 2``; ``K`` and ``P`` must stay fixed across steps. State: ``step``, ``m``
    (``K × P``), ``h``; :meth:`state_dict` resumes exactly. Permutation invariant; not
    non-conflicting.

    Paper: arXiv:2506.06130. Reference implementation: the official code (ThomBors/samgs).
    For parity with it use ``SAMGS(gamma, scale_by_num_tasks=True, max_norm=1.0)``.

    Deviations (each a flag or a guard): the repo's ×K scaling and its built-in norm
    clipping are off by default (``scale_by_num_tasks``, ``max_norm``). Ψ over ``i < j`` is the
    code's; ``include_diagonal=True`` gives the paper's. Zero task gradients are guarded:
    they are skipped in Ψ and 1e-12 is added to the equalisation denominators, where the repo
    returns NaN. In the momentum branch :math:`\sqrt{\hat h}` can be small (Ψ near 1), so
    the update can be many times the gradient. Clip it (``max_norm``) or use an optimizer
    that normalises the step.

    Example:
        >>> import torch
        >>> from gradkit.mtl import SAMGS
        >>> samgs = SAMGS(max_norm=1.0)
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> [round(x, 4) for x in samgs(jac).tolist()]  # momentum branch, clipped to norm 1
        [0.0, 1.0]
        >>> samgs.step, round(samgs.last_psi, 4), samgs.last_equalised
        (1, 0.9428, False)
        >>> resumed = SAMGS(max_norm=1.0)
        >>> resumed.load_state_dict(samgs.state_dict())
        >>> torch.equal(resumed(jac), samgs(jac))
        True
    """

    hyperparameter_names = (
        "gamma",
        "beta1",
        "beta2",
        "eps",
        "include_diagonal",
        "scale_by_num_tasks",
        "max_norm",
    )

    min_tasks = 2

    def __init__(
        self,
        gamma: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        eps: float = 1e-8,
        *,
        include_diagonal: bool = False,
        scale_by_num_tasks: bool = False,
        max_norm: float | None = None,
    ) -> None:
        check.nonnegative("gamma", gamma)
        check.unit_interval("beta1", beta1)
        check.unit_interval("beta2", beta2)
        check.positive("eps", eps)
        for name, flag in (
            ("include_diagonal", include_diagonal),
            ("scale_by_num_tasks", scale_by_num_tasks),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"Invalid {name}: {flag!r} (expected a bool)")
        if max_norm is not None:
            check.positive("max_norm", max_norm)
        self.gamma = float(gamma)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.include_diagonal = include_diagonal
        self.scale_by_num_tasks = scale_by_num_tasks
        self.max_norm = None if max_norm is None else float(max_norm)
        self.reset()

    def reset(self) -> None:
        """Forget the state (step 0, no momentum)."""
        self.step = 0
        self.m: torch.Tensor | None = None
        self.h = 0.0
        #: Ψ and the branch of the last call (diagnostics, not saved).
        self.last_psi: float | None = None
        self.last_equalised: bool | None = None

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        m = self.m
        if m is None:
            m = torch.zeros_like(jacobian)
        elif m.shape != jacobian.shape:
            raise ValueError(
                f"Invalid jacobian shape for SAMGS: {tuple(jacobian.shape)} (its state was built "
                f"for {tuple(m.shape)}; call reset() to start over)"
            )
        else:
            m = m.to(device=jacobian.device, dtype=jacobian.dtype)
        out = samgs_step(
            jacobian,
            m,
            self.h,
            self.step + 1,
            gamma=self.gamma,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            include_diagonal=self.include_diagonal,
        )
        self.step += 1
        self.m, self.h = out.m, out.h
        self.last_psi, self.last_equalised = out.psi, out.equalised
        update = out.update
        if self.scale_by_num_tasks:
            update = update * jacobian.shape[0]
        if self.max_norm is not None:
            norm = float(update.double().norm())
            update = update * min(1.0, self.max_norm / (norm + 1e-6))
        return update

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": torch.tensor(self.step, dtype=torch.int64),
            "m": None if self.m is None else self.m.clone(),
            "h": torch.tensor(self.h, dtype=torch.float64),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._check_state_dict(state_dict, ("step", "m", "h"))
        m = state_dict["m"]
        if m is not None and (not isinstance(m, torch.Tensor) or m.dim() != 2):
            raise ValueError("Invalid state_dict for SAMGS: 'm' must be None or a 2-D tensor")
        self.step = int(state_dict["step"])
        self.m = None if m is None else m.clone()
        self.h = float(state_dict["h"])
