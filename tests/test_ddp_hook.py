"""gradkit.comm sign-compression DDP hook: kernel properties, state checkpointing, and two
spawned 2-rank gloo runs (training, byte counts, exact majority vote, bit-for-bit resume)."""

import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gradkit.comm import SignCompressionState, sign_compress_hook
from gradkit.comm._ddp_hook import (
    pack_signs,
    sign_compress,
    sign_decompress,
    sign_vote,
    unpack_signs,
)
from gradkit.comm._gloo import run_gloo

# ---------------------------------------------------------------------------------------------
# Single-process tests of the kernel and the state
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1001])
def test_pack_matches_numpy_and_roundtrips(n: int) -> None:
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    x[0] = 0.0  # sign(0) = +1
    packed = pack_signs(x)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n / 8)
    np.testing.assert_array_equal(packed.numpy(), np.packbits((x >= 0).numpy(), bitorder="little"))
    signs = unpack_signs(packed, n)
    assert signs[0] == 1.0
    assert torch.equal(signs, torch.where(x >= 0, 1.0, -1.0))


def test_vote_rules_by_hand() -> None:
    rows = [[1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, 1.0, -1.0]]
    packed = torch.stack([pack_signs(torch.tensor(r)) for r in rows])
    alpha = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # segments [2, 1]
    majority = sign_vote(packed, alpha, [2, 1], "majority")
    # sign sums: [1, 1, -1]; mean alphas: segment 0 -> 3, segment 1 -> 4
    assert torch.equal(majority, torch.tensor([3.0, 3.0, -4.0]))
    mean = sign_vote(packed, alpha, [2, 1], "mean")
    expected = torch.tensor([(1 + 3 - 5) / 3, (-1 + 3 + 5) / 3, (2 - 4 - 6) / 3])
    torch.testing.assert_close(mean, expected)
    # Two ranks that disagree: a tie gives exactly 0 under majority.
    tie = torch.stack([pack_signs(torch.tensor([1.0, 1.0])), pack_signs(torch.tensor([-1.0, 1.0]))])
    out = sign_vote(tie, torch.tensor([[2.0], [2.0]]), [2], "majority")
    assert torch.equal(out, torch.tensor([0.0, 2.0]))


def test_error_feedback_telescopes() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 130, 1, 64]
    residual = None
    total_true = torch.zeros(sum(lengths), dtype=torch.float64)
    total_sent = torch.zeros_like(total_true)
    for t in range(60):
        grad = torch.randn(sum(lengths), generator=gen) * (1 + t % 7)
        packed, alpha, residual = sign_compress(grad, residual, lengths)
        assert packed.numel() == math.ceil(sum(lengths) / 8) and alpha.shape == (len(lengths),)
        total_sent += sign_decompress(packed, alpha, lengths).double()  # decoded from the bytes
        total_true += grad.double()
    assert residual is not None
    err = (total_sent + residual.double() - total_true).norm() / total_true.norm()
    assert err < 1e-5, float(err)
    # The residual is not trivially zero: compression did lose information each step.
    assert residual.abs().sum() > 0


def test_scales_per_segment_and_sign_of_zero() -> None:
    grad = torch.tensor([0.0, -2.0, 4.0, 1.0, -3.0])
    packed, alpha, residual = sign_compress(grad, None, [2, 3])
    assert torch.equal(alpha, torch.tensor([1.0, 8.0 / 3.0]))
    sent = sign_decompress(packed, alpha, [2, 3])
    assert torch.equal(sent, torch.tensor([1.0, -1.0, 8 / 3, 8 / 3, -8 / 3]))
    assert torch.equal(residual, grad - sent)


def test_nonfinite_segment_keeps_its_residual() -> None:
    old = torch.tensor([0.5, -0.5, 0.25, 0.25])
    grad = torch.tensor([float("inf"), 1.0, 2.0, -2.0])
    _, alpha, residual = sign_compress(grad, old, [2, 2])
    assert not math.isfinite(alpha[0]) and math.isfinite(alpha[1])
    assert torch.equal(residual[:2], old[:2])
    p = grad[2:] + old[2:]
    assert torch.equal(residual[2:], p - alpha[1] * torch.sign(p))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_gradients_are_compressed_in_float32(dtype: torch.dtype) -> None:
    grad = torch.randn(50, generator=torch.Generator().manual_seed(1)).to(dtype)
    res = torch.randn(50, generator=torch.Generator().manual_seed(2))
    packed, alpha, residual = sign_compress(grad, res, [20, 30])
    ref = sign_compress(grad.float(), res, [20, 30])
    assert residual.dtype == torch.float32
    assert torch.equal(packed, ref[0]) and torch.equal(alpha, ref[1])
    assert torch.equal(residual, ref[2])


