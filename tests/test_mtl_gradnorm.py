"""GradNorm (gradkit.mtl._gradnorm): oracles from the paper's definition and LibMTL's variant."""

from __future__ import annotations

import io
import math

import pytest
import torch

from gradkit.mtl._gradnorm import GradNorm, gradnorm_loss, gradnorm_targets

F64 = torch.float64


def linear_losses(w_layer: torch.Tensor, norms, offsets) -> list[torch.Tensor]:
    """``L_i = c_i + n_i <u_i, W>`` with unit ``u_i``: ``||grad_W L_i|| = n_i`` exactly."""
    out = []
    gen = torch.Generator().manual_seed(7)
    for n, c in zip(norms, offsets, strict=True):
        u = torch.randn(w_layer.shape, generator=gen, dtype=F64)
        u = u / u.norm()
        out.append(c + n * (u * w_layer).sum())
    return out


def hand_grad(w, n, ratios, alpha):
    """d L_grad / d w_i = sign(w_i n_i - mean(w n) r_i^alpha) n_i, r = ratios / mean(ratios)."""
    g = [wi * ni for wi, ni in zip(w, n, strict=True)]
    gbar = sum(g) / len(g)
    rbar = sum(ratios) / len(ratios)
    out = []
    for gi, ni, ri in zip(g, n, ratios, strict=True):
        d = gi - gbar * (ri / rbar) ** alpha
        out.append(0.0 if d == 0 else math.copysign(ni, d))
    return torch.tensor(out, dtype=F64)


# ---------------------------------------------------------------- α = 0: w_i ∝ 1/n_i, Σw = T


@pytest.mark.parametrize("variant", ["paper", "libmtl"])
def test_alpha0_fixed_norms_converge_to_inverse_norms(variant):
    norms = [0.5, 1.0, 2.0]
    w_layer = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    gn = GradNorm(3, alpha=0.0, lr=4e-3, optimizer="sgd", variant=variant)
    if variant == "libmtl":
        gn.step(linear_losses(w_layer, norms, [1.0, 2.0, 3.0]), w_layer)
        gn.end_epoch()
    for _ in range(1000):
        gn.step(linear_losses(w_layer, norms, [1.0, 2.0, 3.0]), w_layer)
        assert abs(float(gn.weights.sum()) - 3.0) < 1e-12
    inv = torch.tensor([1 / n for n in norms], dtype=F64)
    expected = 3.0 * inv / inv.sum()  # (12/7, 6/7, 3/7)
    torch.testing.assert_close(gn.weights, expected, atol=0.01, rtol=0)
    products = gn.weights * torch.tensor(norms, dtype=F64)
    assert float(products.max() - products.min()) < 0.015  # w_i n_i equalised


@pytest.mark.parametrize("variant", ["paper", "libmtl"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weights_sum_to_num_tasks_after_every_step(variant, optimizer):
    gen = torch.Generator().manual_seed(3)
    w_layer = torch.zeros(5, 2, dtype=F64, requires_grad=True)
    gn = GradNorm(4, alpha=1.5, lr=0.3, optimizer=optimizer, variant=variant)
    for step in range(60):
        norms = (torch.rand(4, generator=gen, dtype=F64) * 10 + 0.01).tolist()
        offsets = (torch.rand(4, generator=gen, dtype=F64) * 5 + 0.1).tolist()
        gn.step(linear_losses(w_layer, norms, offsets), w_layer)
        if variant == "libmtl" and step == 5:
            gn.end_epoch()
        w = gn.weights
        assert abs(float(w.sum()) - 4.0) < 1e-12, (step, w)
        assert bool((w > 0).all())
    assert not torch.allclose(gn.weights, torch.ones(4, dtype=F64))  # the weights did move


# ------------------------------------------------------------------- the gradient of L_grad


def test_gradnorm_loss_gradient_matches_hand_formula():
    gen = torch.Generator().manual_seed(0)
    for alpha in (0.0, 0.12, 1.5, 3.0):
        for _ in range(20):
            w = (torch.rand(5, generator=gen, dtype=F64) * 2 + 0.1).requires_grad_(True)
            n = torch.rand(5, generator=gen, dtype=F64) * 4 + 0.05
            ratios = torch.rand(5, generator=gen, dtype=F64) + 0.2
            gradnorm_loss(w, n, ratios, alpha).backward()
            expected = hand_grad(w.tolist(), n.tolist(), ratios.tolist(), alpha)
            torch.testing.assert_close(w.grad, expected, rtol=1e-14, atol=1e-14)


def _net(seed):
    torch.manual_seed(seed)
    trunk = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh()
    ).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 1).double() for _ in range(3)])
    return trunk, heads


