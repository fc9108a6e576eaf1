"""gradkit.comm: 1-bit binarisation, the wire frame, error feedback and plaintext aggregation."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
import torch

from gradkit.comm import (
    BinaryUpdate,
    ErrorFeedback,
    aggregate,
    binarize,
    client_payload,
    decode_frame,
    encode_frame,
    majority_vote,
    mean_reconstruction,
    plain_frame_size,
    reconstruct,
    sign_disagreement,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _equal_updates(a: BinaryUpdate, b: BinaryUpdate) -> None:
    assert torch.equal(a.bits, b.bits)
    assert torch.equal(a.tau, b.tau)
    assert torch.equal(a.alpha, b.alpha)
    assert a.shapes == b.shapes
    assert a.dtypes == b.dtypes
    assert (a.threshold, a.granularity, a.reconstruct) == (
        b.threshold,
        b.granularity,
        b.reconstruct,
    )


def _refresh_crc(frame: bytes | bytearray) -> bytes:
    """Recompute the CRC trailer of an edited frame, so a deeper check is reached."""
    body = bytes(frame[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


# --------------------------------------------------------------------------------------------
# binarisation


@pytest.mark.parametrize("d", [1, 2, 3, 8, 9, 1000, 1001])
def test_median_gives_half_plus_ones_for_distinct_values(d: int) -> None:
    # Default (the paper's sign(p − median) with ties → +1): τ is the usual median (mean of the
    # two middle values for even d) and b = +1 iff p ≥ τ, so ceil(d/2) coordinates are +1.
    p = torch.randperm(d, generator=_gen(d)).float() - d / 3  # distinct values
    b = binarize([p])
    assert b.bits.dtype == torch.bool
    assert int(b.bits.sum()) == (d + 1) // 2
    assert float(b.tau[0]) == pytest.approx(float(np.median(p.double().numpy())), abs=1e-6)
    assert torch.equal(b.bits, p >= b.tau[0])
    # α = mean|p − τ|, checked in float64 with numpy.
    ref_alpha = np.abs(p.double().numpy() - float(b.tau[0])).mean()
    assert float(b.alpha[0]) == pytest.approx(ref_alpha, rel=1e-6)
    # ties="negative" (the earlier rule): lower middle value, strict p > τ, floor(d/2) at +1.
    old = binarize([p], ties="negative")
    assert int(old.bits.sum()) == d // 2
    assert float(old.tau[0]) == float(torch.sort(p).values[(d - 1) // 2])


def test_zero_threshold_is_scaled_sign() -> None:
    p = torch.randn(501, generator=_gen(1))
    p[::7] = 0.0
    b = binarize([p], threshold="zero", reconstruct="sign")
    assert torch.equal(b.bits, p >= 0)  # sign(0) = +1 (ties="positive")
    assert float(b.tau[0]) == 0.0
    assert float(b.alpha[0]) == pytest.approx(float(p.abs().mean()), rel=1e-6)
    assert sign_disagreement([p], b) == 0.0
    (rec,) = reconstruct(b)
    assert torch.equal(rec, torch.where(p >= 0, b.alpha[0], -b.alpha[0]))
    old = binarize([p], threshold="zero", reconstruct="sign", ties="negative")
    assert torch.equal(old.bits, p > 0)
    assert sign_disagreement([p], old, ties="negative") == 0.0
    assert sign_disagreement([p], old) == pytest.approx(float((p == 0).float().mean()))


def test_ties_and_constant_groups() -> None:
    zeros = torch.zeros(10)
    const = torch.full((6,), 2.5)
    b = binarize([zeros, const])
    assert bool(b.bits.all())  # every tie goes to +1 (sign(p − median), ties → +1)
    assert b.alpha.tolist() == [0.0, 0.0]
    rec = reconstruct(b)
    assert torch.equal(rec[0], zeros)
    assert torch.equal(rec[1], const)  # affine reconstruction is exact for a constant group
    (sign_rec,) = reconstruct(binarize([zeros], reconstruct="sign"))
    assert torch.equal(sign_rec, zeros)  # α = 0: an all-zero update stays exactly zero
    # Ties with the median: 5 copies of the median value among 9 entries all go to +1.
    p = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, -1.0])
    b = binarize([p])
    assert float(b.tau[0]) == 1.0
    assert b.bits.tolist() == (p >= 1.0).tolist()
    assert int(b.bits.sum()) == 7
    # An even count whose two middle values are equal: τ is that value, ties → +1.
    p = torch.tensor([3.0, 1.0, 1.0, -2.0])
    assert float(binarize([p]).tau[0]) == 1.0
    assert binarize([p]).bits.tolist() == [True, True, True, False]


def test_ties_negative_reproduces_the_earlier_rule_exactly() -> None:
    zeros = torch.zeros(10)
    const = torch.full((6,), 2.5)
    b = binarize([zeros, const], ties="negative")
    assert not bool(b.bits.any())  # every tie went to −1
    assert b.alpha.tolist() == [0.0, 0.0]
    assert torch.equal(reconstruct(b)[0], zeros)
    p = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, -1.0])
    assert binarize([p], ties="negative").bits.tolist() == (p > 1.0).tolist()
    # The earlier rule written out (torch.median, strict >), on random groups of every size.
    gen = _gen(31)
    for d in (1, 2, 5, 64, 257):
        q = torch.randn(d, generator=gen)
        q[: d // 3] = q[0]  # some ties
        got = binarize([q], ties="negative")
        tau = q.median()
        assert torch.equal(got.bits, q > tau)
        assert float(got.tau[0]) == float(tau)
        assert float(got.alpha[0]) == float((q - tau).abs().mean())
    with pytest.raises(ValueError, match="Invalid ties: 'up'"):
        binarize([p], ties="up")  # type: ignore[arg-type]


def test_median_disagreement_counts_coordinates_between_zero_and_tau() -> None:
    p = torch.randn(4000, generator=_gen(2)) + 0.5  # median well above zero
    b = binarize([p])
    tau = float(b.tau[0])
    between = int(((p >= 0) & (p < tau)).sum()) / p.numel()
    assert tau > 0
    assert sign_disagreement([p], b) == pytest.approx(between, abs=1e-12)


def test_affine_and_sign_reconstruction() -> None:
    p = torch.randn(3, 5, generator=_gen(3)) + 2.0
    for mode in ("affine", "sign"):
        b = binarize([p], reconstruct=mode)
        (rec,) = reconstruct(b)
        tau = float(b.tau[0]) if mode == "affine" else 0.0
        s = b.bits.reshape(3, 5).float() * 2 - 1
        assert torch.allclose(rec, tau + float(b.alpha[0]) * s)
        assert rec.shape == p.shape


def test_vector_granularity_uses_one_group() -> None:
    a = torch.randn(7, generator=_gen(4))
    c = torch.randn(2, 3, generator=_gen(5)) * 10
    b = binarize([a, c], granularity="vector")
    flat = torch.cat([a, c.reshape(-1)])
    assert b.num_groups == 1
    assert int(b.bits.sum()) == (flat.numel() + 1) // 2
    assert float(b.tau[0]) == pytest.approx(float(np.median(flat.double().numpy())), abs=1e-6)
    per_tensor = binarize([a, c])
    assert per_tensor.num_groups == 2


def test_empty_and_zero_dim_tensors_and_dtypes() -> None:
    parts = [
        torch.empty(0),
        torch.tensor(3.0, dtype=torch.float64),
        torch.randn(4, 0),
        torch.randn(5, generator=_gen(6)).to(torch.bfloat16),
        torch.randn(3, generator=_gen(7)).half(),
    ]
    b = binarize(parts)
    assert b.numel == 1 + 5 + 3
    assert b.tau[0] == 0 and b.alpha[0] == 0 and b.tau[2] == 0
    back = decode_frame(encode_frame(b))
    _equal_updates(b, back)
    rec = reconstruct(back)
    assert [r.shape for r in rec] == [t.shape for t in parts]
    assert [r.dtype for r in rec] == [t.dtype for t in parts]
    assert float(rec[1]) == 3.0  # one coordinate: τ = value, α = 0


def test_binarize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="Invalid threshold: 'mean'"):
        binarize([torch.ones(2)], threshold="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid granularity"):
        binarize([torch.ones(2)], granularity="layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid reconstruct"):
        binarize([torch.ones(2)], reconstruct="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Non-finite .* update\[1\]"):
        binarize([torch.ones(2), torch.tensor([1.0, float("nan")])])
    with pytest.raises(TypeError, match=r"update\[0\] dtype: torch.int64"):
        binarize([torch.ones(2, dtype=torch.int64)])
    with pytest.raises(ValueError, match="empty list"):
        binarize([])
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor"):
        binarize([[1.0, 2.0]])  # type: ignore[list-item]


def test_binary_update_checks_its_fields() -> None:
    def make(**kw: Any) -> BinaryUpdate:
        fields: dict[str, Any] = {
            "bits": torch.zeros(3, dtype=torch.bool),
            "tau": torch.zeros(1),
            "alpha": torch.ones(1),
            "shapes": ((3,),),
            "dtypes": (torch.float32,),
        }
        return BinaryUpdate(**{**fields, **kw})

    make()
    with pytest.raises(TypeError, match=r"1-D torch\.bool"):
        make(bits=torch.zeros(3))
    with pytest.raises(ValueError, match="shapes hold 4 coordinates, bits has 3"):
        make(shapes=((4,),))
    with pytest.raises(ValueError, match=r"tau must be float32 of shape \(2,\)"):
        make(shapes=((1,), (2,)), dtypes=(torch.float32,) * 2)
    with pytest.raises(ValueError, match="invalid dtypes"):
        make(dtypes=(torch.int32,))
    with pytest.raises(ValueError, match="Invalid granularity"):
        make(granularity="row")


# --------------------------------------------------------------------------------------------
# wire frame


@pytest.mark.parametrize("granularity", ["tensor", "vector"])
@pytest.mark.parametrize("threshold", ["median", "zero"])
@pytest.mark.parametrize("mode", ["affine", "sign"])
def test_frame_round_trip_is_exact(granularity: str, threshold: str, mode: str) -> None:
    shapes = [(13,), (3, 7), (2, 3, 5), ()]  # 13 + 21 + 30 + 1 = 65 coordinates, not 8k
    tensors = [torch.randn(s, generator=_gen(i)) for i, s in enumerate(shapes)]
    b = binarize(tensors, threshold=threshold, granularity=granularity, reconstruct=mode)  # type: ignore[arg-type]
    data = encode_frame(b)
    assert len(data) == plain_frame_size(shapes, granularity)
    back = decode_frame(data, expected_shapes=shapes)
    _equal_updates(b, back)
    for r1, r2 in zip(reconstruct(b), reconstruct(back), strict=True):
        assert torch.equal(r1, r2)


def test_frame_bit_layout_is_lsb_first() -> None:
    bits = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.bool)
    b = BinaryUpdate(
        bits=bits,
        tau=torch.zeros(1),
        alpha=torch.ones(1),
        shapes=((11,),),
        dtypes=(torch.float32,),
    )
    data = encode_frame(b)
    header_len = 20 + 2 + 4
    assert data[:4] == b"GKSB"
    assert data[header_len : header_len + 2] == bytes([0b10000001, 0b00000011])
    assert struct.unpack("<ff", data[header_len + 2 : header_len + 10]) == (0.0, 1.0)


def test_frame_is_30x_smaller_than_float32_for_a_100k_model() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    update = [torch.randn(p.shape, generator=_gen(i)) for i, p in enumerate(model.parameters())]
    d = sum(p.numel() for p in model.parameters())
    assert d >= 100_000
    pay = client_payload(update)
    assert pay.wire_bytes == len(pay.data) == pay.plaintext_bytes
    assert pay.float32_bytes == 4 * d
    assert 4 * d / len(pay.data) >= 30
    result = aggregate([pay.data], expected_shapes=[p.shape for p in model.parameters()])
    assert [u.shape for u in result.update] == [p.shape for p in model.parameters()]


def test_client_payload_reports_sign_disagreement_of_the_raw_update() -> None:
    u = [torch.randn(1000, generator=_gen(16)) + 0.4]
    pay = client_payload(u)
    assert pay.sign_disagreement == sign_disagreement(u, binarize(u)) > 0.1
    assert client_payload(u, threshold="zero").sign_disagreement == 0.0
    assert pay.encode_seconds > 0 and pay.num_coords == 1000 and not pay.secure


def _frame() -> bytes:
    return encode_frame(binarize([torch.randn(20, generator=_gen(8)), torch.randn(3, 3)]))


def test_decode_rejects_malformed_frames() -> None:
    good = _frame()
    with pytest.raises(ValueError, match="magic b'XXSB'"):
        decode_frame(b"XX" + good[2:])
    bad_version = bytearray(good)
    bad_version[4] = 9
    with pytest.raises(ValueError, match="Unsupported frame version 9"):
        decode_frame(bytes(bad_version))
    bad_kind = bytearray(good)
    bad_kind[5] = 7
    with pytest.raises(ValueError, match="Wrong frame kind: unknown kind 7"):
        decode_frame(bytes(bad_kind))
    bad_flags = bytearray(good)
    bad_flags[6] = 0x40
    with pytest.raises(ValueError, match="unknown bits 0x40"):
        decode_frame(bytes(bad_flags))
    with pytest.raises(ValueError, match="Invalid frame length"):
        decode_frame(good + b"\x00")
    for cut in (0, 3, 10, 21, len(good) - 5, len(good) - 1):
        with pytest.raises(ValueError, match=r"Truncated|Invalid frame length"):
            decode_frame(good[:cut])
    flipped = bytearray(good)
    flipped[38] ^= 0x10  # a packed-bit byte
    with pytest.raises(ValueError, match="CRC-32 mismatch"):
        decode_frame(bytes(flipped))
    with pytest.raises(TypeError, match="expected bytes, got str"):
        decode_frame("GKSB")  # type: ignore[arg-type]


def test_decode_rejects_frames_for_another_model() -> None:
    good = _frame()
    decode_frame(good, expected_shapes=[(20,), (3, 3)])
    with pytest.raises(ValueError, match=r"tensor 1 has shape \(3, 3\), expected \(9,\)"):
        decode_frame(good, expected_shapes=[(20,), (9,)])
    with pytest.raises(ValueError, match="2 tensors in the frame, 3 expected"):
        decode_frame(good, expected_shapes=[(20,), (3, 3), (1,)])


def test_decode_rejects_inconsistent_fields_behind_a_valid_crc() -> None:
    good = _frame()
    # Total coordinate count disagreeing with the shapes.
    wrong_d = bytearray(good)
    wrong_d[12:20] = struct.pack("<Q", 30)
    with pytest.raises(ValueError, match="shapes hold 29 coordinates but the header says 30"):
        decode_frame(_refresh_crc(wrong_d))
    # Padding bits: 29 coordinates → the last byte has 3 padding bits.
    header_len = 20 + 6 + 10
    padded = bytearray(good)
    padded[header_len + 3] |= 0x80
    with pytest.raises(ValueError, match="non-zero padding bits"):
        decode_frame(_refresh_crc(padded))
    # A NaN τ and a negative α.
    scales_at = header_len + 4
    nan_tau = bytearray(good)
    nan_tau[scales_at : scales_at + 4] = struct.pack("<f", float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        decode_frame(_refresh_crc(nan_tau))
    neg_alpha = bytearray(good)
    neg_alpha[scales_at + 4 : scales_at + 8] = struct.pack("<f", -1.0)
    with pytest.raises(ValueError, match="negative α"):
        decode_frame(_refresh_crc(neg_alpha))


# --------------------------------------------------------------------------------------------
# error feedback


@pytest.mark.parametrize("threshold", ["median", "zero"])
@pytest.mark.parametrize("mode", ["affine", "sign"])
def test_error_feedback_telescopes(threshold: str, mode: str) -> None:
    shapes = [(40, 10), (10,), ()]
    ef = ErrorFeedback()
    sent = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    true = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    gen = _gen(9)
    for _ in range(25):
        u = [torch.randn(s, generator=gen) * 0.1 + 0.05 for s in shapes]
        pay = client_payload(u, threshold=threshold, reconstruct=mode, error_feedback=ef)  # type: ignore[arg-type]
        # p̂ as the server reconstructs it from the bytes, not the client's copy.
        for acc, r in zip(sent, reconstruct(decode_frame(pay.data)), strict=True):
            acc += r.double()
        for acc, x in zip(true, u, strict=True):
            acc += x.double()
    assert ef.residual is not None
    lhs = torch.cat([(s + e.double()).reshape(-1) for s, e in zip(sent, ef.residual, strict=True)])
    rhs = torch.cat([t.reshape(-1) for t in true])
    assert float((lhs - rhs).norm() / rhs.norm()) < 1e-5


def test_error_feedback_state_dict_resumes_exactly() -> None:
    shapes = [(50,), (4, 4)]
    gen = _gen(10)
    updates = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(6)]
    a = ErrorFeedback()
    for u in updates[:3]:
        client_payload(u, error_feedback=a)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = ErrorFeedback()
    b.load_state_dict(torch.load(buf, weights_only=True))
    for u in updates[3:]:
        assert client_payload(u, error_feedback=a).data == client_payload(u, error_feedback=b).data
    assert a.residual is not None and b.residual is not None
    for x, y in zip(a.residual, b.residual, strict=True):
        assert torch.equal(x, y)
    fresh = ErrorFeedback()
    fresh.load_state_dict(ErrorFeedback().state_dict())
    assert fresh.residual is None


def test_error_feedback_errors_and_dtypes() -> None:
    ef = ErrorFeedback()
    u = [torch.randn(8, generator=_gen(11)).to(torch.bfloat16)]
    pay = client_payload(u, error_feedback=ef)
    assert ef.residual is not None and ef.residual[0].dtype == torch.float32
    assert decode_frame(pay.data).dtypes == (torch.bfloat16,)  # the frame keeps the model dtype
    with pytest.raises(ValueError, match=r"update tensor 0 has shape \(9,\), the residual \(8,\)"):
        ef.compensate([torch.randn(9)])
    with pytest.raises(ValueError, match="2 tensors, the residual 1"):
        ef.compensate([torch.randn(8), torch.randn(1)])
    with pytest.raises(ValueError, match="expected the key 'residual'"):
        ef.load_state_dict({"e": None})
    with pytest.raises(TypeError, match="list of tensors"):
        ef.load_state_dict({"residual": [1.0]})


# --------------------------------------------------------------------------------------------
# aggregation


def test_majority_of_identical_clients_is_their_vote() -> None:
    u = [torch.randn(30, generator=_gen(12)), torch.randn(2, 5, generator=_gen(13))]
    b = binarize(u, threshold="zero")
    for n in (1, 2, 5):
        result = majority_vote([b] * n)
        for g, (out, x) in enumerate(zip(result.update, u, strict=True)):
            expected = torch.where(x > 0, b.alpha[g], -b.alpha[g])
            assert torch.equal(out, expected)
        assert torch.equal(result.plus_counts, b.bits.long() * n)


def test_majority_ties_give_zero() -> None:
    x = torch.tensor([1.0, -2.0, 3.0, -4.0])
    a = binarize([x], threshold="zero")
    b = binarize([-x], threshold="zero")
    result = majority_vote([a, b])
    assert torch.equal(result.update[0], torch.zeros(4))
    c = binarize([x * 3], threshold="zero")
    result = majority_vote([a, b, c])  # 2 of 3 follow sign(x); scale = median α = 2.5
    assert result.update[0].tolist() == [2.5, -2.5, 2.5, -2.5]


def test_majority_and_mean_match_a_numpy_reference() -> None:
    gen = _gen(14)
    shapes = [(17,), (4, 6)]
    clients = [
        binarize([torch.randn(s, generator=gen) + 0.3 for s in shapes], reconstruct=mode)  # type: ignore[arg-type]
        for mode in ["affine"] * 6
    ]
    bits = np.stack([c.bits.numpy() for c in clients]).astype(np.int64)
    alphas = np.stack([c.alpha.numpy() for c in clients]).astype(np.float64)
    taus = np.stack([c.tau.numpy() for c in clients]).astype(np.float64)
    vote = np.sign((2 * bits - 1).sum(axis=0))
    scale = np.median(alphas, axis=0)
    result = majority_vote(clients)
    starts = [0, 17, 41]
    for g in range(2):
        ref = vote[starts[g] : starts[g + 1]] * scale[g]
        np.testing.assert_allclose(result.update[g].reshape(-1).numpy(), ref, rtol=1e-6)
    mean = mean_reconstruction(clients)
    for g in range(2):
        s = 2 * bits[:, starts[g] : starts[g + 1]] - 1
        ref = (taus[:, g : g + 1] + alphas[:, g : g + 1] * s).mean(axis=0)
        np.testing.assert_allclose(mean.update[g].reshape(-1).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_aggregate_from_bytes_matches_decoded_and_rejects_bad_payloads() -> None:
    gen = _gen(15)
    shapes = [(33,), (2, 2)]
    pays = [client_payload([torch.randn(s, generator=gen) for s in shapes]) for _ in range(4)]
    decoded = [decode_frame(p.data) for p in pays]
    for rule, fn in (("majority", majority_vote), ("mean", mean_reconstruction)):
        got = aggregate([p.data for p in pays], rule=rule)  # type: ignore[arg-type]
        want = fn(decoded)
        assert got.rule == rule and got.num_clients == 4
        for x, y in zip(got.update, want.update, strict=True):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="no client payloads"):
        aggregate([])
    with pytest.raises(ValueError, match="Invalid rule: 'median'"):
        aggregate([pays[0].data], rule="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payload 1: Corrupted frame"):
        aggregate([pays[0].data, pays[1].data[:-1] + b"\x00"])
    other = client_payload([torch.randn(33), torch.randn(4)])
    with pytest.raises(ValueError, match="client 1 has shapes"):
        aggregate([pays[0].data, other.data])
    with pytest.raises(ValueError, match=r"payload 0: .*tensor 1 has shape \(2, 2\)"):
        aggregate([pays[0].data], expected_shapes=[(33,), (4,)])
