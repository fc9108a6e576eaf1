"""The client-side entry point: update tensors → wire bytes, with honest byte accounting."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradkit.comm._binarize import (
    Granularity,
    Reconstruction,
    Threshold,
    Ties,
    as_tensor_list,
    binarize,
    sign_disagreement,
)
from gradkit.comm._binarize import (
    reconstruct as reconstruct_update,
)
from gradkit.comm._error_feedback import ErrorFeedback
from gradkit.comm._frame import encode_frame, plain_frame_size

__all__ = ["ClientPayload", "client_payload"]


@dataclass(frozen=True)
class ClientPayload:
    """What a client sends, and what it costs.

    Attributes:
        data: the frame bytes (plaintext ``kind = 0`` or encrypted ``kind = 1``).
        plaintext_bytes: length of the plaintext frame of this update (header + ``ceil(d/8)``
            bit bytes + ``8·G`` scale bytes + CRC) — the EdgeDetect "32×" payload.
        wire_bytes: ``len(data)``; equals ``plaintext_bytes`` without encryption, and includes
            the ciphertext expansion with it.
        float32_bytes: ``4·d``, the uncompressed float32 update, for ratios.
        num_coords: ``d``.
        encode_seconds: wall time of error feedback + binarisation + framing/encryption.
        sign_disagreement: fraction of coordinates where ``b ≠ sign(u)`` (``u`` the raw update,
            before error feedback; see :func:`gradkit.comm.sign_disagreement`).
        secure: whether ``data`` is encrypted.

    Example:
        >>> import torch
        >>> from gradkit.comm import client_payload
        >>> pay = client_payload([torch.ones(64)], threshold="zero")
        >>> pay.num_coords, pay.float32_bytes, pay.plaintext_bytes == pay.wire_bytes, pay.secure
        (64, 256, True, False)
    """

    data: bytes
    plaintext_bytes: int
    wire_bytes: int
    float32_bytes: int
    num_coords: int
    encode_seconds: float
    sign_disagreement: float
    secure: bool


def client_payload(
    update: torch.Tensor | Sequence[torch.Tensor],
    *,
    threshold: Threshold = "median",
    granularity: Granularity = "tensor",
    reconstruct: Reconstruction = "affine",
    ties: Ties = "positive",
    error_feedback: ErrorFeedback | None = None,
    public_key: Any = None,
    num_clients: int | None = None,
    encrypt_scales: bool = False,
) -> ClientPayload:
    """Compress one client's update (optionally with error feedback and encryption) to bytes.

    Steps: ``p = u + e`` (if ``error_feedback``), :func:`binarize`, ``e ← p − p̂`` (the residual
    is updated in place on ``error_feedback``), then :func:`encode_frame` — or, with a
    ``public_key``, :func:`encrypt_update` for ``num_clients`` clients.

    Args:
        update: the client's update tensors (a gradient, or a model delta), in model order.
        threshold, granularity, reconstruct, ties: see :func:`binarize`.
        error_feedback: this client's :class:`ErrorFeedback` state, or ``None`` (no EF).
        public_key: the shared Paillier public key for secure aggregation, or ``None``.
        num_clients: required with ``public_key``: the most clients whose payloads are summed.
        encrypt_scales: with ``public_key``, encrypt ``(τ, α)`` too (see :mod:`gradkit.comm`).

    Example:
        >>> import torch
        >>> from gradkit.comm import aggregate, client_payload
        >>> u = [torch.randn(200_000)]
        >>> pay = client_payload(u)
        >>> pay.float32_bytes / pay.wire_bytes > 31
        True
        >>> aggregate([pay.data]).update[0].shape
        torch.Size([200000])

    Papers: EdgeDetect (arXiv:2604.14663) for the pipeline; EF-signSGD (arXiv:1901.09847) for
    the error feedback; packed Paillier for ``public_key`` (see :func:`encrypt_update`).
    Reference implementation: none public for EdgeDetect (see :func:`binarize`).
    """
    start = time.perf_counter()
    tensors = as_tensor_list(update)
    if public_key is None and (num_clients is not None or encrypt_scales):
        raise ValueError("num_clients and encrypt_scales need a public_key (secure aggregation)")
    if public_key is not None and num_clients is None:
        raise ValueError("client_payload: num_clients is required with a public_key")
    compensated = tensors if error_feedback is None else error_feedback.compensate(tensors)
    binary = binarize(
        compensated,
        threshold=threshold,
        granularity=granularity,
        reconstruct=reconstruct,
        ties=ties,
    )
    if error_feedback is not None:
        error_feedback.record(compensated, reconstruct_update(binary))
        # The frame carries the model's dtypes, not the residual's (float32 for half updates).
        binary = dataclasses.replace(binary, dtypes=tuple(t.dtype for t in tensors))
    if public_key is None:
        data = encode_frame(binary)
    else:
        from gradkit.comm._paillier import encrypt_update

        data = encrypt_update(
            binary, public_key, num_clients=int(num_clients or 0), encrypt_scales=encrypt_scales
        )
    seconds = time.perf_counter() - start
    return ClientPayload(
        data=data,
        plaintext_bytes=plain_frame_size(binary.shapes, binary.granularity),
        wire_bytes=len(data),
        float32_bytes=4 * binary.numel,
        num_coords=binary.numel,
        encode_seconds=seconds,
        sign_disagreement=sign_disagreement(tensors, binary, ties),
        secure=public_key is not None,
    )
