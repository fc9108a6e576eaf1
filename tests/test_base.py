"""The shared optimizer shell: non-finite policy edge cases, validation and state details."""

from __future__ import annotations

import pytest
import torch

from gradkit.optim import DiffGrad, NonFiniteGradientError


def test_huge_finite_gradient_is_not_called_non_finite() -> None:
    """The fast check (an L2 norm) overflows for huge finite values; the exact fallback decides."""
    w = torch.zeros(4, requires_grad=True)
    opt = DiffGrad([w], lr=0.1)
    w.grad = torch.full((4,), 1e19)  # g² fits in float32, the sum of four does not
    assert not torch.isfinite(torch.linalg.vector_norm(w.grad))
    opt.step()
    assert torch.isfinite(w).all() and (w < 0).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_in_a_mixed_dtype_group_is_caught(bad: float) -> None:
    a = torch.zeros(3, requires_grad=True)
    b = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([a, b])
    a.grad = torch.ones(3)
    b.grad = torch.ones(2, 2, dtype=torch.float64)
    b.grad[1, 0] = bad
    with pytest.raises(
        NonFiniteGradientError, match=r"param 1 of group 0 \(shape \(2, 2\)\) contains (NaN|inf)"
    ):
        opt.step()
    assert not opt.state  # nothing was initialised or changed


def test_raise_leaves_earlier_groups_untouched() -> None:
    """All groups are checked before any group is updated."""
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = DiffGrad([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad = torch.ones(3)
    b.grad = torch.tensor([1.0, float("nan"), 1.0])
    with pytest.raises(NonFiniteGradientError, match="group 1"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(3))


def test_step_counter_is_int64_and_exact() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = DiffGrad([w])
    for _ in range(3):
        w.grad = torch.ones(2)
        opt.step()
    step = opt.state[w]["step"]
    assert step.dtype == torch.int64 and int(step) == 3


def test_fused_loads_step_as_int64() -> None:
    """torch casts `step` to float32 when a group has fused=True; gradkit casts it back."""
    w = torch.zeros(2, requires_grad=True)
    opt = DiffGrad([w], foreach=False)
    w.grad = torch.ones(2)
    opt.step()
    twin = DiffGrad([torch.zeros(2, requires_grad=True)], fused=True)
    twin.load_state_dict(opt.state_dict())
    assert twin.state[twin.param_groups[0]["params"][0]]["step"].dtype == torch.int64


def test_group_override_is_validated() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"Invalid betas\[1\]: 1\.5"):
        DiffGrad([{"params": [w], "betas": (0.9, 1.5)}])
    with pytest.raises(ValueError, match=r"Invalid nonfinite: 'warn'"):
        DiffGrad([w], nonfinite="warn")
    with pytest.raises(TypeError, match=r"Invalid maximize: 1 \(expected a bool"):
        DiffGrad([w], maximize=1)


def test_foreach_chunks_cover_every_tensor_once() -> None:
    from gradkit.optim._foreach import foreach_chunks

    tensors = [
        torch.zeros(n, dtype=dtype)
        for n, dtype in [
            (300, torch.float32),
            (5, torch.float64),
            (1, torch.float32),
            (700, torch.float32),
            (0, torch.float32),
        ]
    ]
    doubled = [t + 1 for t in tensors]
    seen = []
    for (chunk, twin), indices in foreach_chunks([tensors, doubled], chunk_bytes=1024):
        assert len({t.dtype for t in chunk}) == 1
        assert all(
            c is tensors[i] and d is doubled[i]
            for c, d, i in zip(chunk, twin, indices, strict=True)
        )
        seen.extend(indices)
    assert sorted(seen) == list(range(len(tensors)))


@pytest.mark.parametrize("name", ["diffgrad", "adabelief", "adamp", "sgdp"])
def test_foreach_matches_forloop_when_chunked(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every foreach path gives the for-loop's result when its lists are split into chunks."""
    from gradkit.optim import _foreach
    from gradkit.registry import get_optimizer
    from gradkit.testing._conformance import check_impl_matches_forloop

    monkeypatch.setattr(_foreach, "CHUNK_BYTES", 200)
    check_impl_matches_forloop(get_optimizer(name), "foreach")
