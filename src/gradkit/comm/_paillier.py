"""Secure aggregation of 1-bit votes with packed Paillier encryption (python-paillier ``phe``).

Roles and threat model (systems spec §1(a)5, §2; honest-but-curious parties):

* **Clients** share one public key. Each maps its bits to ``{0, 1}``, packs many of them into one
  Paillier plaintext (:class:`PackingPlan`) and sends only ciphertexts (:func:`encrypt_update`).
* **The server** (:class:`SecureAggregator`) holds the public key only. It multiplies the clients'
  ciphertexts modulo ``n²`` (a homomorphic sum) and never sees a plaintext individual update.
* **The key holder** (:class:`KeyHolder`) owns the private key and decrypts only the aggregate
  frame the server produces, obtaining per-coordinate vote counts ``c_j``. It refuses aggregates of
  fewer than ``min_clients`` clients (default 2). That count is written by the server, so this is
  a safeguard against mistakes, not a cryptographic guarantee.
* A key holder that colludes with the server can decrypt individual ciphertexts: ``phe`` has no
  threshold decryption. Keep the key holder separate from the server (e.g. a client that is not
  the aggregator, or a trusted decryptor).

Leakage: by default the per-group ``(τ, α)`` float32 pairs travel in clear (``G`` numbers per
client, one per tensor) — they reveal each client's update magnitude per tensor, not its
coordinates. With ``encrypt_scales=True`` they are encrypted as fixed-point integers
(``round(x·2^40) + 2^71``, a non-negative 72-bit integer, so ``|x| < 2^31`` at resolution
``2^-40``); then the key holder only learns ``Σ_k τ_k`` and ``Σ_k α_k``, and the majority rule
uses the mean ``α`` instead of the median.

Encoding choices (reliability checklist D):

* No ``EncodedNumber`` is used: votes are raw non-negative integers (exponent fixed at 0 for every
  party, so no exponent is sent or leaked) encrypted with ``PaillierPublicKey.raw_encrypt``, which
  multiplies by a fresh obfuscator ``r^n mod n²`` per ciphertext (``r`` from ``SystemRandom``).
  The fixed-point scales use one public constant scale ``2^-40`` for every party.
* Slot width ``w = bitlen(N·M)`` (``= ⌈log2(N·M + 1)⌉``; ``M = 1`` for votes) holds the sum of
  ``N`` clients' slot values exactly, so no carry can cross slots; no extra margin is needed
  because the bound is exact and the server refuses more than ``N`` payloads.
  Slots per ciphertext ``k = ⌊(bitlen(n) − 1)/w⌋``, so the packed sum is ``< 2^{k·w} ≤ 2^{bitlen(n)−1}
  ≤ n`` and never wraps modulo ``n`` (phe would wrap silently). :class:`PackingPlan` refuses any
  configuration that breaks either bound.
* Ciphertexts go on the wire as fixed-width big-endian integers of ``⌈2·bitlen(n)/8⌉`` bytes
  (512 bytes for a 2048-bit key): 1 ciphertext carries ``k`` coordinates in ``2·bitlen(n)`` bits,
  i.e. ``≈ 2w`` bits per coordinate (8 at N = 10 vs 32 for float32 — 4×, not the 32× of the
  plaintext frame).

Key size: at least 2048 bits (about 112-bit security, not post-quantum); smaller keys are
rejected with ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gradkit.comm._aggregate import AggregateResult, majority_from_counts, median_scale
from gradkit.comm._binarize import BinaryUpdate
from gradkit.comm._frame import (
    FLAG_ENCRYPTED_SCALES,
    KIND_AGGREGATE,
    KIND_ENCRYPTED,
    FrameHeader,
    Reader,
    check_crc,
    check_end,
    decode_header,
    encode_header,
    finish,
    flags_for,
    read_scales,
    scales_bytes,
)

__all__ = [
    "MIN_KEY_BITS",
    "SCALE_FRAC_BITS",
    "SCALE_VALUE_BITS",
    "KeyHolder",
    "PackingPlan",
    "SecureAggregator",
    "encrypt_update",
    "encrypted_frame_info",
    "load_public_key",
    "public_key_bytes",
]

#: Smallest accepted Paillier modulus, in bits.
MIN_KEY_BITS = 2048
#: Fixed-point fraction bits of encrypted scales (resolution 2^-40 ≈ 9.1e-13).
SCALE_FRAC_BITS = 40
#: Bits of one offset fixed-point scale value: ``|x| < 2^(72 - 1 - 40) = 2^31``.
SCALE_VALUE_BITS = 72

_HE_HINT = "pip install 'gradkit[he]'"
_PK_MAGIC = b"GKPK"
_PK_HEADER = struct.Struct("<4sBI")
# num_clients, slot_bits, scale_slot_bits, slots/ct, scale slots/ct, ciphertext bytes,
# key fingerprint, vote ciphertexts, scale ciphertexts, scale frac bits, scale value bits,
# reserved, clients aggregated.
_SECTION = struct.Struct("<IHHIII8sIIBBHI")


def _phe() -> ModuleType:
    """Import ``phe.paillier`` lazily, with a clear message when the extra is missing."""
    try:
        import phe.util
        from phe import paillier
    except ImportError as err:  # pragma: no cover - the he extra is installed in CI
        raise ImportError(
            f"gradkit.comm secure aggregation needs python-paillier (phe) and gmpy2: {_HE_HINT}"
        ) from err
    if not phe.util.HAVE_GMP:  # pragma: no cover - gmpy2 is installed in CI
        warnings.warn(
            f"gmpy2 is not installed: Paillier runs about 8x slower ({_HE_HINT})",
            RuntimeWarning,
            stacklevel=3,
        )
    return paillier


def _big_int() -> Callable[[int], Any]:
    """``gmpy2.mpz`` when available (products mod n² about 3x faster than Python ints)."""
    try:
        from gmpy2 import mpz
    except ImportError:  # pragma: no cover - gmpy2 is installed in CI
        return int
    return mpz


def _modulus(public_key: Any, who: str) -> int:
    n = getattr(public_key, "n", None)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 1:
        raise TypeError(
            f"Invalid public key for {who}: expected a phe PaillierPublicKey (an object with an "
            f"int attribute n), got {type(public_key).__name__}"
        )
    if n.bit_length() < MIN_KEY_BITS:
        raise ValueError(
            f"Invalid public key for {who}: {n.bit_length()}-bit modulus (must be >= {MIN_KEY_BITS} bits)"
        )
    return n


def _fingerprint(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).digest()[:8]


def _ciphertext_bytes(n: int) -> int:
    return (2 * n.bit_length() + 7) // 8


@dataclass(frozen=True)
class PackingPlan:
    """How ``N`` clients' non-negative integers (each ``<= max_value``) share Paillier plaintexts.

    ``slot_bits`` and ``slots_per_ciphertext`` default to the tightest safe values; explicit
    values are checked. ``ValueError`` is raised when ``num_clients × max_value`` does not fit a
    slot, or when a packed sum could reach ``n`` (``slots_per_ciphertext × slot_bits >
    key_bits − 1``): phe would wrap it silently modulo ``n``.

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
                raise ValueError(
                    f"Corrupted or overflowed aggregate: a plaintext uses {int(m).bit_length()} bits, "
                    f"the plan packs {k * w}"
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
            raise ValueError(f"Corrupted or overflowed aggregate: a slot holds {big[0]} > {limit}")
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


def _encrypt_ints(public_key: Any, plaintexts: Sequence[int], width: int) -> bytes:
    out = bytearray()
    for m in plaintexts:
        # raw_encrypt multiplies by a fresh obfuscator r^n mod n^2 (r from SystemRandom).
        out += int(public_key.raw_encrypt(m)).to_bytes(width, "big")
    return bytes(out)


def encrypt_update(
    update: BinaryUpdate,
    public_key: Any,
    *,
    num_clients: int,
    encrypt_scales: bool = False,
) -> bytes:
    """Client side: the encrypted frame (``kind = 1``) of a binarised update.

    Args:
        update: the client's :class:`BinaryUpdate`.
        public_key: the shared ``phe.paillier.PaillierPublicKey`` (>= 2048 bits).
        num_clients: the largest number of clients whose payloads will be summed (sets the slot
            width); the server refuses more payloads than this.
        encrypt_scales: encrypt ``(τ, α)`` as fixed-point instead of sending them in clear.
    """
    if not isinstance(update, BinaryUpdate):
        raise TypeError(
            f"encrypt_update expects a BinaryUpdate (from binarize), got {type(update).__name__}"
        )
    _phe()
    n = _modulus(public_key, "encrypt_update")
    plan = PackingPlan(n.bit_length(), num_clients)
    width = _ciphertext_bytes(n)
    vote_cts = plan.num_ciphertexts(update.numel)
    scale_plan = _scale_plan(n.bit_length(), num_clients)
    scale_values = torch.stack([update.tau, update.alpha], dim=1).reshape(-1)
    scale_cts = scale_plan.num_ciphertexts(scale_values.numel()) if encrypt_scales else 0
    section = _Section(
        num_clients=plan.num_clients,
        slot_bits=plan.slot_bits,
        scale_slot_bits=scale_plan.slot_bits if encrypt_scales else 0,
        slots_per_ciphertext=plan.slots_per_ciphertext,
        scale_slots_per_ciphertext=scale_plan.slots_per_ciphertext if encrypt_scales else 0,
        ciphertext_bytes=width,
        fingerprint=_fingerprint(n),
        vote_ciphertexts=vote_cts,
        scale_ciphertexts=scale_cts,
        scale_frac_bits=SCALE_FRAC_BITS if encrypt_scales else 0,
        scale_value_bits=SCALE_VALUE_BITS if encrypt_scales else 0,
        reserved=0,
        clients=1,
    )
    frame = encode_header(
        KIND_ENCRYPTED, flags_for(update, encrypted_scales=encrypt_scales), update
    )
    frame += section.pack()
    if not encrypt_scales:
        frame += scales_bytes(update.tau, update.alpha)
    votes = update.bits.detach().cpu().numpy().view(np.uint8)
    frame += _encrypt_ints(public_key, plan.pack(votes), width)
    if encrypt_scales:
        frame += _encrypt_ints(public_key, scale_plan.pack(_fixed_point(scale_values)), width)
    return finish(frame)


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
    """Counts from an encrypted client frame or aggregate, without decrypting (for accounting)."""
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


class SecureAggregator:
    """Server side: multiplies the clients' ciphertexts (a homomorphic sum); no private key.

    Args:
        public_key: the shared public key; anything with an int attribute ``n`` (>= 2048 bits)
            works, e.g. the result of :func:`load_public_key` — the server never needs more.
    """

    def __init__(self, public_key: Any) -> None:
        _phe()
        self.n = _modulus(public_key, "SecureAggregator")

    def aggregate(
        self,
        payloads: Sequence[bytes],
        *,
        expected_shapes: Sequence[Sequence[int]] | None = None,
    ) -> bytes:
        """Combine encrypted client frames into one encrypted aggregate frame (``kind = 2``).

        Raises ``ValueError`` (message starting with the payload index) for a malformed frame, a
        frame under another key, clients that disagree on shapes/flags/packing, more payloads
        than the packing's ``num_clients`` (their vote sums could overflow a slot), or a
        ciphertext outside ``(0, n²)``.
        """
        if len(payloads) == 0:
            raise ValueError("Nothing to aggregate: no client payloads")
        big = _big_int()
        nsquare = big(self.n * self.n)
        first: tuple[FrameHeader, _Section] | None = None
        totals: list[Any] = []
        clear: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, data in enumerate(payloads):
            try:
                header, section, scales, votes, scale_cts = _read_encrypted(
                    data, KIND_ENCRYPTED, expected_shapes
                )
                _check_plan(section, header, self.n)
                if first is None:
                    first = (header, section)
                    if len(payloads) > section.num_clients:
                        raise ValueError(
                            f"Too many payloads: {len(payloads)} clients, but the packing was "
                            f"sized for {section.num_clients} (the vote sums could overflow a slot)"
                        )
                else:
                    _same(first, (header, section))
                cts = votes + scale_cts
                if not all(0 < c < nsquare for c in cts):
                    raise ValueError("a ciphertext is outside (0, n²)")
            except ValueError as err:
                raise ValueError(f"payload {k}: {err}") from err
            if scales is not None:
                clear.append(scales)
            # The homomorphic sum: a product of ciphertexts modulo n².
            if k == 0:
                totals = [big(c) for c in cts]
            else:
                totals = [a * c % nsquare for a, c in zip(totals, cts, strict=True)]
        if first is None:  # pragma: no cover - payloads is non-empty (checked above)
            raise ValueError("Nothing to aggregate: no client payloads")
        header, section = first
        out = encode_header(KIND_AGGREGATE, header.flags, header)
        out += dataclasses.replace(section, clients=len(payloads)).pack()
        for tau, alpha in clear:
            out += scales_bytes(tau, alpha)
        width = section.ciphertext_bytes
        for c in totals:
            out += int(c).to_bytes(width, "big")
        return finish(out)

    def __repr__(self) -> str:
        return f"SecureAggregator(key_bits={self.n.bit_length()})"


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


class KeyHolder:
    """Owns the Paillier key pair; decrypts only aggregates.

    Args:
        key_bits: modulus size in bits, required unless ``private_key`` is given: at least
            2048 (about 112-bit security); 3072 is phe's own default (about 128-bit).
        min_clients: smallest aggregate it agrees to decrypt (default 2).
        private_key: an existing ``phe`` private key to use instead of generating one.

    Example:
        >>> import torch
        >>> from gradkit.comm import KeyHolder, SecureAggregator, binarize, encrypt_update
        >>> holder = KeyHolder(2048)
        >>> server = SecureAggregator(holder.public_key)
        >>> ups = [binarize([torch.tensor(v)], threshold="zero")
        ...        for v in ([1.0, -1.0, 2.0], [1.0, 1.0, -2.0], [3.0, -1.0, -2.0])]
        >>> frames = [encrypt_update(u, holder.public_key, num_clients=3) for u in ups]
        >>> result = holder.decrypt_aggregate(server.aggregate(frames))
        >>> result.plus_counts.tolist()
        [3, 1, 1]
    """

    def __init__(
        self, key_bits: int | None = None, *, min_clients: int = 2, private_key: Any = None
    ) -> None:
        paillier = _phe()
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise ValueError(f"Invalid min_clients: {min_clients!r} (must be an int >= 1)")
        self.min_clients = min_clients
        if private_key is None:
            if key_bits is None:
                raise TypeError(
                    f"KeyHolder needs an explicit key_bits (>= {MIN_KEY_BITS}; 3072 is phe's "
                    "own default) or an existing private_key"
                )
            if isinstance(key_bits, bool) or not isinstance(key_bits, int):
                raise TypeError(f"Invalid key_bits: {key_bits!r} (expected an int)")
            if key_bits < MIN_KEY_BITS:
                raise ValueError(f"Invalid key_bits: {key_bits} (must be >= {MIN_KEY_BITS})")
            public_key, private_key = paillier.generate_paillier_keypair(n_length=key_bits)
        else:
            if not isinstance(private_key, paillier.PaillierPrivateKey):
                raise TypeError(
                    f"Invalid private_key: expected a phe PaillierPrivateKey, got {type(private_key).__name__}"
                )
            public_key = private_key.public_key
            _modulus(public_key, "KeyHolder")
        self.public_key = public_key
        self._private_key = private_key

    @property
    def key_bits(self) -> int:
        return int(self.public_key.n.bit_length())

    def public_key_bytes(self) -> bytes:
        """The public key for the wire (see :func:`public_key_bytes`)."""
        return public_key_bytes(self.public_key)

    def decrypt_aggregate(
        self,
        data: bytes,
        *,
        expected_shapes: Sequence[Sequence[int]] | None = None,
    ) -> AggregateResult:
        """Decrypt an aggregate frame into vote counts and the majority-vote update.

        The update is ``scale_g · sign(2c − K)`` for ``K`` aggregated clients, with ``scale`` the
        median of the clients' clear ``α`` (or ``Σ_k α_k / K`` when the scales were encrypted).

        Raises ``ValueError`` for a client frame (only aggregates are decrypted), an aggregate
        of fewer than ``min_clients`` clients, another key, or a corrupted/overflowed aggregate.
        """
        n = self.public_key.n
        header, section, clear, votes, scale_cts = _read_encrypted(
            data, KIND_AGGREGATE, expected_shapes
        )
        plan, scale_plan = _check_plan(section, header, n)
        clients = section.clients
        if clients < self.min_clients:
            raise ValueError(
                f"Refusing to decrypt an aggregate of {clients} client(s) (min_clients={self.min_clients})"
            )
        if clients > section.num_clients:
            raise ValueError(
                f"Invalid aggregate: {clients} clients for a plan of {section.num_clients}"
            )
        raw = self._private_key.raw_decrypt
        counts = plan.unpack([raw(c) for c in votes], header.numel, max_slot=clients)
        plus_counts = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.int64))
        if clear is not None:
            scale = median_scale(clear[1].reshape(clients, header.num_groups))
        elif scale_plan is not None:
            offset = clients << (SCALE_VALUE_BITS - 1)
            sums = scale_plan.unpack(
                [raw(c) for c in scale_cts],
                2 * header.num_groups,
                max_slot=clients * scale_plan.max_value,
            )
            values = [(int(s) - offset) / 2.0**SCALE_FRAC_BITS for s in sums]
            scale = torch.tensor(values[1::2], dtype=torch.float64).div(clients).float()
        else:  # pragma: no cover - _read_encrypted returns clear scales or scale ciphertexts
            raise ValueError("Invalid aggregate: no scales")
        return majority_from_counts(plus_counts, clients, scale, header)

    def __repr__(self) -> str:
        return f"KeyHolder(key_bits={self.key_bits}, min_clients={self.min_clients})"


def public_key_bytes(public_key: Any) -> bytes:
    """Serialise a public key: ``b"GKPK"``, ``version u8 = 1``, ``length L u32`` (LE), then ``n``
    as ``L`` big-endian bytes (``g = n + 1`` is implied, as in phe)."""
    n = _modulus(public_key, "public_key_bytes")
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return _PK_HEADER.pack(_PK_MAGIC, 1, len(body)) + body


def load_public_key(data: bytes) -> Any:
    """Parse :func:`public_key_bytes` into a ``phe.paillier.PaillierPublicKey``."""
    paillier = _phe()
    reader = Reader(data, "public key")
    magic, version, length = reader.unpack(_PK_HEADER, "public key header")
    if bytes(magic) != _PK_MAGIC:
        raise ValueError(
            f"Not a gradkit public key: magic {bytes(magic)!r} (expected {_PK_MAGIC!r})"
        )
    if version != 1:
        raise ValueError(f"Unsupported public key version {version}")
    n = int.from_bytes(reader.take(length, "modulus"), "big")
    check_end(reader)
    public_key = paillier.PaillierPublicKey(n)
    _modulus(public_key, "load_public_key")
    return public_key
