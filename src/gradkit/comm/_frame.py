"""The gradkit wire frame for binarised updates (byte layout in docs/comm.md).

Every integer is little-endian, except Paillier ciphertexts (fixed-width big-endian). A frame is

    header | tensor descriptors | body (depends on ``kind``) | CRC-32 of everything before it

* header, 20 bytes: ``magic b"GKSB"``, ``version u8 = 1``, ``kind u8``, ``flags u8``,
  ``reserved u8 = 0``, ``tensor count T u32``, ``total coordinates d u64``;
* descriptors, per tensor: ``dtype code u8``, ``ndim u8``, ``ndim × u32`` dims (``numel`` of all
  tensors must add up to ``d``);
* body of a plaintext frame (``kind = 0``): ``ceil(d/8)`` bytes of packed bits (coordinate ``i``
  is bit ``i % 8`` of byte ``i // 8``, LSB first, padding bits zero), then ``G × (τ f32, α f32)``.

Encrypted client frames (``kind = 1``) and encrypted aggregates (``kind = 2``) share the header
and descriptors; their bodies are written by :mod:`gradkit.comm._paillier` (layout in
:mod:`gradkit.comm._paillier_frame`).

:func:`decode_frame` checks every field and raises ``ValueError`` naming what is wrong (magic,
version, kind, flags, length, checksum, shapes against the expected model, padding bits,
non-finite or negative scales).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gradkit.comm._binarize import BinaryUpdate

__all__ = [
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "FrameHeader",
    "decode_frame",
    "encode_frame",
    "plain_frame_size",
]

FRAME_MAGIC = b"GKSB"
FRAME_VERSION = 1

KIND_PLAIN = 0
KIND_ENCRYPTED = 1
KIND_AGGREGATE = 2
KIND_NAMES = {KIND_PLAIN: "plaintext", KIND_ENCRYPTED: "encrypted", KIND_AGGREGATE: "aggregate"}

FLAG_VECTOR = 1  # granularity "vector" (else "tensor")
FLAG_SIGN = 2  # reconstruct "sign" (else "affine")
FLAG_ZERO = 4  # threshold "zero" (else "median")
FLAG_ENCRYPTED_SCALES = 8  # (τ, α) encrypted (encrypted frames only)
_KNOWN_FLAGS = FLAG_VECTOR | FLAG_SIGN | FLAG_ZERO | FLAG_ENCRYPTED_SCALES

_HEADER = struct.Struct("<4sBBBBIQ")
_CRC = struct.Struct("<I")
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_CODE_DTYPES = {v: k for k, v in _DTYPE_CODES.items()}
_MAX_DIM = 2**32 - 1


@dataclass(frozen=True)
class FrameHeader:
    """The fields common to every frame kind."""

    kind: int
    flags: int
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]
    numel: int

    @property
    def granularity(self) -> str:
        return "vector" if self.flags & FLAG_VECTOR else "tensor"

    @property
    def reconstruct(self) -> str:
        return "sign" if self.flags & FLAG_SIGN else "affine"

    @property
    def threshold(self) -> str:
        return "zero" if self.flags & FLAG_ZERO else "median"

    @property
    def num_groups(self) -> int:
        return len(self.shapes) if self.granularity == "tensor" else 1

    @property
    def numels(self) -> list[int]:
        out = []
        for shape in self.shapes:
            n = 1
            for s in shape:
                n *= s
            out.append(n)
        return out


def flags_for(update: BinaryUpdate, *, encrypted_scales: bool = False) -> int:
    flags = 0
    if update.granularity == "vector":
        flags |= FLAG_VECTOR
    if update.reconstruct == "sign":
        flags |= FLAG_SIGN
    if update.threshold == "zero":
        flags |= FLAG_ZERO
    if encrypted_scales:
        flags |= FLAG_ENCRYPTED_SCALES
    return flags


def encode_header(kind: int, flags: int, update: BinaryUpdate | FrameHeader) -> bytearray:
    """Header and tensor descriptors of a frame."""
    out = bytearray(
        _HEADER.pack(FRAME_MAGIC, FRAME_VERSION, kind, flags, 0, len(update.shapes), update.numel)
    )
    for i, (shape, dtype) in enumerate(zip(update.shapes, update.dtypes, strict=True)):
        if len(shape) > 255:
            raise ValueError(f"tensor {i} has {len(shape)} dims (the frame allows at most 255)")
        if any(s > _MAX_DIM for s in shape):
            raise ValueError(f"tensor {i} has a dimension above 2**32 - 1: {shape}")
        out += struct.pack(f"<BB{len(shape)}I", _DTYPE_CODES[dtype], len(shape), *shape)
    return out


def scales_bytes(tau: torch.Tensor, alpha: torch.Tensor) -> bytes:
    pairs = torch.stack([tau.float(), alpha.float()], dim=1).numpy()
    return pairs.astype("<f4", copy=False).tobytes()


def finish(frame: bytearray) -> bytes:
    """Append the CRC-32 trailer."""
    frame += _CRC.pack(zlib.crc32(frame))
    return bytes(frame)


def encode_frame(update: BinaryUpdate) -> bytes:
    """Serialise a :class:`BinaryUpdate` to a plaintext frame (``kind = 0``).

    Size: ``20 + Σ_t (2 + 4·ndim_t) + ceil(d/8) + 8·G + 4`` bytes (see :func:`plain_frame_size`).

    Example:
        >>> import torch
        >>> from gradkit.comm import binarize, decode_frame, encode_frame
        >>> b = binarize([torch.randn(1000), torch.randn(10, 10)])
        >>> data = encode_frame(b)
        >>> len(data) == 20 + 6 + 10 + (1100 + 7) // 8 + 2 * 8 + 4
        True
        >>> torch.equal(decode_frame(data).bits, b.bits)
        True

    The format is gradkit's own (no paper): a checked header (magic, version, kind, flags,
    shapes, CRC32) around EdgeDetect's payload of ``ceil(d/8)`` sign bytes plus ``(τ, α)`` per
    group (arXiv:2604.14663's "32×"). docs/comm.md gives the byte layout.
    """
    frame = encode_header(KIND_PLAIN, flags_for(update), update)
    bits = update.bits.detach().cpu().contiguous().numpy()
    frame += np.packbits(bits, bitorder="little").tobytes()
    frame += scales_bytes(update.tau, update.alpha)
    return finish(frame)


def plain_frame_size(shapes: Sequence[Sequence[int]], granularity: str = "tensor") -> int:
    """Length in bytes of the plaintext frame of an update with these tensor shapes.

    Example:
        >>> from gradkit.comm import plain_frame_size
        >>> plain_frame_size([(1000,), (10, 10)])  # 20 + 6 + 10 + ceil(1100/8) + 2·8 + 4
        194
    """
    d = 0
    desc = 0
    for shape in shapes:
        n = 1
        for s in shape:
            n *= int(s)
        d += n
        desc += 2 + 4 * len(shape)
    groups = len(shapes) if granularity == "tensor" else 1
    return _HEADER.size + desc + (d + 7) // 8 + 8 * groups + _CRC.size


class Reader:
    """Bounds-checked sequential reader; errors name the field and the offset."""

    def __init__(self, data: bytes | bytearray | memoryview, what: str = "frame") -> None:
        self.data = memoryview(data).cast("B")
        self.offset = 0
        self.what = what

    def take(self, size: int, field: str) -> memoryview:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise ValueError(
                f"Truncated {self.what}: {field} needs {size} bytes at offset {self.offset}, "
                f"but the {self.what} has {len(self.data)} bytes"
            )
        view = self.data[self.offset : end]
        self.offset = end
        return view

    def unpack(self, fmt: struct.Struct, field: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, field))


def check_crc(data: bytes | bytearray | memoryview, what: str = "frame") -> memoryview:
    """Verify the CRC-32 trailer; return the frame without it."""
    view = memoryview(data).cast("B")
    if len(view) < _HEADER.size + _CRC.size:
        raise ValueError(
            f"Truncated {what}: {len(view)} bytes (a frame has at least {_HEADER.size + _CRC.size})"
        )
    (stored,) = _CRC.unpack(view[-_CRC.size :])
    body = view[: -_CRC.size]
    if zlib.crc32(body) != stored:
        raise ValueError(f"Corrupted {what}: CRC-32 mismatch (bytes altered in transit?)")
    return body


def decode_header(
    reader: Reader,
    *,
    kinds: Sequence[int],
    expected_shapes: Sequence[Sequence[int]] | None = None,
) -> FrameHeader:
    """Parse and validate the header and descriptors of a frame."""
    magic, version, kind, flags, reserved, count, numel = reader.unpack(_HEADER, "header")
    if bytes(magic) != FRAME_MAGIC:
        raise ValueError(f"Not a gradkit frame: magic {bytes(magic)!r} (expected {FRAME_MAGIC!r})")
    if version != FRAME_VERSION:
        raise ValueError(
            f"Unsupported frame version {version} (this gradkit reads version {FRAME_VERSION})"
        )
    if kind not in kinds:
        name = KIND_NAMES.get(kind, f"unknown kind {kind}")
        wanted = " or ".join(KIND_NAMES[k] for k in kinds)
        raise ValueError(f"Wrong frame kind: {name} frame, expected {wanted}")
    if flags & ~_KNOWN_FLAGS:
        raise ValueError(
            f"Invalid frame flags: {flags:#04x} (unknown bits {flags & ~_KNOWN_FLAGS:#04x})"
        )
    if flags & FLAG_ENCRYPTED_SCALES and kind == KIND_PLAIN:
        raise ValueError("Invalid frame flags: encrypted scales flag set on a plaintext frame")
    if reserved != 0:
        raise ValueError(f"Invalid frame: reserved header byte is {reserved} (must be 0)")
    shapes = []
    dtypes = []
    total = 0
    for i in range(count):
        code, ndim = reader.unpack(struct.Struct("<BB"), f"descriptor of tensor {i}")
        if code not in _CODE_DTYPES:
            raise ValueError(f"Invalid frame: unknown dtype code {code} for tensor {i}")
        dims = struct.unpack(f"<{ndim}I", reader.take(4 * ndim, f"shape of tensor {i}"))
        shapes.append(tuple(dims))
        dtypes.append(_CODE_DTYPES[code])
        n = 1
        for s in dims:
            n *= s
        total += n
    if total != numel:
        raise ValueError(
            f"Invalid frame: the tensor shapes hold {total} coordinates but the header says {numel}"
        )
    if expected_shapes is not None:
        expected = [tuple(int(s) for s in shape) for shape in expected_shapes]
        if len(expected) != count:
            raise ValueError(
                f"Frame does not match the model: {count} tensors in the frame, {len(expected)} expected"
            )
        for i, (got, want) in enumerate(zip(shapes, expected, strict=True)):
            if got != want:
                raise ValueError(
                    f"Frame does not match the model: tensor {i} has shape {got}, expected {want}"
                )
    return FrameHeader(
        kind=kind, flags=flags, shapes=tuple(shapes), dtypes=tuple(dtypes), numel=numel
    )


def read_scales(
    reader: Reader, count: int, field: str = "scales"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``count`` (τ, α) float32 pairs; reject non-finite values and negative α."""
    raw = np.frombuffer(reader.take(8 * count, field), dtype="<f4").reshape(count, 2)
    pairs = torch.from_numpy(raw.astype(np.float32))
    if not bool(torch.isfinite(pairs).all()):
        raise ValueError(f"Invalid frame: non-finite (τ, α) in {field}")
    if bool((pairs[:, 1] < 0).any()):
        raise ValueError(f"Invalid frame: negative α in {field}")
    return pairs[:, 0].clone(), pairs[:, 1].clone()


def check_end(reader: Reader) -> None:
    if reader.offset != len(reader.data):
        raise ValueError(
            f"Invalid {reader.what} length: {len(reader.data) - reader.offset} unexpected trailing "
            f"bytes after offset {reader.offset}"
        )


def decode_frame(
    data: bytes | bytearray | memoryview,
    *,
    expected_shapes: Sequence[Sequence[int]] | None = None,
) -> BinaryUpdate:
    """Parse a plaintext frame back into the exact :class:`BinaryUpdate` that was encoded.

    Args:
        data: the frame bytes.
        expected_shapes: optional list of the model's tensor shapes (e.g.
            ``[p.shape for p in model.parameters()]``); a frame for another model is rejected.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: wrong magic, version, kind or flags; truncated or over-long frame; CRC
            mismatch; shape mismatch; non-zero padding bits; non-finite scales or negative α.

    The format is gradkit's own (no paper); docs/comm.md gives the byte layout.

    Example:
        >>> import torch
        >>> from gradkit.comm import binarize, decode_frame, encode_frame
        >>> frame = encode_frame(binarize([torch.tensor([1.0, -1.0, 2.0])], threshold="zero"))
        >>> decode_frame(frame, expected_shapes=[(3,)]).bits.tolist()
        [True, False, True]
        >>> decode_frame(frame[:-1])
        Traceback (most recent call last):
        ...
        ValueError: Invalid frame length: 38 bytes, expected 39 for 3 coordinates in 1 tensors (truncated or trailing bytes)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"Invalid frame: expected bytes, got {type(data).__name__}")
    reader = Reader(data)
    # Parse the header first, so a foreign or truncated frame gets a specific message.
    header = decode_header(reader, kinds=(KIND_PLAIN,), expected_shapes=expected_shapes)
    body_size = (header.numel + 7) // 8 + 8 * header.num_groups
    expected_len = reader.offset + body_size + _CRC.size
    if len(reader.data) != expected_len:
        raise ValueError(
            f"Invalid frame length: {len(reader.data)} bytes, expected {expected_len} for "
            f"{header.numel} coordinates in {len(header.shapes)} tensors (truncated or trailing bytes)"
        )
    check_crc(data)
    packed = np.frombuffer(reader.take((header.numel + 7) // 8, "packed bits"), dtype=np.uint8)
    bits = np.unpackbits(packed, bitorder="little")
    if bits[header.numel :].any():
        raise ValueError("Invalid frame: non-zero padding bits after the last coordinate")
    tau, alpha = read_scales(reader, header.num_groups)
    return BinaryUpdate(
        bits=torch.from_numpy(bits[: header.numel].view(np.bool_).copy()),
        tau=tau,
        alpha=alpha,
        shapes=header.shapes,
        dtypes=header.dtypes,
        threshold=header.threshold,
        granularity=header.granularity,
        reconstruct=header.reconstruct,
    )
