"""Error feedback (EF) for a biased compressor: one residual per client.

.. math::

    p_t = u_t + e_{t-1},\\qquad \\hat p_t = C(p_t),\\qquad e_t = p_t - \\hat p_t,

so the residual carries what the compressor dropped into the next round, and the transmitted
updates telescope: ``Σ_t p̂_t + e_T = Σ_t u_t`` (Karimireddy et al., 2019, "Error Feedback Fixes
SignSGD"; the PowerSGD hook calls EF "crucial ... because PowerSGD is a biased compressor").

The residual is kept in ``promote(dtype, float32)`` (float16/bfloat16 updates get a float32
residual, so EF does not lose what the low-precision dtype cannot hold; float64 stays float64).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gradkit.comm._binarize import as_tensor_list

__all__ = ["ErrorFeedback"]


def _residual_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class ErrorFeedback:
    """The EF state of one client: ``compensate`` before compressing, ``record`` after.

    Example:
        >>> import torch
        >>> from gradkit.comm import ErrorFeedback, binarize, reconstruct
        >>> ef = ErrorFeedback()
        >>> u = [torch.tensor([0.3, -0.1, 0.2])]
        >>> p = ef.compensate(u)            # u + e (e = 0 at the start)
        >>> p_hat = reconstruct(binarize(p, threshold="zero", reconstruct="sign"))
        >>> ef.record(p, p_hat)             # e <- p - p_hat
        >>> torch.allclose(p_hat[0] + ef.residual[0], u[0])
        True

    Paper: Karimireddy et al., "Error Feedback Fixes SignSGD and other Gradient Compression
    Schemes", arXiv:1901.09847 (EF-SGD, Algorithm 2). Reference implementation: the paper's
    update ``p = u + e``, ``e ← p − C(p)``. Deviation: the residual is kept in at least float32
    for float16/bfloat16 updates (see the module docstring). ``state_dict`` round-trips the
    residual.
    """

    def __init__(self) -> None:
        self.residual: list[torch.Tensor] | None = None

    def compensate(self, update: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return ``p = u + e`` (new tensors, in the residual dtype); ``e = 0`` before the first
        :meth:`record`. Raises ``ValueError`` if the update's shapes differ from the residual's."""
        tensors = as_tensor_list(update)
        if self.residual is None:
            return [t.detach().to(_residual_dtype(t.dtype), copy=True) for t in tensors]
        if len(tensors) != len(self.residual):
            raise ValueError(
                f"ErrorFeedback: the update has {len(tensors)} tensors, the residual {len(self.residual)}"
            )
        out = []
        for i, (t, e) in enumerate(zip(tensors, self.residual, strict=True)):
            if t.shape != e.shape:
                raise ValueError(
                    f"ErrorFeedback: update tensor {i} has shape {tuple(t.shape)}, "
                    f"the residual {tuple(e.shape)}"
                )
            out.append(t.detach().to(e.dtype) + e)
        return out

    def record(
        self,
        compensated: Sequence[torch.Tensor],
        reconstruction: Sequence[torch.Tensor],
    ) -> None:
        """Set ``e = p - p̂`` from the compensated update and what the receiver reconstructs."""
        if len(compensated) != len(reconstruction):
            raise ValueError(
                f"ErrorFeedback.record: {len(compensated)} compensated tensors but "
                f"{len(reconstruction)} reconstructed"
            )
        residual = []
        for i, (p, q) in enumerate(zip(compensated, reconstruction, strict=True)):
            if p.shape != q.shape:
                raise ValueError(
                    f"ErrorFeedback.record: tensor {i} has shape {tuple(p.shape)}, its "
                    f"reconstruction {tuple(q.shape)}"
                )
            dtype = _residual_dtype(p.dtype)
            residual.append(p.detach().to(dtype) - q.detach().to(dtype))
        self.residual = residual

    def reset(self) -> None:
        """Forget the residual (e.g. after the model was re-synchronised)."""
        self.residual = None

    def state_dict(self) -> dict[str, Any]:
        """``{"residual": list of tensors or None}`` (clones; ``torch.save``-able)."""
        return {"residual": None if self.residual is None else [e.clone() for e in self.residual]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises ``ValueError``/``TypeError`` on a malformed one."""
        if set(state_dict) != {"residual"}:
            raise ValueError(
                f"ErrorFeedback.load_state_dict: expected the key 'residual', got {sorted(state_dict)}"
            )
        residual = state_dict["residual"]
        if residual is None:
            self.residual = None
            return
        if not isinstance(residual, list | tuple) or not all(
            isinstance(e, torch.Tensor) for e in residual
        ):
            raise TypeError(
                "ErrorFeedback.load_state_dict: 'residual' must be a list of tensors or None"
            )
        self.residual = [e.clone() for e in residual]

    def __repr__(self) -> str:
        n = 0 if self.residual is None else sum(e.numel() for e in self.residual)
        return f"ErrorFeedback(residual_numel={n})"
