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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gradkit.comm._aggregate import AggregateResult, majority_from_counts, median_scale
from gradkit.comm._binarize import BinaryUpdate
from gradkit.comm._frame import (
    KIND_AGGREGATE,
    KIND_ENCRYPTED,
    FrameHeader,
    encode_header,
    finish,
    flags_for,
    scales_bytes,
)
from gradkit.comm._keys import (
    MIN_KEY_BITS,
    _big_int,
    _ciphertext_bytes,
    _fingerprint,
    _modulus,
    _phe,
    load_public_key,
    public_key_bytes,
)
from gradkit.comm._packing import (
    SCALE_FRAC_BITS,
    SCALE_VALUE_BITS,
    InvalidAggregateError,
    PackingPlan,
    _fixed_point,
    _scale_plan,
)
from gradkit.comm._paillier_frame import (
    _check_plan,
    _read_encrypted,
    _same,
    _Section,
    encrypted_frame_info,
)

__all__ = [
    "MIN_KEY_BITS",
    "SCALE_FRAC_BITS",
    "SCALE_VALUE_BITS",
    "InvalidAggregateError",
    "KeyHolder",
    "PackingPlan",
    "SecureAggregator",
    "encrypt_update",
    "encrypted_frame_info",
    "load_public_key",
    "public_key_bytes",
]


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

    Returns:
        The frame bytes: the plaintext header and descriptors, then the packed vote
        ciphertexts (and the scale ciphertexts, or the scales in clear).

    Paper: Paillier, "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes",
    EUROCRYPT 1999 (no arXiv), with the votes packed into slots of one plaintext. Reference
    implementation: python-paillier (``phe`` 1.5), whose ``raw_encrypt`` this uses.

    Deviations: no ``EncodedNumber``. The votes are raw non-negative integers in slots sized so
    that the sum of ``num_clients`` clients never carries across slots or wraps modulo ``n``
    (:class:`PackingPlan`). The threat model is in the module docstring.

    Example:
        >>> import torch
        >>> from gradkit.comm import KeyHolder, binarize, encrypt_update, encrypted_frame_info
        >>> holder = KeyHolder(2048)
        >>> frame = encrypt_update(binarize([torch.randn(1000)]), holder.public_key, num_clients=10)
        >>> info = encrypted_frame_info(frame)
        >>> info["slot_bits"], info["slots_per_ciphertext"], info["vote_ciphertexts"]
        (4, 511, 2)
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


class SecureAggregator:
    """Server side: multiplies the clients' ciphertexts (a homomorphic sum); no private key.

    Args:
        public_key: the shared public key; anything with an int attribute ``n`` (>= 2048 bits)
            works, e.g. the result of :func:`load_public_key` — the server never needs more.

    The server's whole job is the homomorphic sum: the product of the ciphertexts modulo
    ``n²``, which decrypts to the sum of the plaintexts (Paillier, EUROCRYPT 1999; python-paillier's
    ``EncryptedNumber.__add__`` on raw ciphertexts). See the module docstring for the threat
    model.

    Example:
        >>> import torch
        >>> from gradkit.comm import KeyHolder, SecureAggregator, binarize, encrypt_update
        >>> holder = KeyHolder(2048)
        >>> server = SecureAggregator(holder.public_key)
        >>> frames = [encrypt_update(binarize([torch.tensor(v)], threshold="zero"),
        ...                          holder.public_key, num_clients=2)
        ...           for v in ([1.0, -1.0], [1.0, 1.0])]
        >>> holder.decrypt_aggregate(server.aggregate(frames)).plus_counts.tolist()
        [2, 1]
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


class KeyHolder:
    """Owns the Paillier key pair; decrypts only aggregates.

    Args:
        key_bits: modulus size in bits, required unless ``private_key`` is given: at least
            2048 (about 112-bit security); 3072 is phe's own default (about 128-bit).
        min_clients: smallest aggregate it agrees to decrypt (default 2).
        private_key: an existing ``phe`` private key to use instead of generating one.

    Decryption is Paillier's (EUROCRYPT 1999) through python-paillier's ``raw_decrypt``. The
    decrypted aggregate is unpacked into per-coordinate vote counts ``c_j``, and the update is
    ``scale · sign(2c_j − K)`` (:func:`gradkit.comm.majority_vote` on the counts). Deviation
    from a threshold scheme: one party holds the whole private key (``phe`` has no threshold
    decryption), so it must not collude with the server (see the module docstring).

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
        of fewer than ``min_clients`` clients or another key, and its subclass
        :class:`InvalidAggregateError` (naming the slot) for a corrupted or out-of-range
        aggregate, e.g. a slot holding more votes than clients: what a client that encrypted a
        value outside 0/1 produces. The aggregate must then be discarded
        (:class:`gradkit.fed.EdgeDetectStrategy` discards the round and keeps the model by
        default).
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
