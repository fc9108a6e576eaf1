"""Helpers for aggregators of the form ``d = wᵀG`` with ``w`` a function of the Gramian."""

from __future__ import annotations

import torch

__all__ = ["combine", "gramian_list"]


def gramian_list(jacobian: torch.Tensor) -> list[list[float]]:
    """``G Gᵀ`` as nested Python floats (double precision; the solvers loop over ``K ≤ ~10``)."""
    return (jacobian @ jacobian.T).double().tolist()


def combine(weights: list[float], jacobian: torch.Tensor) -> torch.Tensor:
    """``Σ_k w_k g_k`` in the Jacobian's dtype and device."""
    w = torch.tensor(weights, dtype=jacobian.dtype, device=jacobian.device)
    return w @ jacobian
