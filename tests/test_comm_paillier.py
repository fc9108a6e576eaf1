"""gradkit.comm secure aggregation: packed Paillier votes (python-paillier + gmpy2)."""

from __future__ import annotations

import contextlib
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import phe.util
import pytest
import torch
from phe import paillier

from gradkit.comm import (
    KeyHolder,
    PackingPlan,
    SecureAggregator,
    aggregate,
    binarize,
    client_payload,
    decode_frame,
    encode_frame,
    encrypt_update,
    encrypted_frame_info,
    load_public_key,
    majority_vote,
    plain_frame_size,
    public_key_bytes,
)


@pytest.fixture(scope="module")
def holder() -> KeyHolder:
    return KeyHolder(2048)


@pytest.fixture(scope="module")
def other_holder() -> KeyHolder:
    return KeyHolder(2048)


def _clients(n: int, shapes: list[tuple[int, ...]], seed: int, **kw: object) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [
        binarize([torch.randn(s, generator=gen) for s in shapes], **kw)  # type: ignore[arg-type]
        for _ in range(n)
    ]


def _refresh_crc(frame: bytes | bytearray) -> bytes:
    body = bytes(frame[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def test_phe_uses_gmpy2() -> None:
    assert phe.util.HAVE_GMP


# --------------------------------------------------------------------------------------------
# packing plan and its overflow guard


def test_plan_is_tight_and_guards_overflow() -> None:
    for n, w in [(1, 1), (2, 2), (3, 2), (10, 4), (15, 4), (16, 5), (100, 7)]:
        plan = PackingPlan(2048, n)
        assert plan.slot_bits == w == int(np.ceil(np.log2(n + 1)))
        assert plan.slots_per_ciphertext == 2047 // w
    with pytest.raises(ValueError, match=r"slot_bits=3 cannot hold .* 10 clients .*needs 4 bits"):
        PackingPlan(2048, 10, slot_bits=3)
    with pytest.raises(ValueError, match="Plaintext overflow: 512 slots × 4 bits"):
        PackingPlan(2048, 10, slots_per_ciphertext=512)
    with pytest.raises(ValueError, match="Invalid key_bits: 1024"):
        PackingPlan(1024, 10)
    with pytest.raises(ValueError, match="Invalid num_clients: 0"):
        PackingPlan(2048, 0)
    with pytest.raises(TypeError, match="Invalid num_clients"):
        PackingPlan(2048, 2.5)  # type: ignore[arg-type]
    plan = PackingPlan(2048, 2)  # 2-bit slots, sums up to 2
    with pytest.raises(ValueError, match=r"got \[0, 2\], allowed \[0, 1\]"):
        plan.pack([0, 2])
    with pytest.raises(ValueError, match=r"slot 0 holds 3 > 2 .*discard this round's update"):
        plan.unpack([3], 1)
    # the encrypted frame states N in 32 bits: a larger N is refused before any struct error
    with pytest.raises(
        ValueError, match=r"Invalid num_clients: 1099511627776 \(must be <= 4294967295"
    ):
        PackingPlan(2048, 2**40)
    with pytest.raises(ValueError, match="a plaintext uses 2047 bits, the plan packs 2046"):
        plan.unpack([1 << 2046], 1)


def test_pack_unpack_round_trip_and_sums() -> None:
    rng = np.random.default_rng(0)
    for n, m, count in [(10, 1, 1), (10, 1, 1023), (7, 5, 300), (3, (1 << 72) - 1, 9)]:
        plan = PackingPlan(2048, n, max_value=m)
        # Python ints, so that the 72-bit case (the pure-Python path, slots > 62 bits) fits.
        shift = max(0, m.bit_length() - 62)
        vals = [
            [int(x) << shift for x in rng.integers(0, (m >> shift) + 1, size=count)]
            for _ in range(n)
        ]
        assert max(max(v) for v in vals) > m // 2
        packed = [plan.pack(v) for v in vals]
        assert len(packed[0]) == plan.num_ciphertexts(count)
        assert all(p < 1 << 2047 for p in packed[0])
        back = plan.unpack(packed[0], count, max_slot=m)
        assert [int(x) for x in back] == vals[0]
        # The sum of the packed ints unpacks to the slot-wise sum (no carries between slots).
        sums = [sum(col) for col in zip(*packed, strict=True)]
        total = plan.unpack(sums, count)
        assert [int(x) for x in total] == [sum(v[i] for v in vals) for i in range(count)]


def test_numpy_integers_become_python_ints() -> None:
    """phe issue #116: numpy integers break phe's encoding; the packer hands it Python ints."""
    plan = PackingPlan(np.int64(2048), np.int64(10))  # type: ignore[arg-type]
    assert type(plan.key_bits) is int and type(plan.num_clients) is int
    packed = plan.pack(np.array([1, 0, 1], dtype=np.int64))
    assert [type(m) for m in packed] == [int] and packed == [1 + (1 << 8)]


def test_raw_paillier_sums_wrap_silently_past_n(holder: KeyHolder) -> None:
    """The pitfall the plan guards against: phe's raw sums are modulo n, with no error."""
    pk, n = holder.public_key, holder.public_key.n
    total = paillier.EncryptedNumber(pk, pk.raw_encrypt(n - 1)) + paillier.EncryptedNumber(
        pk, pk.raw_encrypt(2)
    )
    assert holder._private_key.raw_decrypt(total.ciphertext()) == 1


# --------------------------------------------------------------------------------------------
# end-to-end exactness


@pytest.mark.parametrize(
    ("n", "shapes", "all_ones", "granularity"),
    [
        (2, [(1,)], False, "tensor"),
        (3, [(1023,), (5, 5)], False, "vector"),
        (10, [(1200,), ()], False, "tensor"),
        (15, [(600,)], True, "tensor"),  # N = 2^4 − 1: every slot reaches its maximum, 15
        (16, [(520,)], False, "tensor"),  # one more client needs 5-bit slots
    ],
)
def test_encrypted_aggregate_equals_plaintext_aggregate(
    holder: KeyHolder, n: int, shapes: list[tuple[int, ...]], all_ones: bool, granularity: str
) -> None:
    clients = _clients(n, shapes, seed=n, threshold="zero", granularity=granularity)
    if all_ones:
        clients = [
            binarize(
                [torch.rand(s, generator=torch.Generator().manual_seed(k)) + 0.1 for s in shapes],
                threshold="zero",
            )
            for k in range(n)
        ]
        assert all(bool(c.bits.all()) for c in clients)
    frames = [encrypt_update(c, holder.public_key, num_clients=n) for c in clients]
    agg = SecureAggregator(holder.public_key).aggregate(frames, expected_shapes=shapes)
    got = holder.decrypt_aggregate(agg, expected_shapes=shapes)
    want = majority_vote(clients)
    expected_counts = torch.stack([c.bits.long() for c in clients]).sum(dim=0)
    assert torch.equal(got.plus_counts, expected_counts)
    assert torch.equal(got.scale, want.scale)
    for x, y in zip(got.update, want.update, strict=True):
        assert torch.equal(x, y)


def test_client_payload_secure_accounting_and_aggregation(holder: KeyHolder) -> None:
    pk = load_public_key(holder.public_key_bytes())
    gen = torch.Generator().manual_seed(3)
    shapes = [(2000,), (10, 10)]
    pays = [
        client_payload(
            [torch.randn(s, generator=gen) for s in shapes], public_key=pk, num_clients=10
        )
        for _ in range(3)
    ]
    d = 2100
    pay = pays[0]
    assert pay.secure and pay.num_coords == d and pay.float32_bytes == 4 * d
    assert pay.plaintext_bytes == plain_frame_size(shapes)
    info = encrypted_frame_info(pay.data)
    assert info["slot_bits"] == 4 and info["slots_per_ciphertext"] == 511
    assert info["ciphertext_bytes"] == 512 and info["vote_ciphertexts"] == 5
    assert pay.wire_bytes == len(pay.data) >= 5 * 512
    bits_per_coord = 8 * 5 * 512 / d
    assert pay.wire_bytes * 8 / d < bits_per_coord + 1  # header and clear scales are small
    with pytest.raises(ValueError, match="encrypted frame; aggregate it with SecureAggregator"):
        aggregate([pay.data])
    result = holder.decrypt_aggregate(SecureAggregator(pk).aggregate([p.data for p in pays]))
    assert result.num_clients == 3
    assert [u.shape for u in result.update] == [torch.Size(s) for s in shapes]


def test_encrypted_scales_give_the_mean_alpha(holder: KeyHolder) -> None:
    clients = _clients(4, [(300,), (7,)], seed=5, threshold="median")
    frames = [
        encrypt_update(c, holder.public_key, num_clients=4, encrypt_scales=True) for c in clients
    ]
    assert all(encrypted_frame_info(f)["scale_ciphertexts"] == 1 for f in frames)
    clear = [encrypt_update(c, holder.public_key, num_clients=4) for c in clients]
    assert all(struct.pack("<f", float(clients[0].alpha[0])) not in f[:200] for f in frames)
    assert struct.pack("<f", float(clients[0].alpha[0])) in clear[0][:200]
    result = holder.decrypt_aggregate(SecureAggregator(holder.public_key).aggregate(frames))
    mean_alpha = torch.stack([c.alpha.double() for c in clients]).mean(dim=0)
    torch.testing.assert_close(result.scale.double(), mean_alpha, rtol=1e-6, atol=1e-11)
    assert torch.equal(result.plus_counts, majority_vote(clients).plus_counts)


# --------------------------------------------------------------------------------------------
# roles: the server never holds a private key or a plaintext individual update


def test_server_works_with_public_modulus_only_and_sees_only_obfuscated_ciphertexts(
    holder: KeyHolder,
) -> None:
    n_clients = 4
    clients = _clients(n_clients, [(900,)], seed=7, threshold="zero")
    frames = [encrypt_update(c, holder.public_key, num_clients=n_clients) for c in clients]
    # The server is built from an object with nothing but the modulus: no decrypt capability.
    server = SecureAggregator(SimpleNamespace(n=holder.public_key.n))
    for value in vars(server).values():
        assert not isinstance(value, paillier.PaillierPrivateKey)
        assert not hasattr(value, "raw_decrypt")
    agg = server.aggregate(frames)
    assert torch.equal(
        holder.decrypt_aggregate(agg).plus_counts, majority_vote(clients).plus_counts
    )
    # What the server receives are ciphertexts, not the packed plaintexts, and re-encrypting
    # the same update gives different bytes (fresh obfuscation per ciphertext).
    plan = PackingPlan.for_key(holder.public_key, n_clients)
    packed = plan.pack(clients[0].bits.numpy().view(np.uint8))
    width = 512
    body = frames[0][-4 - width * len(packed) : -4]
    received = [int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width)]
    assert len(received) == len(packed) == 2
    assert all(c != m for c, m in zip(received, packed, strict=True))
    assert all(0 < c < holder.public_key.nsquare for c in received)
    assert [holder._private_key.raw_decrypt(c) for c in received] == packed
    again = encrypt_update(clients[0], holder.public_key, num_clients=n_clients)
    assert again != frames[0]


def test_key_holder_decrypts_only_aggregates(holder: KeyHolder) -> None:
    clients = _clients(3, [(50,)], seed=8)
    frames = [encrypt_update(c, holder.public_key, num_clients=3) for c in clients]
    with pytest.raises(ValueError, match="Wrong frame kind: encrypted frame, expected aggregate"):
        holder.decrypt_aggregate(frames[0])
    single = SecureAggregator(holder.public_key).aggregate(frames[:1])
    with pytest.raises(ValueError, match=r"aggregate of 1 client\(s\) \(min_clients=2\)"):
        holder.decrypt_aggregate(single)


def test_server_rejects_bad_payloads(holder: KeyHolder, other_holder: KeyHolder) -> None:
    server = SecureAggregator(holder.public_key)
    clients = _clients(3, [(40,)], seed=9)
    frames = [encrypt_update(c, holder.public_key, num_clients=2) for c in clients]
    with pytest.raises(
        ValueError, match="Too many payloads: 3 clients, but the packing was sized for 2"
    ):
        server.aggregate(frames)
    foreign = encrypt_update(clients[0], other_holder.public_key, num_clients=2)
    with pytest.raises(
        ValueError, match="payload 1: Frame was encrypted under a different public key"
    ):
        server.aggregate([frames[0], foreign])
    other_n = encrypt_update(clients[0], holder.public_key, num_clients=3)
    with pytest.raises(ValueError, match="payload 1: Inconsistent client payloads: num_clients=3"):
        server.aggregate([frames[0], other_n])
    other_shape = encrypt_update(_clients(1, [(41,)], seed=1)[0], holder.public_key, num_clients=2)
    with pytest.raises(ValueError, match="payload 1: Inconsistent client payloads: shapes"):
        server.aggregate([frames[0], other_shape])
    with pytest.raises(
        ValueError, match=r"payload 0: .*tensor 0 has shape \(40,\), expected \(4,\)"
    ):
        server.aggregate(frames[:2], expected_shapes=[(4,)])
    with pytest.raises(ValueError, match="payload 0: Invalid frame length"):
        server.aggregate([frames[0][:-100]])
    zero_ct = bytearray(frames[0])
    zero_ct[-4 - 512 : -4] = bytes(512)
    with pytest.raises(ValueError, match=r"outside \(0, n²\)"):
        server.aggregate([_refresh_crc(zero_ct)])
    with pytest.raises(ValueError, match="Wrong frame kind: plaintext frame"):
        server.aggregate([client_payload([torch.randn(40)]).data])
    with pytest.raises(ValueError, match="no client payloads"):
        server.aggregate([])
    # The key holder rejects an aggregate under another key too.
    agg = server.aggregate(frames[:2])
    with pytest.raises(ValueError, match="different public key"):
        other_holder.decrypt_aggregate(agg)


def test_mutated_frames_raise_only_value_errors(holder: KeyHolder) -> None:
    """Random byte edits, cuts and extensions (mostly with a fixed-up CRC, so the deeper
    checks are reached) never crash a decoder with anything but ValueError."""
    rng = random.Random(0)
    update = binarize(
        [torch.randn(30, generator=torch.Generator().manual_seed(0)), torch.randn(2, 3)]
    )
    enc = encrypt_update(update, holder.public_key, num_clients=3)
    server = SecureAggregator(holder.public_key)
    cases: list[tuple[bytes, Callable[[bytes], object]]] = [
        (encode_frame(update), decode_frame),
        (enc, lambda d: server.aggregate([d])),
        (server.aggregate([enc, enc]), holder.decrypt_aggregate),
        (holder.public_key_bytes(), load_public_key),
    ]
    for data, decode in cases:
        for _ in range(150):
            frame = bytearray(data)
            op = rng.randrange(4)
            if op == 0:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            elif op == 1:
                frame = frame[: rng.randrange(len(frame))]
            elif op == 2:
                frame[rng.randrange(min(len(frame), 90))] = rng.randrange(256)
            else:
                frame += bytes(rng.randrange(1, 9))
            if len(frame) >= 4 and rng.random() < 0.7:
                frame = bytearray(_refresh_crc(frame))
            with contextlib.suppress(ValueError):
                decode(bytes(frame))


def test_key_size_and_key_serialisation(holder: KeyHolder) -> None:
    with pytest.raises(ValueError, match="Invalid key_bits: 1024 \\(must be >= 2048\\)"):
        KeyHolder(1024)
    with pytest.raises(TypeError, match="needs an explicit key_bits"):
        KeyHolder()
    small = SimpleNamespace(n=(1 << 1023) + 1)
    with pytest.raises(ValueError, match="1024-bit modulus \\(must be >= 2048 bits\\)"):
        SecureAggregator(small)
    with pytest.raises(ValueError, match="1024-bit modulus"):
        encrypt_update(_clients(1, [(3,)], 0)[0], small, num_clients=2)
    with pytest.raises(TypeError, match="expected a phe PaillierPublicKey"):
        SecureAggregator("not a key")
    with pytest.raises(ValueError, match="the modulus is even"):
        SecureAggregator(SimpleNamespace(n=1 << 2047))
    data = public_key_bytes(holder.public_key)
    assert len(data) == 9 + 256
    assert load_public_key(data) == holder.public_key
    with pytest.raises(ValueError, match="Not a gradkit public key"):
        load_public_key(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="Truncated public key"):
        load_public_key(data[:-1])
    with pytest.raises(ValueError, match="1024-bit modulus"):
        load_public_key(struct.pack("<4sBI", b"GKPK", 1, 128) + small.n.to_bytes(128, "big"))
    copy = KeyHolder(private_key=holder._private_key)
    assert copy.public_key == holder.public_key and copy.key_bits == 2048


def test_client_payload_argument_checks(holder: KeyHolder) -> None:
    with pytest.raises(ValueError, match="num_clients is required"):
        client_payload([torch.randn(3)], public_key=holder.public_key)
    with pytest.raises(ValueError, match="need a public_key"):
        client_payload([torch.randn(3)], num_clients=3)


def test_import_without_phe_gives_a_clear_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['phe'] = None\n"
        "import gradkit.comm as c\n"
        "import torch\n"
        "c.client_payload([torch.randn(5)])\n"
        "try:\n"
        "    c.KeyHolder(2048)\n"
        "except ImportError as e:\n"
        "    print('IMPORT-ERROR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "IMPORT-ERROR" in out.stdout
    assert "pip install 'gradkit[he]'" in out.stdout


def _malicious_pack(value: int) -> Callable[..., list[int]]:
    """A client's PackingPlan.pack that writes ``value`` into vote slot 0 (no range check)."""

    def pack(self: PackingPlan, values: object) -> list[int]:
        ints = [int(v) for v in np.asarray(values).reshape(-1)]
        if self.max_value == 1:  # the vote plan, not the scales
            ints[0] = value
        w, k = self.slot_bits, self.slots_per_ciphertext
        return [
            sum(v << (j * w) for j, v in enumerate(ints[c : c + k])) for c in range(0, len(ints), k)
        ]

    return pack


def test_a_malicious_clients_vote_outside_0_1(
    holder: KeyHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The threat model (README, docs/comm.md): honest clients. A client that encrypts 15 in a
    # 0/1 slot is not seen by the server; the key holder refuses the aggregate when the slot
    # exceeds N (saying why), but a smaller lie (5) decodes to a plausible, distorted count.
    n, shape = 10, (8,)
    honest = [
        binarize([torch.linspace(-1.0, 1.0, 8) + 0.01 * k], threshold="zero") for k in range(n - 1)
    ]
    assert not any(bool(c.bits[0]) for c in honest)  # every honest vote in slot 0 is 0
    frames = [encrypt_update(c, holder.public_key, num_clients=n) for c in honest]
    for lie, refused in ((15, True), (5, False)):
        with monkeypatch.context() as patch:
            patch.setattr(PackingPlan, "pack", _malicious_pack(lie))
            evil = encrypt_update(honest[0], holder.public_key, num_clients=n)
        agg = SecureAggregator(holder.public_key).aggregate(
            [*frames, evil], expected_shapes=[shape]
        )
        if refused:
            with pytest.raises(ValueError, match=r"slot 0 holds 15 > 10 .*no range proofs"):
                holder.decrypt_aggregate(agg, expected_shapes=[shape])
        else:
            got = holder.decrypt_aggregate(agg, expected_shapes=[shape])
            assert int(got.plus_counts[0]) == lie  # accepted: the documented limitation
