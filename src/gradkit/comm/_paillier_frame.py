"""The Paillier section of an encrypted client frame (``kind = 1``) or aggregate (``kind = 2``):
its layout, parsing, and the consistency checks against the key and the packing plans."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradkit.comm._frame import (
    FLAG_ENCRYPTED_SCALES,
    KIND_AGGREGATE,
    KIND_ENCRYPTED,
    FrameHeader,
    Reader,
    check_crc,
    decode_header,
    read_scales,
)
from gradkit.comm._keys import _ciphertext_bytes, _fingerprint
from gradkit.comm._packing import SCALE_FRAC_BITS, SCALE_VALUE_BITS, PackingPlan

__all__ = ["encrypted_frame_info"]

# num_clients, slot_bits, scale_slot_bits, slots/ct, scale slots/ct, ciphertext bytes,
# key fingerprint, vote ciphertexts, scale ciphertexts, scale frac bits, scale value bits,
# reserved, clients aggregated.
_SECTION = struct.Struct("<IHHIII8sIIBBHI")


@dataclass(frozen=True)
class _Section:
    """The Paillier section of an encrypted client frame or aggregate."""

    num_clients: int
    slot_bits: int
    scale_slot_bits: int
    slots_per_ciphertext: int
    scale_slots_per_ciphertext: int
    ciphertext_bytes: int
    fingerprint: bytes
    vote_ciphertexts: int
    scale_ciphertexts: int
    scale_frac_bits: int
    scale_value_bits: int
    reserved: int
    clients: int

    def pack(self) -> bytes:
        return _SECTION.pack(*dataclasses.astuple(self))


def _read_encrypted(
    data: bytes | bytearray | memoryview,
    kind: int,
    expected_shapes: Sequence[Sequence[int]] | None,
) -> tuple[FrameHeader, _Section, tuple[torch.Tensor, torch.Tensor] | None, list[int], list[int]]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"Invalid frame: expected bytes, got {type(data).__name__}")
    reader = Reader(data)
    header = decode_header(reader, kinds=(kind,), expected_shapes=expected_shapes)
    section = _Section(*reader.unpack(_SECTION, "Paillier section"))
    encrypted_scales = bool(section.scale_ciphertexts)
    if encrypted_scales != bool(header.flags & FLAG_ENCRYPTED_SCALES):
        raise ValueError(
            "Invalid frame: the encrypted-scales flag disagrees with the Paillier section"
        )
    if section.clients < 1 or (kind == KIND_ENCRYPTED and section.clients != 1):
        raise ValueError(f"Invalid frame: client count {section.clients}")
    if section.reserved != 0:
        raise ValueError(
            f"Invalid frame: reserved Paillier field is {section.reserved} (must be 0)"
        )
    n_pairs = header.num_groups * (1 if kind == KIND_ENCRYPTED else section.clients)
    width = section.ciphertext_bytes
    expected_len = (
        reader.offset
        + (0 if encrypted_scales else 8 * n_pairs)
        + width * (section.vote_ciphertexts + section.scale_ciphertexts)
        + 4
    )
    if len(reader.data) != expected_len:
        raise ValueError(
            f"Invalid frame length: {len(reader.data)} bytes, expected {expected_len} "
            "(truncated or trailing bytes)"
        )
    check_crc(data)
    scales = None if encrypted_scales else read_scales(reader, n_pairs)
    raw = reader.take(width * section.vote_ciphertexts, "vote ciphertexts")
    votes = [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]
    raw = reader.take(width * section.scale_ciphertexts, "scale ciphertexts")
    scale_cts = [int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)]
    return header, section, scales, votes, scale_cts


def _check_plan(
    section: _Section, header: FrameHeader, n: int
) -> tuple[PackingPlan, PackingPlan | None]:
    """Rebuild the packing plans a frame claims and check them against the key and shapes."""
    if section.fingerprint != _fingerprint(n):
        raise ValueError("Frame was encrypted under a different public key (fingerprint mismatch)")
    if section.ciphertext_bytes != _ciphertext_bytes(n):
        raise ValueError(
            f"Invalid frame: {section.ciphertext_bytes}-byte ciphertexts, the key needs {_ciphertext_bytes(n)}"
        )
    if 0 in (section.slot_bits, section.slots_per_ciphertext) or (
        section.scale_ciphertexts
        and 0 in (section.scale_slot_bits, section.scale_slots_per_ciphertext)
    ):
        raise ValueError("Invalid frame: zero slot width or slots per ciphertext")
    plan = PackingPlan(
        n.bit_length(), section.num_clients, 1, section.slot_bits, section.slots_per_ciphertext
    )
    if section.vote_ciphertexts != plan.num_ciphertexts(header.numel):
        raise ValueError(
            f"Invalid frame: {section.vote_ciphertexts} vote ciphertexts for {header.numel} "
            f"coordinates (expected {plan.num_ciphertexts(header.numel)})"
        )
    scale_plan = None
    if section.scale_ciphertexts:
        if (section.scale_frac_bits, section.scale_value_bits) != (
            SCALE_FRAC_BITS,
            SCALE_VALUE_BITS,
        ):
            raise ValueError(
                f"Unsupported encrypted-scale format: {section.scale_value_bits}-bit values with "
                f"{section.scale_frac_bits} fraction bits"
            )
        scale_plan = PackingPlan(
            n.bit_length(),
            section.num_clients,
            (1 << SCALE_VALUE_BITS) - 1,
            section.scale_slot_bits,
            section.scale_slots_per_ciphertext,
        )
        if section.scale_ciphertexts != scale_plan.num_ciphertexts(2 * header.num_groups):
            raise ValueError("Invalid frame: wrong number of scale ciphertexts")
    return plan, scale_plan


def encrypted_frame_info(data: bytes) -> dict[str, int]:
    """Counts from an encrypted client frame or aggregate, without decrypting (for accounting).

    Example:
        >>> import torch
        >>> from gradkit.comm import KeyHolder, binarize, encrypt_update, encrypted_frame_info
        >>> key = KeyHolder(2048).public_key
        >>> info = encrypted_frame_info(encrypt_update(binarize([torch.ones(3)]), key, num_clients=3))
        >>> info["kind"], info["numel"], info["clients"], info["ciphertext_bytes"]
        (1, 3, 1, 512)
    """
    reader = Reader(data)
    magic_kind = data[5] if len(data) > 5 else -1
    header = decode_header(reader, kinds=(KIND_ENCRYPTED, KIND_AGGREGATE))
    section = _Section(*reader.unpack(_SECTION, "Paillier section"))
    return {
        "kind": int(magic_kind),
        "numel": header.numel,
        "num_clients": section.num_clients,
        "clients": section.clients,
        "slot_bits": section.slot_bits,
        "slots_per_ciphertext": section.slots_per_ciphertext,
        "ciphertext_bytes": section.ciphertext_bytes,
        "vote_ciphertexts": section.vote_ciphertexts,
        "scale_ciphertexts": section.scale_ciphertexts,
    }


def _same(a: tuple[FrameHeader, _Section], b: tuple[FrameHeader, _Section]) -> None:
    pairs: list[tuple[Any, Any]] = [(a[0], b[0]), (a[1], b[1])]
    for obj_a, obj_b in pairs:
        for field in dataclasses.fields(obj_a):
            value_a, value_b = getattr(obj_a, field.name), getattr(obj_b, field.name)
            if value_a != value_b:
                raise ValueError(
                    f"Inconsistent client payloads: {field.name}={value_b!r}, "
                    f"payload 0 has {value_a!r}"
                )
