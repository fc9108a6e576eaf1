"""gradkit.mtl: the Aggregator shell, Mean/Sum and mtl_backward."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from gradkit.mtl import Aggregator, Mean, Sum, mtl_backward

# -- Aggregator shell: input validation --------------------------------------------------------


@pytest.mark.parametrize("cls", [Mean, Sum])
def test_rejects_bad_jacobians(cls: type[Aggregator]) -> None:
    agg = cls()
    with pytest.raises(TypeError, match="got list"):
        agg([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape for .*\(3,\).*2-D"):
        agg(torch.ones(3))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        agg(torch.ones(2, 3, 4))
    with pytest.raises(TypeError, match=r"torch.int64"):
        agg(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"Invalid number of tasks.*: 0"):
        agg(torch.ones(0, 3))
    with pytest.raises(ValueError, match="no shared parameters"):
        agg(torch.ones(2, 0))
    bad = torch.ones(3, 4)
    bad[1, 2] = float("nan")
    bad[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"task\(s\) \[1, 2\]"):
        agg(bad)


@pytest.mark.parametrize("cls", [Mean, Sum])
def test_stateless_state_dict(cls: type[Aggregator]) -> None:
    agg = cls()
    assert agg.state_dict() == {}
    agg.load_state_dict({})
    with pytest.raises(ValueError, match="stateless"):
        agg.load_state_dict({"x": 1})
    with pytest.raises(TypeError, match="mapping"):
        agg.load_state_dict([])  # type: ignore[arg-type]
    assert repr(agg) == f"{cls.__name__}()"


# -- Mean / Sum ------------------------------------------------------------------------------


def test_mean_sum_values_and_properties() -> None:
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(4, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(Sum()(jac), jac[0] + jac[1] + jac[2] + jac[3])
    torch.testing.assert_close(Mean()(jac), (jac[0] + jac[1] + jac[2] + jac[3]) / 4)
    perm = torch.randperm(4, generator=g)
    for agg in (Mean(), Sum()):
        torch.testing.assert_close(agg(jac[perm]), agg(jac))  # permutation invariant
        torch.testing.assert_close(agg(3.5 * jac), 3.5 * agg(jac))  # linear under scaling
        assert agg(jac).dtype == torch.float64
    # K = 1 is allowed
    torch.testing.assert_close(Mean()(jac[:1]), jac[0])


# -- mtl_backward ----------------------------------------------------------------------------


def _model(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
    return enc, torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)


def _losses(enc, h1, h2, x):  # type: ignore[no-untyped-def]
    z = enc(x)
    return [h1(z).pow(2).mean(), (h2(z) - 1).abs().mean()]


def test_mtl_backward_matches_per_task_autograd() -> None:
    enc, h1, h2 = _model()
    x = torch.randn(5, 3)
    shared = list(enc.parameters())
    # reference: per-task gradients by hand
    ref_rows, ref_heads = [], []
    for k, head in enumerate((h1, h2)):
        loss = _losses(enc, h1, h2, x)[k]
        gs = torch.autograd.grad(loss, [*shared, *head.parameters()])
        ref_rows.append(torch.cat([g.reshape(-1) for g in gs[: len(shared)]]))
        ref_heads.append(gs[len(shared) :])
    ref_sum = ref_rows[0] + ref_rows[1]

    seen: list[torch.Tensor] = []

    def spy(jac: torch.Tensor) -> torch.Tensor:
        seen.append(jac.clone())
        return jac.sum(0)

    losses = _losses(enc, h1, h2, x)
    out = mtl_backward(losses, shared, spy, task_params=[h1.parameters(), h2.parameters()])
    torch.testing.assert_close(seen[0], torch.stack(ref_rows))
    torch.testing.assert_close(out, ref_sum)
    got = torch.cat([p.grad.reshape(-1) for p in shared])  # type: ignore[union-attr]
    torch.testing.assert_close(got, ref_sum)
    for head, ref in zip((h1, h2), ref_heads, strict=True):
        for p, g in zip(head.parameters(), ref, strict=True):
            torch.testing.assert_close(p.grad, g)
    # Sum aggregator == plain backward of the summed loss
    enc2, h1b, h2b = _model()
    sum(_losses(enc2, h1b, h2b, x)).backward()
    for p, q in zip(shared, enc2.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_mtl_backward_accumulates_and_infers_task_params() -> None:
    enc, h1, h2 = _model()
    x = torch.randn(5, 3)
    out1 = mtl_backward(_losses(enc, h1, h2, x), enc.parameters(), Mean())
    first = [p.grad.clone() for p in (*enc.parameters(), *h1.parameters(), *h2.parameters())]  # type: ignore[union-attr]
    mtl_backward(_losses(enc, h1, h2, x), enc.parameters(), Mean())
    for p, g in zip((*enc.parameters(), *h1.parameters(), *h2.parameters()), first, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)  # accumulated, like backward()
    # inferred heads got exactly their task gradient
    enc2, h1b, h2b = _model()
    mtl_backward(
        _losses(enc2, h1b, h2b, x),
        enc2.parameters(),
        Mean(),
        task_params=[h1b.parameters(), h2b.parameters()],
    )
    for p, q in zip(
        (*h1.parameters(), *h2.parameters()), (*h1b.parameters(), *h2b.parameters()), strict=True
    ):
        torch.testing.assert_close(p.grad, 2 * q.grad)  # type: ignore[operator]
    assert out1.shape == (sum(p.numel() for p in enc.parameters()),)


def test_mtl_backward_works_with_an_optimizer() -> None:
    enc, h1, h2 = _model()
    params = [*enc.parameters(), *h1.parameters(), *h2.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    x = torch.randn(16, 3)
    start = sum(float(v.detach()) for v in _losses(enc, h1, h2, x))
    for _ in range(20):
        opt.zero_grad()
        mtl_backward(_losses(enc, h1, h2, x), enc.parameters(), Mean())
        opt.step()
    assert sum(float(v.detach()) for v in _losses(enc, h1, h2, x)) < start


def test_mtl_backward_nonfinite_names_task_and_writes_nothing() -> None:
    enc, h1, h2 = _model()
    x = torch.randn(5, 3)
    l1, l2 = _losses(enc, h1, h2, x)
    with pytest.raises(ValueError, match=r"task 1 \(losses\[1\]\)"):
        mtl_backward([l1, l2 * float("nan")], enc.parameters(), Mean())
    assert all(p.grad is None for p in (*enc.parameters(), *h1.parameters(), *h2.parameters()))


def test_mtl_backward_unused_shared_param_policy() -> None:
    enc, h1, h2 = _model()
    extra = torch.nn.Parameter(torch.ones(2))
    x = torch.randn(5, 3)

    def losses():  # type: ignore[no-untyped-def]
        l1, l2 = _losses(enc, h1, h2, x)
        return [l1 + extra.sum(), l2]  # task 1 does not reach `extra`

    shared = [*enc.parameters(), extra]
    seen: list[torch.Tensor] = []

    def spy(jac: torch.Tensor) -> torch.Tensor:
        seen.append(jac)
        return jac.sum(0)

    with pytest.warns(UserWarning, match=r"task 1 / shared_params\[2\]"):
        mtl_backward(losses(), shared, spy)
    assert torch.equal(seen[-1][1, -2:], torch.zeros(2))  # zero row entries for task 1
    assert torch.equal(extra.grad, torch.ones(2))  # type: ignore[arg-type]
    for p in shared:
        p.grad = None
    with pytest.raises(ValueError, match=r"task 1 / shared_params\[2\].*no .grad was modified"):
        mtl_backward(losses(), shared, spy, unused="raise")
    assert all(p.grad is None for p in shared)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mtl_backward(losses(), shared, spy, unused="ignore")
    # a shared param that no task reaches keeps .grad None (no zeros written)
    lonely = torch.nn.Parameter(torch.ones(3))
    with pytest.warns(UserWarning, match=r"shared_params\[2\]"):
        mtl_backward(_losses(enc, h1, h2, x), [*enc.parameters(), lonely], Mean())
    assert lonely.grad is None
    with pytest.raises(ValueError, match="Invalid unused: 'x'"):
        mtl_backward(_losses(enc, h1, h2, x), shared, Mean(), unused="x")


def test_mtl_backward_bad_arguments() -> None:
    enc, h1, h2 = _model()
    x = torch.randn(5, 3)
    losses = _losses(enc, h1, h2, x)
    with pytest.raises(ValueError, match="empty"):
        mtl_backward([], enc.parameters(), Mean())
    with pytest.raises(ValueError, match=r"losses\[0\]: shape \(5, 1\)"):
        mtl_backward([h1(enc(x)), losses[1]], enc.parameters(), Mean())
    with pytest.raises(ValueError, match=r"losses\[1\]: it does not require grad"):
        mtl_backward([losses[0], torch.tensor(1.0)], enc.parameters(), Mean())
    with pytest.raises(ValueError, match="shared_params: empty"):
        mtl_backward(losses, [], Mean())
    with pytest.raises(TypeError, match="single Tensor"):
        mtl_backward(losses, enc[0].weight, Mean())
    with pytest.raises(ValueError, match=r"shared_params\[1\]: the same tensor appears twice"):
        mtl_backward(losses, [enc[0].weight, enc[0].weight], Mean())
    with pytest.raises(TypeError, match="not callable"):
        mtl_backward(losses, enc.parameters(), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 entries for 2 losses"):
        mtl_backward(losses, enc.parameters(), Mean(), task_params=[h1.parameters()])
    with pytest.raises(ValueError, match=r"task_params\[0\]\[0\]: it is also a shared param"):
        mtl_backward(losses, enc.parameters(), Mean(), task_params=[[enc[0].weight], []])
    with pytest.raises(ValueError, match=r"returned shape \(2,\)"):
        mtl_backward(losses, enc.parameters(), lambda j: j[:, :2].sum(0))
    losses = _losses(enc, h1, h2, x)
    with pytest.raises(ValueError, match="returned non-finite"):
        mtl_backward(losses, enc.parameters(), lambda j: j.sum(0) * float("inf"))


def test_mtl_backward_retain_graph() -> None:
    enc, h1, h2 = _model()
    losses = _losses(enc, h1, h2, torch.randn(5, 3))
    mtl_backward(losses, enc.parameters(), Sum(), retain_graph=True)
    mtl_backward(losses, enc.parameters(), Sum())  # graph still there
    with pytest.raises(RuntimeError):
        mtl_backward(losses, enc.parameters(), Sum())


def test_buffer_io_helper() -> None:
    buf = io.BytesIO()
    torch.save(Mean().state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == {}