def _filled_state() -> SignCompressionState:
    state = SignCompressionState(vote="mean", start_iter=3, scale="tensor")
    state.iter = 17
    state.param_numels = [3, 4]
    state.residuals = {0: torch.randn(3), 1: torch.randn(4)}
    state.bytes_sent, state.bytes_fp32 = 123, 4567
    state.compressed_bytes_sent, state.compressed_bytes_fp32 = 23, 567
    return state


def _assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "residuals":
            assert a[key].keys() == b[key].keys()
            for k in a[key]:
                assert torch.equal(a[key][k], b[key][k])
        else:
            assert a[key] == b[key], key


def test_state_dict_roundtrips_with_weights_only() -> None:
    state = _filled_state()
    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    fresh = SignCompressionState()
    fresh.load_state_dict(loaded)
    _assert_same_state(fresh.state_dict(), state.state_dict())
    assert fresh.vote == "mean" and fresh.start_iter == 3 and fresh.iter == 17
    # Saved residuals are copies, not views of live state.
    state.residuals[0].add_(1.0)
    assert not torch.equal(fresh.residuals[0], state.residuals[0])


def test_pickle_drops_the_process_group() -> None:
    state = _filled_state()
    state.process_group = object()  # stands in for a live handle
    clone = pickle.loads(pickle.dumps(state))
    assert clone.process_group is None
    _assert_same_state(clone.state_dict(), state.state_dict())


def test_loaded_sizes_are_checked() -> None:
    state = SignCompressionState()
    state.load_state_dict(_filled_state().state_dict())
    # Parameters are numbered by identity, so keep both alive: a freed tensor's id can be
    # reused by the next one, which would then count as already seen.
    first, second = torch.zeros(3), torch.zeros(5)
    state._number([first])
    with pytest.raises(ValueError, match=r"parameter #1 has 5 elements .* recorded 4"):
        state._number([second])
    bad = _filled_state().state_dict()
    bad["residuals"][1] = torch.zeros(9)
    with pytest.raises(ValueError, match=r"residual #1 with 9 elements"):
        SignCompressionState().load_state_dict(bad)
    bad["residuals"][1] = torch.zeros(4)
    bad["version"] = 99
    with pytest.raises(ValueError, match=r"unsupported version 99"):
        SignCompressionState().load_state_dict(bad)
    del bad["iter"]
    with pytest.raises(ValueError, match=r"missing keys \['iter'\]"):
        SignCompressionState().load_state_dict(bad)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"vote": "median"}, ValueError, r"Invalid vote: 'median'"),
        ({"vote": None}, ValueError, r"Invalid vote: None"),
        ({"scale": "layer"}, ValueError, r"Invalid scale: 'layer'"),
        ({"start_iter": -1}, ValueError, r"Invalid start_iter: -1 \(must be >= 0\)"),
        ({"start_iter": 1.5}, TypeError, r"Invalid start_iter: 1.5"),
        ({"start_iter": True}, TypeError, r"Invalid start_iter: True"),
        ({"error_feedback": "yes"}, TypeError, r"Invalid error_feedback: 'yes'"),
    ],
)
def test_bad_options_raise(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        SignCompressionState(**kwargs)


def test_bad_kernel_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"Invalid lengths: \[3, 3\]"):
        sign_compress(torch.zeros(5), None, [3, 3])
    with pytest.raises(TypeError, match="floating"):
        sign_compress(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"Invalid vote: 'max'"):
        sign_vote(torch.zeros(1, 1, dtype=torch.uint8), torch.ones(1, 1), [3], "max")


# ---------------------------------------------------------------------------------------------
# Two spawned gloo ranks
# ---------------------------------------------------------------------------------------------

