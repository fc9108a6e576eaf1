"""Server-side aggregation of binarised updates (systems spec §1(a)4).

* ``rule="majority"`` — signSGD with majority vote (Bernstein et al., 2018):
  ``d = median_k(α_k) · sign(Σ_k b_k)`` per group, with ``sign(0) = 0`` (a tied vote does not move
  the coordinate). The median over clients is the usual statistical one (mean of the two middle
  values for an even number of clients).
* ``rule="mean"`` — mean of the clients' reconstructions, ``d = mean_k p̂_k`` (each client's own
  ``reconstruct`` mode).

The server applies ``w ← w − η·d``; :class:`AggregateResult` holds ``d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from gradkit.comm._binarize import BinaryUpdate, group_index, reconstruct
from gradkit.comm._frame import FRAME_MAGIC, KIND_PLAIN, FrameHeader, decode_frame

__all__ = ["RULES", "AggregateResult", "aggregate", "majority_vote", "mean_reconstruction"]

Rule = Literal["majority", "mean"]
RULES: tuple[str, ...] = ("majority", "mean")


@dataclass(frozen=True)
class AggregateResult:
    """The aggregated direction and what it was computed from.

    Attributes:
        update: one tensor per model tensor (recorded shapes and dtypes); apply ``w ← w − η·update``.
        num_clients: how many client updates were aggregated.
        plus_counts: int64 tensor ``[d]``, the number of clients with ``b = +1`` per coordinate
            (``Σ_k b_k = 2·plus_counts − num_clients``).
        scale: float32 tensor ``[G]``, the per-group scale used by the majority rule (median of
            the clients' α, or their mean when the scales were encrypted); for ``rule="mean"``,
            the mean α (informational).
        rule: ``"majority"`` or ``"mean"``.

    Example:
        >>> import torch
        >>> from gradkit.comm import binarize, majority_vote
        >>> r = majority_vote([binarize([torch.tensor([1.0, -1.0])], threshold="zero")] * 3)
        >>> r.num_clients, r.plus_counts.tolist(), r.rule
        (3, [3, 0], 'majority')
    """

    update: list[torch.Tensor]
    num_clients: int
    plus_counts: torch.Tensor
    scale: torch.Tensor
    rule: str


def check_compatible(updates: Sequence[BinaryUpdate]) -> BinaryUpdate:
    """All updates share shapes, dtypes, granularity and reconstruction; returns the first."""
    if not updates:
        raise ValueError("Nothing to aggregate: no client updates")
    first = updates[0]
    for k, u in enumerate(updates[1:], start=1):
        for field in ("shapes", "dtypes", "granularity", "reconstruct"):
            if getattr(u, field) != getattr(first, field):
                raise ValueError(
                    f"Inconsistent client updates: client {k} has {field}={getattr(u, field)!r}, "
                    f"client 0 has {getattr(first, field)!r}"
                )
    return first


def median_scale(alphas: torch.Tensor) -> torch.Tensor:
    """Median over clients (dim 0) of a ``[N, G]`` float32 tensor; mean of the middle pair."""
    return torch.quantile(alphas.double(), 0.5, dim=0, interpolation="midpoint").float()


def majority_from_counts(
    plus_counts: torch.Tensor,
    num_clients: int,
    scale: torch.Tensor,
    template: BinaryUpdate | FrameHeader,
) -> AggregateResult:
    """``d = scale_g · sign(2·plus_counts − N)`` in the template's shapes and dtypes."""
    vote = torch.sign(2 * plus_counts - num_clients).to(torch.float32)
    update = []
    for (start, stop, g), shape, dtype in zip(
        group_index(template.numels, template.granularity),
        template.shapes,
        template.dtypes,
        strict=True,
    ):
        update.append((vote[start:stop] * scale[g]).to(dtype).reshape(shape))
    return AggregateResult(update, num_clients, plus_counts, scale, "majority")


def count_plus(updates: Sequence[BinaryUpdate]) -> torch.Tensor:
    counts = torch.zeros(updates[0].numel, dtype=torch.int64)
    for u in updates:
        counts += u.bits
    return counts


def majority_vote(updates: Sequence[BinaryUpdate]) -> AggregateResult:
    """signSGD majority vote: ``median_k(α_k) · sign(Σ_k b_k)``, ties → 0.

    Example:
        >>> import torch
        >>> from gradkit.comm import binarize, majority_vote
        >>> clients = [binarize([torch.tensor(v)], threshold="zero")
        ...            for v in ([1.0, -2.0, 3.0], [1.0, 2.0, -3.0])]
        >>> majority_vote(clients).update[0].tolist()   # median α = 2; coords 1, 2 tie
        [2.0, 0.0, 0.0]

    Paper: Bernstein et al., "signSGD with Majority Vote is Communication Efficient and Fault
    Tolerant", arXiv:1810.05291. Reference implementation: the paper's algorithm (a sign per
    coordinate, the sign of the sum of the votes).

    Deviations: the paper's update is the bare sign with the learning rate as its scale.
    gradkit multiplies it by the median of the clients' ``α`` (per tensor), so the step has the
    gradient's magnitude; ties give 0. This scale is gradkit's choice (docs/comm.md).
    """
    first = check_compatible(updates)
    alphas = torch.stack([u.alpha for u in updates])
    return majority_from_counts(count_plus(updates), len(updates), median_scale(alphas), first)


def mean_reconstruction(updates: Sequence[BinaryUpdate]) -> AggregateResult:
    """Mean of the clients' reconstructions ``mean_k p̂_k`` (summed in float32).

    This is EdgeDetect's ``"mean"`` server rule as gradkit implements it (docs/comm.md): the
    unbiased counterpart of :func:`majority_vote`, with no vote.

    Example:
        >>> import torch
        >>> from gradkit.comm import binarize, mean_reconstruction
        >>> clients = [binarize([torch.tensor(v)], threshold="zero")
        ...            for v in ([1.0, -1.0], [3.0, 3.0])]
        >>> mean_reconstruction(clients).update[0].tolist()  # mean of [1, -1] and [3, 3]
        [2.0, 1.0]
    """
    first = check_compatible(updates)
    total = [torch.zeros(shape, dtype=torch.float32) for shape in first.shapes]
    for u in updates:
        for acc, r in zip(total, reconstruct(u), strict=True):
            acc += r.float()
    n = len(updates)
    update = [(acc / n).to(dtype) for acc, dtype in zip(total, first.dtypes, strict=True)]
    scale = torch.stack([u.alpha for u in updates]).mean(dim=0)
    return AggregateResult(update, n, count_plus(updates), scale, "mean")


def aggregate(
    payloads: Sequence[bytes],
    *,
    rule: Rule = "majority",
    expected_shapes: Sequence[Sequence[int]] | None = None,
) -> AggregateResult:
    """Server side, plaintext: decode every client frame and aggregate them.

    Args:
        payloads: the clients' plaintext frames (``ClientPayload.data``).
        rule: ``"majority"`` (default) or ``"mean"``.
        expected_shapes: the model's tensor shapes; a frame for another model is rejected.

    Raises:
        ValueError: no payloads, an unknown rule, a malformed frame (the message starts with the
            payload's index), clients that disagree on shapes/dtypes/granularity/reconstruction,
            or an encrypted frame (use :class:`SecureAggregator` and :class:`KeyHolder`).

    Rules: ``"majority"`` is signSGD with majority vote (Bernstein et al., arXiv:1810.05291),
    see :func:`majority_vote`; ``"mean"`` is the mean of the clients' reconstructions, see
    :func:`mean_reconstruction`.

    Example:
        >>> import torch
        >>> from gradkit.comm import aggregate, binarize, encode_frame
        >>> frames = [encode_frame(binarize([torch.tensor(v)], threshold="zero"))
        ...           for v in ([1.0, -2.0, 3.0], [1.0, 2.0, -3.0], [2.0, -1.0, -3.0])]
        >>> result = aggregate(frames)
        >>> result.plus_counts.tolist(), result.update[0].tolist()  # median α = 2
        ([3, 1, 1], [2.0, -2.0, -2.0])
    """
    if rule not in RULES:
        raise ValueError(f"Invalid rule: {rule!r} (must be one of {', '.join(RULES)})")
    if len(payloads) == 0:
        raise ValueError("Nothing to aggregate: no client payloads")
    updates = []
    for k, data in enumerate(payloads):
        if len(data) > 5 and bytes(data[:4]) == FRAME_MAGIC and data[5] != KIND_PLAIN:
            raise ValueError(
                f"payload {k}: an encrypted frame; aggregate it with "
                "SecureAggregator(public_key).aggregate and decrypt with KeyHolder.decrypt_aggregate"
            )
        try:
            updates.append(decode_frame(data, expected_shapes=expected_shapes))
        except ValueError as err:
            raise ValueError(f"payload {k}: {err}") from err
    return majority_vote(updates) if rule == "majority" else mean_reconstruction(updates)