def _task_losses(trunk, heads, x, y):
    z = trunk(x)
    return [((heads[i](z).squeeze(1) - y[:, i]) ** 2).mean() for i in range(3)]


def test_paper_step_applies_the_exact_gradient_of_double_backprop_definition():
    """Re-implements the paper's G_i = ||grad_W (w_i L_i)|| with create_graph=True, the target
    detached, and checks that one SGD step of GradNorm is w <- renorm(w - lr * dL_grad/dw)."""
    trunk, heads = _net(1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=gen, dtype=F64)
    y = torch.randn(16, 3, generator=gen, dtype=F64) * torch.tensor([1.0, 5.0, 0.2], dtype=F64)
    lr, alpha = 0.05, 1.5
    gn = GradNorm(3, alpha=alpha, lr=lr, optimizer="sgd", initial_losses=[2.0, 30.0, 0.5])
    layer = trunk[2].weight
    w_ref = torch.tensor([1.3, 0.9, 0.8], dtype=F64)
    gn.load_state_dict({**gn.state_dict(), "param": w_ref.clone()})
    losses = _task_losses(trunk, heads, x, y)
    # independent reference
    w = w_ref.clone().requires_grad_(True)
    big_g = torch.stack(
        [
            torch.autograd.grad(w[i] * losses[i], layer, retain_graph=True, create_graph=True)[
                0
            ].norm()
            for i in range(3)
        ]
    )
    ratios = torch.stack([loss.detach() for loss in losses]) / torch.tensor([2.0, 30.0, 0.5])
    r = ratios / ratios.mean()
    target = (big_g.mean() * r**alpha).detach()
    (big_g - target).abs().sum().backward(retain_graph=True)
    stepped = w_ref - lr * w.grad
    expected = 3.0 * stepped / stepped.sum()
    weighted = gn.step(losses, layer)
    torch.testing.assert_close(gn.weights, expected, rtol=1e-12, atol=1e-12)
    # the returned loss uses the weights *before* the update
    torch.testing.assert_close(weighted, sum(wi * li for wi, li in zip(w_ref, losses, strict=True)))
    # and the hand formula agrees as well
    n = torch.stack(
        [torch.autograd.grad(loss, layer, retain_graph=True)[0].norm() for loss in losses]
    )
    torch.testing.assert_close(w.grad, hand_grad(w_ref.tolist(), n.tolist(), ratios.tolist(), 1.5))


def test_libmtl_step_applies_the_softmax_chain_rule():
    """LibMTL: w = T softmax(s); dL/ds_j = T p_j (g_j - sum_i p_i g_i), g = dL_grad/dw."""
    trunk, heads = _net(2)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 6, generator=gen, dtype=F64)
    y = torch.randn(16, 3, generator=gen, dtype=F64) * torch.tensor([1.0, 5.0, 0.2], dtype=F64)
    lr = 0.1
    gn = GradNorm(3, alpha=0.7, lr=lr, optimizer="sgd", variant="libmtl")
    shared = list(trunk.parameters())  # LibMTL: all shared params
    for _ in range(3):
        gn.step(_task_losses(trunk, heads, x * 1.1, y), shared, batch_size=16)
    gn.end_epoch()
    s0 = torch.tensor([0.4, -0.2, 0.1], dtype=F64)
    gn.load_state_dict({**gn.state_dict(), "param": s0.clone()})
    losses = _task_losses(trunk, heads, x, y)
    n = []
    for loss in losses:
        grads = torch.autograd.grad(loss, shared, retain_graph=True)
        n.append(float(torch.cat([g.reshape(-1) for g in grads]).norm()))
    p = torch.softmax(s0, 0)
    ratios = [
        float(loss.detach()) / float(l0) for loss, l0 in zip(losses, gn.initial_losses, strict=True)
    ]
    g = hand_grad((3 * p).tolist(), n, ratios, 0.7)
    ds = 3 * p * (g - (p * g).sum())
    gn.step(losses, shared)
    torch.testing.assert_close(gn.state_dict()["param"], s0 - lr * ds, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gn.weights, 3 * torch.softmax(s0 - lr * ds, 0))