_STEPS = 150
_RESUME_K, _RESUME_N = 6, 8
_TIMEOUT = 120.0


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(1024, 32, generator=gen)
    teacher = torch.randn(32, 10, generator=gen)
    return x, (x @ teacher).argmax(dim=1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def _batch(
    x: torch.Tensor, y: torch.Tensor, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(
        0, x.shape[0], (32,), generator=torch.Generator().manual_seed(seed * 100_003 + step)
    )
    return x[idx], y[idx]


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _ranks_identical(model: nn.Module, world: int) -> bool:
    flat = _flat(model).float()  # exact for bf16 too
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _sgd(ddp: DDP, momentum: bool) -> torch.optim.Optimizer:
    # Plain SGD lr 0.3 for the training comparison. Measured on this problem (150 steps): with
    # momentum 0.9 at lr 0.05 (effective step 0.5) sign+EF ended worse than sign without EF
    # (0.52 vs 0.21; allreduce 0.08), while at lr 0.02 EF helped (0.45 vs 1.10). Momentum for the
    # resume test so that the optimizer checkpoint holds state.
    if momentum:
        return torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    return torch.optim.SGD(ddp.parameters(), lr=0.3)


def _setup(
    state: SignCompressionState | None, hook: Any = None, momentum: bool = False
) -> tuple[DDP, torch.optim.Optimizer]:
    ddp = DDP(_model(), bucket_cap_mb=0.02)
    if state is not None:
        ddp.register_comm_hook(state, hook or sign_compress_hook)
    return ddp, _sgd(ddp, momentum)


def _train(
    ddp: DDP,
    opt: torch.optim.Optimizer,
    seed: int,
    steps: range,
    dtype: torch.dtype = torch.float32,
) -> None:
    x, y = _data()
    for step in steps:
        xb, yb = _batch(x, y, seed, step)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(xb.to(dtype)).float(), yb).backward()
        opt.step()


def _loss(model: nn.Module) -> float:
    x, y = _data()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def _recording_hook(calls: list[tuple[int, int, bool]]) -> Any:
    def hook(
        state: SignCompressionState, bucket: dist.GradBucket
    ) -> torch.futures.Future[torch.Tensor]:
        calls.append(
            (bucket.buffer().numel(), len(bucket.gradients()), state.iter >= state.start_iter)
        )
        return sign_compress_hook(state, bucket)

    return hook


def _exact_vote_hook(mismatches: list[int], checked: list[int]) -> Any:
    """Identical data on every rank, residuals still zero at the first compressed step: the
    majority vote must return alpha_j * sign(g) with alpha_j = mean |g| per tensor, exactly."""

    def hook(
        state: SignCompressionState, bucket: dist.GradBucket
    ) -> torch.futures.Future[torch.Tensor]:
        first = state.iter == state.start_iter
        grads = [g.detach().reshape(-1).clone() for g in bucket.gradients()]
        fut = sign_compress_hook(state, bucket)
        if not first:
            return fut

        def check(f: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            out = f.value()
            expected = torch.cat([g.abs().mean() * torch.where(g >= 0, 1.0, -1.0) for g in grads])
            checked.append(out.numel())
            mismatches.append(int((out != expected).sum()))
            return out

        return fut.then(check)

    return hook


def _worker_main(rank: int, world: int, ckpt_dir: str) -> dict[str, Any]:
    out: dict[str, Any] = {"numel": sum(p.numel() for p in _model().parameters())}
    out["initial_loss"] = _loss(_model())
    configs = {
        "allreduce": None,
        "majority": SignCompressionState(vote="majority"),
        "mean": SignCompressionState(vote="mean"),
        "no_ef": SignCompressionState(vote="majority", error_feedback=False),
    }
    calls: list[tuple[int, int, bool]] = []
    for name, state in configs.items():
        hook = _recording_hook(calls) if name == "majority" else None
        ddp, opt = _setup(state, hook)
        _train(ddp, opt, seed=rank + 1, steps=range(_STEPS))
        out[f"{name}_loss"] = _loss(ddp.module)
        out[f"{name}_identical"] = _ranks_identical(ddp.module, world)
        if state is not None:
            out[f"{name}_stats"] = state.compression_stats()
    out["calls"] = calls

    mismatches: list[int] = []
    checked: list[int] = []
    ddp, opt = _setup(SignCompressionState(vote="majority"), _exact_vote_hook(mismatches, checked))
    _train(ddp, opt, seed=0, steps=range(4))  # the same batches on every rank
    out["exact_mismatches"], out["exact_checked"] = mismatches, checked

    # bf16 buckets, compressing from iteration 0 (start_iter=0 is safe: no bucket-keyed state).
    state = SignCompressionState(vote="mean", start_iter=0)
    ddp = DDP(_model().to(torch.bfloat16), bucket_cap_mb=0.02)
    ddp.register_comm_hook(state, sign_compress_hook)
    _train(ddp, _sgd(ddp, momentum=False), seed=rank + 1, steps=range(5), dtype=torch.bfloat16)
    out["bf16"] = {
        "identical": _ranks_identical(ddp.module, world),
        "finite": bool(torch.isfinite(_flat(ddp.module).float()).all()),
        "residual_dtypes": sorted({str(r.dtype) for r in state.residuals.values()}),
        "all_compressed": state.bytes_sent == state.compressed_bytes_sent > 0,
        "iter": state.iter,
    }

    state = SignCompressionState(vote="majority")
    ddp, opt = _setup(state, momentum=True)
    _train(ddp, opt, seed=rank + 1, steps=range(_RESUME_K))
    torch.save(
        {"model": ddp.module.state_dict(), "optim": opt.state_dict(), "hook": state.state_dict()},
        Path(ckpt_dir) / f"rank{rank}.pt",
    )
    _train(ddp, opt, seed=rank + 1, steps=range(_RESUME_K, _RESUME_K + _RESUME_N))
    out["continued"] = _flat(ddp.module).numpy()
    out["residual_count"] = len(state.residuals)
    return out


def _worker_resume(rank: int, world: int, ckpt_dir: str) -> dict[str, Any]:
    ckpt = torch.load(Path(ckpt_dir) / f"rank{rank}.pt", weights_only=True)
    state = SignCompressionState()
    state.load_state_dict(ckpt["hook"])
    ddp = DDP(_model(), bucket_cap_mb=0.02)
    ddp.module.load_state_dict(ckpt["model"])
    ddp.register_comm_hook(state, sign_compress_hook)
    opt = _sgd(ddp, momentum=True)
    opt.load_state_dict(ckpt["optim"])
    loaded_iter = state.iter
    _train(ddp, opt, seed=rank + 1, steps=range(_RESUME_K, _RESUME_K + _RESUME_N))
    return {"resumed": _flat(ddp.module).numpy(), "loaded_iter": loaded_iter}


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    ckpt_dir = tmp_path_factory.mktemp("ddp_ckpt")
    return run_gloo(_worker_main, 2, (str(ckpt_dir),), timeout=_TIMEOUT), ckpt_dir


def test_ranks_stay_identical(main_run: tuple[list[dict[str, Any]], Path]) -> None:
    results, _ = main_run
    for r in results:
        for name in ("allreduce", "majority", "mean", "no_ef"):
            assert r[f"{name}_identical"], name
    np.testing.assert_array_equal(results[0]["continued"], results[1]["continued"])


def test_training_converges_and_error_feedback_helps(
    main_run: tuple[list[dict[str, Any]], Path],
) -> None:
    r = main_run[0][0]
    start, base = r["initial_loss"], r["allreduce_loss"]
    assert base < 0.25 * start
    for name in ("majority", "mean"):
        assert r[f"{name}_loss"] < 0.25 * start, (name, r[f"{name}_loss"], start)
        assert r[f"{name}_loss"] < 1.5 * base, (name, r[f"{name}_loss"], base)
    assert r["majority_loss"] < 0.6 * r["no_ef_loss"], (r["majority_loss"], r["no_ef_loss"])


def test_bytes_drop_about_32x(main_run: tuple[list[dict[str, Any]], Path]) -> None:
    for r in main_run[0]:
        calls, stats = r["calls"], r["majority_stats"]
        compressed = [(n, t) for n, t, c in calls if c]
        warmup = [n for n, _, c in calls if not c]
        assert compressed and warmup and len({n for n, _ in compressed}) > 1  # several buckets
        assert stats["compressed_bytes_sent"] == sum(
            math.ceil(n / 8) + 4 * t for n, t in compressed
        )
        # What an fp32 allreduce moves per rank: 4 bytes x every parameter, every step.
        steps = _STEPS - SignCompressionState().start_iter
        assert stats["compressed_bytes_fp32"] == 4 * r["numel"] * steps
        assert stats["bytes_fp32"] == 4 * r["numel"] * _STEPS
        assert stats["bytes_sent"] == stats["compressed_bytes_sent"] + 4 * sum(warmup)
        assert 31.0 < stats["compressed_ratio"] <= 32.0, stats
        assert stats["iter"] == _STEPS


def test_majority_of_identical_ranks_is_scaled_sign(
    main_run: tuple[list[dict[str, Any]], Path],
) -> None:
    for r in main_run[0]:
        assert sum(r["exact_checked"]) == r["numel"]
        assert r["exact_mismatches"] == [0] * len(r["exact_checked"])


def test_bf16_buckets_from_iteration_zero(main_run: tuple[list[dict[str, Any]], Path]) -> None:
    for r in main_run[0]:
        assert r["bf16"] == {
            "identical": True,
            "finite": True,
            "residual_dtypes": ["torch.float32"],
            "all_compressed": True,
            "iter": 5,
        }


def test_resume_from_checkpoint_is_bitwise(main_run: tuple[list[dict[str, Any]], Path]) -> None:
    results, ckpt_dir = main_run
    assert results[0]["residual_count"] == 6  # one residual per parameter tensor
    resumed = run_gloo(_worker_resume, 2, (str(ckpt_dir),), timeout=_TIMEOUT)
    for rank in range(2):
        assert resumed[rank]["loaded_iter"] == _RESUME_K
        np.testing.assert_array_equal(resumed[rank]["resumed"], results[rank]["continued"])
