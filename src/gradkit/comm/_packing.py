"""Packing many small non-negative integers (votes, fixed-point scales) into one Paillier
plaintext, with the bounds that keep a homomorphic sum from carrying across slots or wrapping
modulo ``n`` (see :mod:`gradkit.comm._paillier` for the encoding choices)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradkit.comm._keys import MIN_KEY_BITS, _modulus

__all__ = ["SCALE_FRAC_BITS", "SCALE_VALUE_BITS", "InvalidAggregateError", "PackingPlan"]

#: Fixed-point fraction bits of encrypted scales (resolution 2^-40 ≈ 9.1e-13).
SCALE_FRAC_BITS = 40
#: Bits of one offset fixed-point scale value: ``|x| < 2^(72 - 1 - 40) = 2^31``.
SCALE_VALUE_BITS = 72


#: The largest client count an encrypted frame can state (a 32-bit field).
MAX_CLIENTS = 2**32 - 1


class InvalidAggregateError(ValueError):
    """A decrypted aggregate that honest clients cannot produce: a slot above its bound, or a
    plaintext with bits above the last slot.

    Its cause is a client that encrypted a value outside the allowed range (malicious or
    faulty: the protocol assumes honest clients and has no range proofs), or more payloads
    summed than the packing allows. The aggregate must not be used.

    Attributes:
        slot: the first offending slot (the coordinate index for votes), or ``None`` when a
            plaintext overflowed the packing as a whole.
        value: the value that slot holds (or the plaintext's bit length when ``slot`` is None).
        limit: the largest value an honest aggregate can hold in a slot.
    """

    def __init__(self, message: str, *, slot: int | None, value: int, limit: int) -> None:
        super().__init__(message)
        self.slot = slot
        self.value = value
        self.limit = limit


@dataclass(frozen=True)
class PackingPlan:
    """How ``N`` clients' non-negative integers (each ``<= max_value``) share Paillier plaintexts.

    ``slot_bits`` and ``slots_per_ciphertext`` default to the tightest safe values; explicit
    values are checked. ``ValueError`` is raised when ``num_clients × max_value`` does not fit a
    slot, or when a packed sum could reach ``n`` (``slots_per_ciphertext × slot_bits >
    key_bits − 1``): phe would wrap it silently modulo ``n``.

    Packing: ``m = Σ_j v_j·2^{j·w}`` with slot width ``w = bitlen(N·max_value)``, so the sum of
    ``N`` packed plaintexts is the packed sum and never carries across slots. This is the
    standard slot packing of additive HE (e.g. the packed Paillier of secure-aggregation
    papers); no reference code is followed. There is no deviation from exact integer
    arithmetic: every bound is checked, not assumed.

    Example:
        >>> from gradkit.comm import PackingPlan
        >>> plan = PackingPlan(key_bits=2048, num_clients=10)
        >>> plan.slot_bits, plan.slots_per_ciphertext
        (4, 511)
        >>> plan.unpack(plan.pack([1, 0, 1]), 3).tolist()
        [1, 0, 1]
    """

    key_bits: int
    num_clients: int
    max_value: int = 1
    slot_bits: int = 0
    slots_per_ciphertext: int = 0

    def __post_init__(self) -> None:
        for name in ("key_bits", "num_clients", "max_value", "slot_bits", "slots_per_ciphertext"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"Invalid {name}: {value!r} (expected an int)")
            object.__setattr__(self, name, int(value))
        if self.key_bits < MIN_KEY_BITS:
            raise ValueError(f"Invalid key_bits: {self.key_bits} (must be >= {MIN_KEY_BITS})")
        if self.num_clients < 1:
            raise ValueError(f"Invalid num_clients: {self.num_clients} (must be >= 1)")
        if self.num_clients > MAX_CLIENTS:
            raise ValueError(
                f"Invalid num_clients: {self.num_clients} (must be <= {MAX_CLIENTS}: the "
                "encrypted frame stores it in 32 bits)"
            )
        if self.max_value < 1:
            raise ValueError(f"Invalid max_value: {self.max_value} (must be >= 1)")
        need = (self.num_clients * self.max_value).bit_length()
        if self.slot_bits == 0:
            object.__setattr__(self, "slot_bits", need)
        if self.slot_bits < need:
            raise ValueError(
                f"Slot overflow: slot_bits={self.slot_bits} cannot hold the sum of "
                f"{self.num_clients} clients × max value {self.max_value} = "
                f"{self.num_clients * self.max_value} (needs {need} bits)"
            )
        capacity = (self.key_bits - 1) // self.slot_bits
        if capacity < 1:
            raise ValueError(f"slot_bits={self.slot_bits} does not fit a {self.key_bits}-bit key")
        if self.slots_per_ciphertext == 0:
            object.__setattr__(self, "slots_per_ciphertext", capacity)
        if not 1 <= self.slots_per_ciphertext <= capacity:
            raise ValueError(
                f"Plaintext overflow: {self.slots_per_ciphertext} slots × {self.slot_bits} bits = "
                f"{self.slots_per_ciphertext * self.slot_bits} bits could reach n (a "
                f"{self.key_bits}-bit key allows at most {capacity} slots of {self.slot_bits} bits)"
            )

    @classmethod
    def for_key(cls, public_key: Any, num_clients: int, max_value: int = 1) -> PackingPlan:
        """The tightest plan for a phe public key (``key_bits = n.bit_length()``)."""
        return cls(_modulus(public_key, "PackingPlan").bit_length(), num_clients, max_value)

    def num_ciphertexts(self, count: int) -> int:
        """Ciphertexts needed for ``count`` values."""
        return -(-count // self.slots_per_ciphertext)

    def pack(self, values: Any) -> list[int]:
        """Pack a 1-D sequence of ints in ``[0, max_value]`` into plaintext ints
        ``m = Σ_j v_j·2^{j·w}`` (slot 0 in the lowest bits)."""
        w, k = self.slot_bits, self.slots_per_ciphertext
        if w > 62:
            ints = [int(v) for v in values]
            self._check_range(min(ints, default=0), max(ints, default=0))
            return [
                sum(v << (j * w) for j, v in enumerate(ints[c : c + k]))
                for c in range(0, len(ints), k)
            ]
        arr = np.asarray(values, dtype=np.int64).reshape(-1)
        if arr.size:
            self._check_range(int(arr.min()), int(arr.max()))
        count = self.num_ciphertexts(arr.size)
        padded = np.zeros(count * k, dtype=np.int64)
        padded[: arr.size] = arr
        if self.max_value == 1:
            bits = np.zeros((count * k, w), dtype=np.uint8)
            bits[:, 0] = padded
        else:
            bits = ((padded[:, None] >> np.arange(w, dtype=np.int64)) & 1).astype(np.uint8)
        packed = np.packbits(bits.reshape(count, k * w), axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def _check_range(self, lo: int, hi: int) -> None:
        if lo < 0 or hi > self.max_value:
            raise ValueError(
                f"Value out of the plan's range: got [{lo}, {hi}], allowed [0, {self.max_value}]"
            )

    def unpack(
        self, plaintexts: Sequence[int], count: int, *, max_slot: int | None = None
    ) -> np.ndarray:
        """Inverse of :meth:`pack` (also for sums of packed values): the first ``count`` slots.

        ``max_slot`` (default ``num_clients × max_value``) bounds every decoded slot; a larger
        value, or a plaintext with bits above the last slot, raises ``ValueError`` (a corrupted
        or overflowed aggregate). Returns int64 (``object`` ints when slots exceed 62 bits).
        """
        w, k = self.slot_bits, self.slots_per_ciphertext
        limit = self.num_clients * self.max_value if max_slot is None else max_slot
        if len(plaintexts) != self.num_ciphertexts(count):
            raise ValueError(
                f"Expected {self.num_ciphertexts(count)} plaintexts for {count} values, got {len(plaintexts)}"
            )
        top = 1 << (k * w)
        for m in plaintexts:
            if not 0 <= m < top:
                raise InvalidAggregateError(
                    f"Corrupted or overflowed aggregate: a plaintext uses {int(m).bit_length()} bits, "
                    f"the plan packs {k * w}. A client encrypted a value outside [0, "
                    f"{self.max_value}] (malicious or corrupted: the protocol assumes honest "
                    "clients and has no range proofs), or more payloads were summed than the "
                    "plan allows. The aggregate was not used: discard this round's update and "
                    "keep the model.",
                    slot=None,
                    value=int(m).bit_length(),
                    limit=limit,
                )
        if w > 62:
            mask = (1 << w) - 1
            out = np.array(
                [(m >> (j * w)) & mask for m in plaintexts for j in range(k)][:count], dtype=object
            )
            big = [int(v) for v in out if v > limit]
        else:
            nbytes = (k * w + 7) // 8
            raw = np.frombuffer(
                b"".join(m.to_bytes(nbytes, "little") for m in plaintexts), np.uint8
            )
            bits = np.unpackbits(raw.reshape(len(plaintexts), nbytes), axis=1, bitorder="little")
            bits = bits[:, : k * w].reshape(-1, w).astype(np.int64)
            out = (bits @ (np.int64(1) << np.arange(w, dtype=np.int64)))[:count]
            big = [int(out.max())] if out.size and out.max() > limit else []
        if big:
            slot = next(i for i, v in enumerate(out.tolist()) if int(v) == big[0])
            raise InvalidAggregateError(
                f"Out-of-range aggregate: slot {slot} holds {big[0]} > {limit} (= clients × "
                f"largest allowed value). A client encrypted a value outside [0, "
                f"{self.max_value}] (malicious or corrupted: the protocol assumes honest clients "
                "and has no range proofs), or more payloads were summed than the plan allows. "
                "The aggregate was not used: discard this round's update and keep the model.",
                slot=slot,
                value=big[0],
                limit=limit,
            )
        return out


def _scale_plan(n_bits: int, num_clients: int) -> PackingPlan:
    return PackingPlan(n_bits, num_clients, max_value=(1 << SCALE_VALUE_BITS) - 1)


def _fixed_point(values: torch.Tensor) -> list[int]:
    offset = 1 << (SCALE_VALUE_BITS - 1)
    limit = 2.0 ** (SCALE_VALUE_BITS - 1 - SCALE_FRAC_BITS)
    out = []
    for x in values.double().tolist():
        if not abs(x) < limit:
            raise ValueError(
                f"Scale {x!r} is outside the encrypted fixed-point range (|x| < {limit:g})"
            )
        out.append(round(x * 2.0**SCALE_FRAC_BITS) + offset)
    return out