# ---------------------------------------------------------- the inverse-training-rate target


def test_targets_favour_the_task_that_trains_slower():
    g = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    ratios = torch.tensor([0.9, 0.5, 0.1], dtype=F64)  # task 0 trains slowest
    for alpha in (0.12, 1.5):
        t = gradnorm_targets(g, ratios, alpha)
        assert t[0] > t[1] > t[2]
        r = ratios / ratios.mean()
        torch.testing.assert_close(t, g.mean() * r**alpha)
    torch.testing.assert_close(gradnorm_targets(g, ratios, 0.0), g)  # α = 0: equal targets
    spread = []
    for alpha in (0.12, 3.0):
        t = gradnorm_targets(g, ratios, alpha)
        spread.append(float(t.max() / t.min()))
    assert spread[1] > spread[0]  # larger α: stronger asymmetry


def test_slower_task_gains_weight():
    """Equal gradient norms, task 0's loss has not fallen, task 1's has halved: w_0 goes up."""
    w_layer = torch.zeros(3, dtype=F64, requires_grad=True)
    gn = GradNorm(2, alpha=1.5, lr=0.01, optimizer="sgd", initial_losses=[1.0, 1.0])
    gn.step(linear_losses(w_layer, [1.0, 1.0], [1.0, 0.5]), w_layer)
    assert gn.weights[0] > 1.0 > gn.weights[1]
    # α = 0 ignores the training rates: the same norms give the same weights whatever the losses
    moved = []
    for offsets in ([1.0, 0.5], [1.0, 1.0], [0.2, 3.0]):
        gn0 = GradNorm(2, alpha=0.0, lr=0.01, optimizer="sgd", initial_losses=[1.0, 1.0])
        gn0.step(linear_losses(w_layer, [1.0, 2.0], offsets), w_layer)
        moved.append(gn0.weights)
    assert torch.equal(moved[0], moved[1]) and torch.equal(moved[0], moved[2])
    assert moved[0][0] > 1.0 > moved[0][1]  # and equalise w_i n_i: the larger norm loses weight


def test_first_step_losses_are_initial_losses():
    w_layer = torch.zeros(3, dtype=F64, requires_grad=True)
    gn = GradNorm(2)
    gn.step(linear_losses(w_layer, [1.0, 2.0], [3.0, 4.0]), w_layer)
    torch.testing.assert_close(gn.initial_losses, torch.tensor([3.0, 4.0], dtype=F64))
    gn.step(linear_losses(w_layer, [1.0, 2.0], [1.5, 4.0]), w_layer)
    torch.testing.assert_close(gn.initial_losses, torch.tensor([3.0, 4.0], dtype=F64))


# ------------------------------------------------------------------ LibMTL variant, epoch 0


def test_libmtl_epoch0_plain_sum_then_epoch_mean_initial_losses():
    trunk, heads = _net(3)
    gen = torch.Generator().manual_seed(3)
    gn = GradNorm(3, variant="libmtl", lr=0.1)
    seen, sizes = [], [8, 16, 4]
    for bs in sizes:
        x = torch.randn(bs, 6, generator=gen, dtype=F64)
        y = torch.randn(bs, 3, generator=gen, dtype=F64)
        losses = _task_losses(trunk, heads, x, y)
        out = gn.step(losses, trunk[2].weight, batch_size=bs)
        # the plain sum: value and gradient
        plain = sum(losses)
        torch.testing.assert_close(out, plain, rtol=0, atol=0)
        g_out = torch.autograd.grad(out, trunk[0].weight, retain_graph=True)[0]
        g_sum = torch.autograd.grad(plain, trunk[0].weight)[0]
        torch.testing.assert_close(g_out, g_sum, rtol=0, atol=0)
        torch.testing.assert_close(gn.weights, torch.ones(3, dtype=F64), rtol=0, atol=0)
        seen.append([float(v.detach()) for v in losses])
    assert gn.initial_losses is None
    gn.end_epoch()
    expected = [
        sum(b * s[i] for b, s in zip(sizes, seen, strict=True)) / sum(sizes) for i in range(3)
    ]
    torch.testing.assert_close(gn.initial_losses, torch.tensor(expected, dtype=F64))
    x = torch.randn(8, 6, generator=gen, dtype=F64)
    gn.step(
        _task_losses(trunk, heads, x, torch.randn(8, 3, generator=gen, dtype=F64)), trunk[2].weight
    )
    assert not torch.equal(gn.weights, torch.ones(3, dtype=F64))  # GradNorm from epoch 1 on


def test_libmtl_end_epoch_without_steps_raises():
    with pytest.raises(ValueError, match="no step was taken in epoch 0"):
        GradNorm(2, variant="libmtl").end_epoch()


# ---------------------------------------------------------------------- state_dict resume


def _train(gn, trunk, heads, opt, batches, variant, start):
    for k, (x, y) in enumerate(batches):
        losses = _task_losses(trunk, heads, x, y)
        opt.zero_grad()
        gn.step(losses, trunk[2].weight, batch_size=x.shape[0]).backward()
        opt.step()
        if variant == "libmtl" and start + k == 2:
            gn.end_epoch()


@pytest.mark.parametrize("variant", ["paper", "libmtl"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_state_dict_round_trip_resumes_bit_for_bit(variant, optimizer):
    gen = torch.Generator().manual_seed(5)
    scale = torch.tensor([1.0, 10.0, 0.1], dtype=F64)
    batches = [
        (
            torch.randn(8, 6, generator=gen, dtype=F64),
            torch.randn(8, 3, generator=gen, dtype=F64) * scale,
        )
        for _ in range(10)
    ]
    trunk, heads = _net(4)
    opt = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-2)
    gn = GradNorm(3, alpha=1.0, lr=0.05, optimizer=optimizer, variant=variant)
    _train(gn, trunk, heads, opt, batches[:5], variant, 0)
    buf = io.BytesIO()
    torch.save(
        {
            "gn": gn.state_dict(),
            "opt": opt.state_dict(),
            "trunk": trunk.state_dict(),
            "heads": heads.state_dict(),
        },
        buf,
    )
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    _train(gn, trunk, heads, opt, batches[5:], variant, 5)

    trunk2, heads2 = _net(99)
    trunk2.load_state_dict(ckpt["trunk"])
    heads2.load_state_dict(ckpt["heads"])
    opt2 = torch.optim.Adam([*trunk2.parameters(), *heads2.parameters()], lr=1e-2)
    opt2.load_state_dict(ckpt["opt"])
    gn2 = GradNorm(3, alpha=1.0, lr=0.05, optimizer=optimizer, variant=variant)
    gn2.load_state_dict(ckpt["gn"])
    _train(gn2, trunk2, heads2, opt2, batches[5:], variant, 5)
    assert torch.equal(gn.weights, gn2.weights)
    assert not torch.equal(gn.weights, torch.ones(3, dtype=F64))
    for a, b in zip(trunk.parameters(), trunk2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert gn.num_steps == gn2.num_steps == 10
    assert gn.epoch == gn2.epoch


def test_load_state_dict_rejects_mismatch():
    gn = GradNorm(2)
    with pytest.raises(ValueError, match="variant, num_tasks, optimizer"):
        gn.load_state_dict(GradNorm(2, variant="libmtl").state_dict())
    with pytest.raises(ValueError, match="variant, num_tasks, optimizer"):
        gn.load_state_dict(GradNorm(3).state_dict())
    with pytest.raises(ValueError, match="missing keys"):
        gn.load_state_dict({"param": torch.ones(2)})
    bad = {**gn.state_dict(), "param": torch.tensor([1.0, float("nan")], dtype=F64)}
    with pytest.raises(ValueError, match="'param' is not finite"):
        gn.load_state_dict(bad)
    with pytest.raises(ValueError, match="initial_losses"):
        gn.load_state_dict({**gn.state_dict(), "initial_losses": torch.tensor([1.0, 0.0])})
    with pytest.raises(TypeError, match="expected a mapping"):
        gn.load_state_dict([1, 2])


# ------------------------------------------------------------------------------ bad input


def test_constructor_errors():
    with pytest.raises(ValueError, match="Invalid num_tasks: 1"):
        GradNorm(1)
    with pytest.raises(TypeError, match="Invalid num_tasks"):
        GradNorm(2.0)
    with pytest.raises(ValueError, match=r"Invalid alpha: -0\.5"):
        GradNorm(2, alpha=-0.5)
    with pytest.raises(ValueError, match="Invalid alpha"):
        GradNorm(2, alpha=float("nan"))
    with pytest.raises(ValueError, match="Invalid lr"):
        GradNorm(2, lr=0.0)
    with pytest.raises(ValueError, match="Invalid variant"):
        GradNorm(2, variant="LibMTL")
    with pytest.raises(ValueError, match="Invalid optimizer"):
        GradNorm(2, optimizer="rmsprop")
    with pytest.raises(ValueError, match="Invalid initial_losses"):
        GradNorm(2, initial_losses=[1.0, 0.0])
    with pytest.raises(ValueError, match="Invalid initial_losses"):
        GradNorm(2, initial_losses=[1.0])
    with pytest.raises(ValueError, match="libmtl"):
        GradNorm(2, variant="libmtl", initial_losses=[1.0, 1.0])
    with pytest.raises(ValueError, match="Invalid min_weight"):
        GradNorm(2, min_weight=1.0)


def test_step_errors_name_the_task_and_change_nothing():
    w_layer = torch.zeros(3, dtype=F64, requires_grad=True)
    gn = GradNorm(3)
    with pytest.raises(ValueError, match="got 2 losses, expected num_tasks=3"):
        gn.step(linear_losses(w_layer, [1.0, 1.0], [1.0, 1.0]), w_layer)
    losses = linear_losses(w_layer, [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    losses[1] = losses[1] * float("nan")
    with pytest.raises(ValueError, match="Non-finite loss of task 1"):
        gn.step(losses, w_layer)
    losses = linear_losses(w_layer, [1.0, 1.0, 1.0], [1.0, float("inf"), 3.0])
    with pytest.raises(ValueError, match="Non-finite loss of task 1"):
        gn.step(losses, w_layer)
    other = torch.zeros(2, dtype=F64, requires_grad=True)
    losses = [*linear_losses(w_layer, [1.0, 1.0], [1.0, 2.0]), (other**2).sum() + 1.0]
    with pytest.raises(ValueError, match="task 2's loss does not depend on the shared layer"):
        gn.step(losses, w_layer)
    with pytest.raises(ValueError, match=r"task\(s\) \[0\] have loss 0"):
        gn.step(linear_losses(w_layer, [1.0, 1.0, 1.0], [0.0, 2.0, 3.0]), w_layer)
    with pytest.raises(ValueError, match="negative loss"):
        gn.step(linear_losses(w_layer, [1.0, 1.0, 1.0], [-1.0, 2.0, 3.0]), w_layer)
    with pytest.raises(TypeError, match="expected a sequence"):
        gn.step(3.0, w_layer)
    with pytest.raises(ValueError, match="Invalid losses\\[0\\]: shape"):
        gn.step([torch.ones(2, requires_grad=True)] * 3, w_layer)
    with pytest.raises(ValueError, match="does not require grad"):
        gn.step([torch.tensor(1.0)] * 3, w_layer)
    with pytest.raises(ValueError, match="Invalid shared"):
        gn.step(linear_losses(w_layer, [1.0] * 3, [1.0] * 3), [])
    with pytest.raises(ValueError, match="does not require grad"):
        gn.step(linear_losses(w_layer, [1.0] * 3, [1.0] * 3), torch.zeros(3))
    assert gn.num_steps == 0 and gn.initial_losses is None
    assert torch.equal(gn.weights, torch.ones(3, dtype=F64))


# ------------------------------------------------ update(values, norms): step without autograd


@pytest.mark.parametrize("variant", ["paper", "libmtl"])
def test_update_from_numbers_equals_step(variant):
    """``update(values, norms)`` is ``step``'s weight update: same weights, same state, and
    ``step``'s loss is ``Σ w_i L_i`` with the weights ``update`` returns."""
    gen = torch.Generator().manual_seed(5)
    w_layer = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    by_step = GradNorm(3, alpha=1.5, lr=0.1, variant=variant)
    by_numbers = GradNorm(3, alpha=1.5, lr=0.1, variant=variant)
    for k in range(12):
        norms = (torch.rand(3, generator=gen, dtype=F64) * 5 + 0.1).tolist()
        offsets = (torch.rand(3, generator=gen, dtype=F64) * 3 + 0.1).tolist()
        losses = linear_losses(w_layer, norms, offsets)
        values = torch.stack([loss.detach() for loss in losses])
        exact = GradNorm._grad_norms(losses, [w_layer])  # what step computes
        loss = by_step.step(losses, w_layer, batch_size=8)
        used = by_numbers.update(values, exact, batch_size=8)
        assert used.dtype == F64 and used.shape == (3,)
        torch.testing.assert_close(loss, (used * values).sum(), rtol=1e-14, atol=0)
        assert torch.equal(by_step.weights, by_numbers.weights), k
        if variant == "libmtl" and k == 3:
            assert torch.equal(used, torch.ones(3, dtype=F64))  # epoch 0: plain sum
            by_step.end_epoch()
            by_numbers.end_epoch()
    assert not torch.allclose(by_numbers.weights, torch.ones(3, dtype=F64))
    a, b = by_step.state_dict(), by_numbers.state_dict()
    assert torch.equal(a["param"], b["param"]) and a["num_steps"] == b["num_steps"] == 12
    assert torch.equal(a["initial_losses"], b["initial_losses"])


def test_update_errors_change_nothing():
    gn = GradNorm(2)
    with pytest.raises(ValueError, match=r"Invalid losses for GradNorm: shape \(3,\)"):
        gn.update([1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"Non-finite grad_norms of task\(s\) \[1\]"):
        gn.update([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"Non-finite losses of task\(s\) \[0\]"):
        gn.update(torch.tensor([float("inf"), 2.0]), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"grad_norms for GradNorm: entries \[0\] are negative"):
        gn.update([1.0, 2.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="negative loss"):
        gn.update([-1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="have loss 0 at the first step"):
        gn.update([0.0, 2.0], [1.0, 1.0])
    with pytest.raises(TypeError, match="Invalid grad_norms for GradNorm"):
        gn.update([1.0, 2.0], ["a", "b"])
    assert gn.num_steps == 0 and gn.initial_losses is None
    assert torch.equal(gn.weights, torch.ones(2, dtype=F64))
    used = gn.update([1.0, 2.0], [1.0, 4.0])  # a good call still works afterwards
    assert torch.equal(used, torch.ones(2, dtype=F64)) and gn.num_steps == 1
    assert float(gn.weights[0]) > 1.0  # the task with the smaller norm gains weight


def test_repr_and_1d_tensor_losses():
    w_layer = torch.zeros(3, dtype=F64, requires_grad=True)
    gn = GradNorm(2, alpha=0.12)
    assert repr(gn).startswith("GradNorm(num_tasks=2, alpha=0.12")
    out = gn.step(torch.stack(linear_losses(w_layer, [1.0, 3.0], [1.0, 2.0])), w_layer)
    torch.testing.assert_close(out, torch.tensor(3.0, dtype=F64))
    w32 = torch.zeros(3, requires_grad=True)
    out32 = gn.step(
        [loss.float() for loss in linear_losses(w32.double(), [1.0, 3.0], [1.0, 2.0])], w32
    )
    assert out32.dtype == torch.float32 and out32.requires_grad


# ---------------------------------------------------- end to end: B3 synthetic regression


def test_b3_synthetic_regression_larger_scale_task_gets_smaller_weight():
    """GradNorm's toy (spec B3, shrunk): y_i = σ_i tanh((B + ε_i) x), σ = (1, 100); the
    paper's claim is that GradNorm lowers the weight of the large-σ task (α = 0.12)."""
    gen = torch.Generator().manual_seed(0)
    d_in, d_out, n = 25, 10, 400
    b = torch.randn(d_in, d_out, generator=gen) * math.sqrt(10.0)
    eps = [torch.randn(d_in, d_out, generator=gen) * math.sqrt(3.5) for _ in range(2)]
    x = torch.randn(n, d_in, generator=gen) / math.sqrt(d_in)
    sigmas = (1.0, 100.0)
    ys = [s * torch.tanh(x @ (b + e)) for s, e in zip(sigmas, eps, strict=True)]
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(
        torch.nn.Linear(d_in, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
    )
    heads = torch.nn.ModuleList([torch.nn.Linear(32, d_out) for _ in range(2)])
    opt = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-3)
    gn = GradNorm(2, alpha=0.12, lr=0.025)
    history = []
    for _ in range(300):
        idx = torch.randint(0, n, (64,), generator=gen)
        z = trunk(x[idx])
        losses = [((heads[i](z) - ys[i][idx]) ** 2).mean() for i in range(2)]
        opt.zero_grad()
        gn.step(losses, trunk[6].weight).backward()
        opt.step()
        history.append(gn.weights.clone())
    w = history[-1]
    assert abs(float(w.sum()) - 2.0) < 1e-12
    assert w[1] < 0.1 * w[0], w  # the σ = 100 task is strongly down-weighted
    # the weights move monotonically in the paper's direction early on
    assert history[50][1] < history[10][1] < 1.0
