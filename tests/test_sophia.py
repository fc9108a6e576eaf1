"""SophiaG / SophiaH and the curvature estimators.

Oracles: ``sophia_opt.SophiaG`` 0.2.2 (the packaged official code), ``pytorch_optimizer.SophiaH``
4.1.0 (community SophiaH, mapped to the paper's clip-at-1 form), and mathematical properties:
the per-coordinate step bound, the h = 0 and large-h closed forms, E[GNB] = Gauss–Newton
diagonal, E[Hutchinson] = Hessian diagonal.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import pytorch_optimizer
import sophia_opt
import torch
import torch.nn.functional as F

from gradkit.optim import NonFiniteGradientError, SophiaG, SophiaH, sophia_refresh
from gradkit.transforms import (
    gnb_diagonal,
    gnb_gradient,
    hessian_vector_product,
    hutchinson_diagonal,
    sample_labels,
)

DT = torch.float64


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (4,), (2, 3, 2), ()]
    return [torch.randn(s, generator=gen, dtype=DT).requires_grad_() for s in shapes]


def _clones(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


# ---------------------------------------------------------------------------- SophiaG parity
PARITY_CONFIGS = [
    {},
    {"lr": 0.01, "rho": 0.05, "weight_decay": 0.2, "bs": 16},
    {"lr": 0.003, "betas": (0.9, 0.95), "rho": 0.01, "weight_decay": 0.0, "bs": 1},
    {"lr": 0.02, "rho": 0.04, "bs": 64, "maximize": True},
]


@pytest.mark.parametrize("impl", ["forloop", "foreach"])
@pytest.mark.parametrize("config", PARITY_CONFIGS, ids=lambda c: str(sorted(c)))
def test_sophiag_matches_official(config: dict[str, Any], impl: str) -> None:
    """60 float64 steps with a GNB-style update_hessian() every 7 steps (read from p.grad, as in
    the official recipe); params and both state tensors agree with sophia_opt.SophiaG."""
    config = dict(config)
    bs = config.pop("bs", 5120)
    ours_p, ref_p = _params(), _params()
    ours = SophiaG(ours_p, **config, bs=bs, foreach=impl == "foreach")
    ref = sophia_opt.SophiaG(ref_p, **config)
    gen = torch.Generator().manual_seed(1)
    for t in range(60):
        grads = [torch.randn(p.shape, generator=gen, dtype=DT) for p in ours_p]
        if t % 7 == 3:  # the sampled-label gradient, then update_hessian() reading p.grad
            hess_grads = [0.3 * torch.randn(p.shape, generator=gen, dtype=DT) for p in ours_p]
            for a, b, g in zip(ours_p, ref_p, hess_grads, strict=True):
                a.grad, b.grad = g.clone(), g.clone()
            ours.update_hessian()
            ref.update_hessian()
        for a, b, g in zip(ours_p, ref_p, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step(bs=bs)
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
        for key in ("exp_avg", "hessian"):
            torch.testing.assert_close(ours.state[a][key], ref.state[b][key], rtol=1e-13, atol=0)
        assert int(ours.state[a]["step"]) == int(ref.state[b]["step"]) == 60


def test_sophiag_step_bs_override_matches_group_bs() -> None:
    """The official call style ``step(bs=...)`` equals the ``bs`` hyper-parameter."""
    a_p, b_p = _params(), _params()
    a = SophiaG(a_p, lr=0.01, bs=32)
    b = SophiaG(b_p, lr=0.01)  # bs=5120 in the group, overridden per call
    gen = torch.Generator().manual_seed(2)
    for t in range(10):
        grads = [torch.randn(p.shape, generator=gen, dtype=DT) for p in a_p]
        for x, y, g in zip(a_p, b_p, grads, strict=True):
            x.grad, y.grad = g.clone(), g.clone()
        if t == 1:
            a.update_hessian()
            b.update_hessian()
        a.step()
        b.step(bs=32)
    for x, y in zip(a_p, b_p, strict=True):
        assert torch.equal(x, y)
    assert b.param_groups[0]["bs"] == 5120
    with pytest.raises(ValueError, match=r"Invalid bs: -1"):
        b.step(bs=-1)


# ---------------------------------------------------------------------------- closed forms
def _one_step(
    cls: type, hessian_value: float | None, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """θ, Δθ and m after one step with h set to ``hessian_value`` (None: never refreshed)."""
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(200, generator=gen, dtype=DT).requires_grad_()
    grad = torch.randn(200, generator=gen, dtype=DT) * torch.logspace(-4, 1, 200, dtype=DT)
    opt = cls([theta], **kwargs)
    if hessian_value is not None:
        opt.state[theta]["hessian"] = torch.full_like(theta, hessian_value)
        opt.state[theta]["exp_avg"] = torch.zeros_like(theta)
        opt.state[theta]["step"] = torch.tensor(0, dtype=torch.int64)
    before = theta.detach().clone()
    theta.grad = grad
    opt.step()
    return before, theta.detach() - before, opt.state[theta]["exp_avg"], opt


@pytest.mark.parametrize("cls", [SophiaG, SophiaH])
def test_zero_curvature_is_sign_momentum(cls: type) -> None:
    """h = 0 ⇒ Δθ = −η sign(m) − ηλθ."""
    lr, wd = 0.01, 0.1
    theta, delta, m, _ = _one_step(cls, None, lr=lr, weight_decay=wd)
    expected = theta * (1 - lr * wd) - lr * m.sign() - theta
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-15)
    assert torch.all(m != 0)


def test_sophiag_large_curvature_is_exact_preconditioned_step() -> None:
    """Unclipped (|m| < ρ·bs·h everywhere) ⇒ Δθ = −η m / (ρ bs h) − ηλθ, to float64 rounding."""
    lr, wd, rho, bs, h = 0.01, 0.1, 0.04, 100.0, 1e3
    theta, delta, m, _ = _one_step(SophiaG, h, lr=lr, weight_decay=wd, rho=rho, bs=bs)
    assert (m.abs() < rho * bs * h).all()
    expected = -lr * m / (rho * bs * h) - lr * wd * theta
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-17)


def test_sophiah_large_curvature_is_exact_preconditioned_step() -> None:
    lr, wd, gamma, h = 0.01, 0.1, 0.01, 1e4
    theta, delta, m, _ = _one_step(SophiaH, h, lr=lr, weight_decay=wd, gamma=gamma)
    expected = -lr * m / (gamma * h) - lr * wd * theta
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("cls", [SophiaG, SophiaH])
def test_per_coordinate_step_bound_with_weight_decay(cls: type) -> None:
    """|Δθ_i + ηλθ_i| ≤ η for every coordinate, over 30 steps with mixed curvature (some
    coordinates clipped, some not; SophiaH also with negative Hutchinson-like h)."""
    lr, wd = 0.05, 0.3
    gen = torch.Generator().manual_seed(4)
    theta = torch.randn(500, generator=gen, dtype=DT).requires_grad_()
    opt = cls([theta], lr=lr, weight_decay=wd, **({"bs": 10} if cls is SophiaG else {}))
    clipped_seen = unclipped_seen = 0
    for t in range(30):
        if t % 3 == 0:
            estimate = torch.randn(500, generator=gen, dtype=DT) * 5
            if cls is SophiaG:
                opt.update_hessian([estimate])
            else:
                opt.update_hessian([estimate + 2.0])  # mostly positive, some negative
        before = theta.detach().clone()
        theta.grad = torch.randn(500, generator=gen, dtype=DT) * 3
        opt.step()
        move = theta.detach() - before + lr * wd * before
        assert (move.abs() <= lr * (1 + 1e-12)).all()
        clipped_seen += int((move.abs() > lr * (1 - 1e-9)).sum())
        unclipped_seen += int((move.abs() < lr * 0.99).sum())
    assert clipped_seen > 0 and unclipped_seen > 0  # both regimes were exercised


def test_sophiah_guard_prevents_uphill_step_that_official_form_takes() -> None:
    """With a negative curvature estimate the official ratio |m|/(ρ bs h) is negative and the
    step goes uphill; SophiaH's max(γh, ε) guard takes the sign step downhill instead."""
    a = 2.0  # L(θ) = a θ² / 2, gradient a θ
    results = {}
    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("official", SophiaG, {"rho": 0.04, "bs": 1.0}),
        ("guarded", SophiaH, {"gamma": 0.04, "eps": 1e-12}),
    ]
    for name, cls, kwargs in cases:
        theta = torch.tensor([1.5], dtype=DT, requires_grad=True)
        optimizer = cls(
            [theta], lr=0.1, betas=(0.9, 0.99), weight_decay=0.0, foreach=False, **kwargs
        )
        optimizer.state[theta] = {
            "step": torch.tensor(0, dtype=torch.int64),
            "exp_avg": torch.zeros(1, dtype=DT),
            "hessian": torch.tensor([-10.0], dtype=DT),  # a negative Hutchinson estimate
        }
        loss_before = a * theta.item() ** 2 / 2
        theta.grad = a * theta.detach().clone()
        optimizer.step()
        results[name] = a * theta.item() ** 2 / 2 - loss_before
        if name == "guarded":
            assert theta.item() == pytest.approx(1.5 - 0.1)  # −η sign(m)
    assert results["official"] > 0  # uphill
    assert results["guarded"] < 0  # downhill


# ---------------------------------------------------------------------------- SophiaH vs pytorch_optimizer
def _po_mapping(lr_p: float, p: float, eps_p: float, wd_p: float) -> dict[str, Any]:
    return {"lr": lr_p * p, "gamma": p, "eps": eps_p * p, "weight_decay": wd_p / p}


@pytest.mark.parametrize(
    "po_config",
    [
        {"lr": 6e-2, "p": 1e-2, "eps": 1e-12, "weight_decay": 0.0},
        {"lr": 0.1, "p": 0.05, "eps": 1e-8, "weight_decay": 1e-3, "betas": (0.9, 0.95)},
    ],
)
def test_sophiah_matches_pytorch_optimizer_with_external_hessian(po_config: dict[str, Any]) -> None:
    """pytorch_optimizer.SophiaH's clamp(m / max(h, eps_p), ±p) with step lr_p equals ours with
    lr = lr_p·p, γ = p, ε = p·eps_p, λ = wd_p / p; the same curvature estimates (some negative)
    are fed to both every k = 5 steps, 60 steps."""
    po_config = dict(po_config)
    betas = po_config.pop("betas", (0.96, 0.99))
    ours_p, ref_p = _params(), _params()
    mapped = _po_mapping(
        po_config["lr"], po_config["p"], po_config["eps"], po_config["weight_decay"]
    )
    ours = SophiaH(ours_p, betas=betas, **mapped)
    ref = pytorch_optimizer.SophiaH(ref_p, betas=betas, update_period=5, foreach=False, **po_config)
    gen = torch.Generator().manual_seed(5)
    for t in range(60):
        grads = [torch.randn(p.shape, generator=gen, dtype=DT) for p in ours_p]
        for a, b, g in zip(ours_p, ref_p, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        hessian = None
        if t % 5 == 0:
            hessian = [torch.randn(p.shape, generator=gen, dtype=DT) + 0.5 for p in ours_p]
            ours.update_hessian(hessian)
        ours.step()
        ref.step(hessian=None if hessian is None else [h.clone() for h in hessian])
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(ours.state[a]["hessian"], ref.state[b]["hessian_moment"])


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_sophiah_internal_hutchinson_matches_pytorch_optimizer() -> None:
    """``update_hessian()`` from ``backward(create_graph=True)`` grads draws the same Gaussian
    probes as pytorch_optimizer.SophiaH's internal estimator under the same global seed."""
    gen = torch.Generator().manual_seed(6)
    target = torch.randn(6, generator=gen, dtype=DT)
    ours_p, ref_p = _params(), _params()
    ours = SophiaH(ours_p, **_po_mapping(6e-2, 1e-2, 1e-12, 0.0))
    ref = pytorch_optimizer.SophiaH(ref_p, update_period=3, foreach=False)

    def loss_of(params: list[torch.Tensor]) -> torch.Tensor:
        w, b, c, s = params
        z = torch.tanh(w.sum(1)[:4] * b) @ b + (c**3).sum() * s + (w**2).sum() * s**2
        return (z - target.sum()) ** 2

    for t in range(12):
        for params in (ours_p, ref_p):
            for p in params:
                p.grad = None
            loss_of(params).backward(create_graph=True)
        torch.manual_seed(100 + t)
        ref.step()
        if t % 3 == 0:
            torch.manual_seed(100 + t)
            ours.update_hessian()
        ours.step()
    for params in (ours_p, ref_p):
        for p in params:
            p.grad = None  # break the create_graph reference cycle
    for a, b in zip(ours_p, ref_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(ours.state[a]["hessian"], ref.state[b]["hessian_moment"])


# ---------------------------------------------------------------------------- estimators
def test_hessian_vector_product_on_quadratic() -> None:
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(7, 7, generator=gen, dtype=DT)
    a = a + a.T
    x = torch.randn(7, generator=gen, dtype=DT).requires_grad_()
    y = torch.randn(2, generator=gen, dtype=DT).requires_grad_()
    v = [torch.randn(7, generator=gen, dtype=DT), torch.randn(2, generator=gen, dtype=DT)]
    loss = 0.5 * x @ a @ x + 3 * y.sum()  # y enters linearly: zero Hessian block
    hx, hy = hessian_vector_product(loss, [x, y], v)
    torch.testing.assert_close(hx, a @ v[0], rtol=1e-14, atol=1e-14)
    assert torch.equal(hy, torch.zeros(2, dtype=DT))
    assert x.grad is None and y.grad is None


def test_hessian_vector_product_errors() -> None:
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"vectors\[0\] has shape \(2,\), param has \(3,\)"):
        hessian_vector_product((x**2).sum(), [x], [torch.ones(2)])
    with pytest.raises(ValueError, match=r"got 2 vectors for 1 params"):
        hessian_vector_product((x**2).sum(), [x], [torch.ones(3), torch.ones(3)])
    with pytest.raises(ValueError, match=r"loss must be a scalar"):
        hessian_vector_product(x**2, [x], [torch.ones(3)])


def test_hutchinson_rademacher_is_exact_for_diagonal_hessian() -> None:
    """u_i² = 1 for Rademacher probes, so a diagonal Hessian is recovered exactly."""
    d = torch.tensor([3.0, -2.0, 0.5, 7.0], dtype=DT)
    x = torch.randn(4, dtype=DT).requires_grad_()
    (estimate,) = hutchinson_diagonal(0.5 * (d * x * x).sum() + x.sum() ** 1, [x],
                                      distribution="rademacher")  # fmt: skip
    assert estimate is not None
    torch.testing.assert_close(estimate, d, rtol=0, atol=1e-15)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_hutchinson_expectation_is_hessian_diagonal(distribution: str) -> None:
    """On L = ½xᵀAx the average of u⊙Au over 4000 probes is diag(A) within 5 standard errors
    (the per-probe values are independent; their sample std gives the standard error)."""
    gen = torch.Generator().manual_seed(8)
    q = torch.randn(6, 6, generator=gen, dtype=DT)
    a = q + q.T + torch.diag(torch.linspace(-3, 5, 6, dtype=DT))
    x = torch.randn(6, generator=gen, dtype=DT).requires_grad_()
    samples = []
    for _ in range(4000):
        (one,) = hutchinson_diagonal(0.5 * x @ a @ x, [x], distribution=distribution,
                                     generator=gen)  # fmt: skip
        assert one is not None
        samples.append(one)
    stack = torch.stack(samples)
    error = (stack.mean(0) - torch.diagonal(a)).abs()
    standard_error = stack.std(0) / 4000**0.5
    assert (error < 5 * standard_error).all(), (error, standard_error)
    # n_samples averages probes in one call
    (avg,) = hutchinson_diagonal(0.5 * x @ a @ x, [x], n_samples=3, generator=gen)
    assert avg is not None and avg.shape == (6,)


def test_gnb_expectation_is_gauss_newton_diagonal() -> None:
    """Softmax regression logits = X Wᵀ + b: the average of B·ĝ⊙ĝ over 3000 label draws is the
    Gauss–Newton diagonal (1/B) Σ_b J_bᵀ(diag p_b − p_b p_bᵀ)J_b within 5 standard errors."""
    gen = torch.Generator().manual_seed(9)
    batch, features, classes = 12, 3, 4
    x = torch.randn(batch, features, generator=gen, dtype=DT)
    w = torch.randn(classes, features, generator=gen, dtype=DT).requires_grad_()
    b = torch.randn(classes, generator=gen, dtype=DT).requires_grad_()
    with torch.no_grad():
        p = torch.softmax(x @ w.T + b, dim=-1)
        curv = p - p * p  # diagonal of diag(p) − ppᵀ, per example and class
        gn_w = torch.einsum("bc,bd->cd", curv, x * x) / batch
        gn_b = curv.mean(0)
    draws_w, draws_b = [], []
    for _ in range(3000):
        hw, hb = gnb_diagonal(x @ w.T + b, [w, b], generator=gen)
        assert hw is not None and hb is not None
        draws_w.append(hw)
        draws_b.append(hb)
    for draws, exact in ((draws_w, gn_w), (draws_b, gn_b)):
        stack = torch.stack(draws)
        error = (stack.mean(0) - exact).abs()
        assert (error < 5 * stack.std(0) / 3000**0.5).all(), (error, exact)


def test_gnb_gradient_counts_positions_and_uses_model_labels() -> None:
    """(B, T, V) logits: n = B·T positions; the gradient is that of the mean CE against labels
    drawn from softmax(logits) with the same generator."""
    gen = torch.Generator().manual_seed(10)
    head = torch.randn(5, 3, generator=gen, dtype=DT).requires_grad_()
    hidden = torch.randn(2, 7, 3, generator=gen, dtype=DT)
    grads, n, loss = gnb_gradient(
        hidden @ head.T, [head], generator=torch.Generator().manual_seed(1)
    )
    assert n == 14
    labels = sample_labels(hidden @ head.T, torch.Generator().manual_seed(1))
    assert labels.shape == (2, 7)
    expected_loss = F.cross_entropy((hidden @ head.T).reshape(14, 5), labels.reshape(14))
    (expected,) = torch.autograd.grad(expected_loss, [head])
    assert grads[0] is not None
    torch.testing.assert_close(grads[0], expected, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(loss, expected_loss.detach())
    with pytest.raises(ValueError, match=r"at least one batch dimension"):
        gnb_gradient(torch.zeros(5, requires_grad=True), [head])
    with pytest.raises(ValueError, match=r"do not require grad"):
        gnb_gradient(torch.zeros(2, 5), [head])


def test_sample_labels_follow_the_softmax() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]], dtype=DT)).expand(20000, 3)
    labels = sample_labels(logits, torch.Generator().manual_seed(11))
    freq = torch.bincount(labels, minlength=3).to(DT) / 20000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1], dtype=DT), atol=0.015, rtol=0)


# ---------------------------------------------------------------------------- the refresh helper
class _TinyLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(6, 4, dtype=DT)
        self.head = torch.nn.Linear(4, 6, dtype=DT)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(tokens)))  # (B, T, V)


def test_sophia_refresh_gnb_equals_official_update_hessian_and_keeps_grads() -> None:
    """sophia_refresh(logits=...) gives the same h as the official recipe (sample labels,
    backward the mean CE, clip_grad_norm_(1.0), update_hessian() from p.grad), leaves the user's
    .grad untouched, and the returned loss is the sampled-label CE."""
    tokens = torch.randint(0, 6, (3, 5), generator=torch.Generator().manual_seed(12))
    model_a, model_b = _TinyLM(), _TinyLM()
    opt_a = SophiaG(model_a.parameters(), bs=15)
    opt_b = SophiaG(model_b.parameters(), bs=15)
    user_grads = [torch.full_like(p, 7.0) for p in model_a.parameters()]
    for p, g in zip(model_a.parameters(), user_grads, strict=True):
        p.grad = g.clone()
    for _ in range(3):
        sampled = sophia_refresh(
            opt_a, logits=model_a(tokens), generator=torch.Generator().manual_seed(3),
            max_grad_norm=0.05,
        )  # fmt: skip
        logits = model_b(tokens)
        labels = sample_labels(logits, torch.Generator().manual_seed(3))
        loss = F.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1))
        opt_b.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model_b.parameters(), 0.05)
        opt_b.update_hessian()
        torch.testing.assert_close(sampled, loss.detach())
    for pa, pb, g in zip(model_a.parameters(), model_b.parameters(), user_grads, strict=True):
        assert pa.grad is not None and torch.equal(pa.grad, g)
        torch.testing.assert_close(opt_a.state[pa]["hessian"], opt_b.state[pb]["hessian"],
                                   rtol=1e-12, atol=1e-18)  # fmt: skip
        assert opt_a.state[pa]["hessian"].abs().sum() > 0


def test_sophia_refresh_warns_on_bs_mismatch_and_validates() -> None:
    model = _TinyLM()
    tokens = torch.zeros(2, 4, dtype=torch.int64)
    opt = SophiaG(model.parameters(), bs=100)
    with pytest.warns(UserWarning, match=r"averages 8 label positions but the optimizer's bs"):
        sophia_refresh(opt, logits=model(tokens))
    good = SophiaG(model.parameters(), bs=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sophia_refresh(good, logits=model(tokens))
    with pytest.raises(ValueError, match=r"exactly one of logits= \(GNB\) or loss="):
        sophia_refresh(good)
    with pytest.raises(ValueError, match=r"SophiaG uses the Gauss–Newton–Bartlett estimator"):
        sophia_refresh(good, loss=model(tokens).sum())
    with pytest.raises(TypeError, match=r"expects a SophiaG or SophiaH optimizer, got Adam"):
        sophia_refresh(torch.optim.Adam(model.parameters()), logits=model(tokens))  # type: ignore[arg-type]


def test_sophia_refresh_hutchinson_for_sophiah() -> None:
    """loss= on SophiaH stores (1−β2)·u⊙Hu with the generator's probes; logits= stores the
    paper-units GNB diagonal n·ĝ⊙ĝ."""
    model = _TinyLM()
    params = list(model.parameters())
    tokens = torch.randint(0, 6, (2, 3), generator=torch.Generator().manual_seed(13))
    targets = torch.randint(0, 6, (2, 3), generator=torch.Generator().manual_seed(14))

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(tokens).reshape(-1, 6), targets.reshape(-1))

    opt = SophiaH(params, betas=(0.9, 0.5))
    sophia_refresh(opt, loss=loss(), generator=torch.Generator().manual_seed(5))
    expected = hutchinson_diagonal(loss(), params, generator=torch.Generator().manual_seed(5))
    for p, e in zip(params, expected, strict=True):
        assert e is not None
        torch.testing.assert_close(opt.state[p]["hessian"], 0.5 * e)
        assert p.grad is None
    opt_g = SophiaH(params, betas=(0.9, 0.5))
    sophia_refresh(opt_g, logits=model(tokens), generator=torch.Generator().manual_seed(6))
    expected = gnb_diagonal(model(tokens), params, generator=torch.Generator().manual_seed(6))
    for p, e in zip(params, expected, strict=True):
        assert e is not None
        torch.testing.assert_close(opt_g.state[p]["hessian"], 0.5 * e)


# ---------------------------------------------------------------------------- shell details
def test_update_hessian_validation_and_nonfinite() -> None:
    params = _params()
    opt = SophiaG(params)
    with pytest.raises(ValueError, match=r"got 1 estimates for 4 params"):
        opt.update_hessian([torch.zeros(5, 3, dtype=DT)])
    with pytest.raises(ValueError, match=r"estimate 1 has shape \(3,\), its param has \(4,\)"):
        opt.update_hessian([None, torch.zeros(3, dtype=DT), None, None])
    opt.update_hessian([torch.ones_like(p) for p in params])
    before = [opt.state[p]["hessian"].clone() for p in params]
    bad = [torch.ones_like(p) for p in params]
    bad[2] = bad[2].clone()
    bad[2][0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match=r"param 2 of group 0.*NaN"):
        opt.update_hessian(bad)
    for p, b in zip(params, before, strict=True):
        assert torch.equal(opt.state[p]["hessian"], b)  # nothing updated
    skipping = SophiaG(params, nonfinite="skip")
    skipping.update_hessian(bad)
    assert skipping.skipped_hessian_updates == 1 and not skipping.state
    with pytest.raises(ValueError, match=r"loss.backward\(create_graph=True\)"):
        SophiaH(params).update_hessian()


def test_sophiah_maximize_negates_curvature() -> None:
    params = _params()
    opt = SophiaH(params, maximize=True, betas=(0.9, 0.0))
    opt.update_hessian([torch.full_like(p, 2.0) for p in params])
    assert all(torch.equal(opt.state[p]["hessian"], torch.full_like(p, -2.0)) for p in params)


def test_win_rate_counts_unclipped_coordinates() -> None:
    theta = torch.zeros(4, dtype=DT, requires_grad=True)
    opt = SophiaG([theta], rho=0.5, bs=2.0)
    opt.state[theta].update(
        step=torch.tensor(1),
        exp_avg=torch.tensor([0.5, -3.0, 0.1, 2.0], dtype=DT),
        hessian=torch.tensor([1.0, 1.0, 0.0, 3.0], dtype=DT),
    )  # ρ·bs·h = [1, 1, 0, 3]: unclipped where |m| < that: coordinates 0 and 3
    assert opt.win_rate() == 0.5


def test_sophia_refresh_clips_like_the_official_recipe_by_default() -> None:
    # issue 11 item 6: the default was max_grad_norm=None; the official train_sophiag.py clips
    # the sampled-label gradient to norm 1.0 before update_hessian
    from gradkit.optim import SophiaG, sophia_refresh

    def hessian(**kwargs: Any) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 5)
        with torch.no_grad():
            model.weight.mul_(1e-3)  # moderate logits of large inputs: a gradient norm >> 1
        opt = SophiaG(model.parameters(), bs=12)
        x = 1e3 * torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
        sophia_refresh(opt, logits=model(x), generator=torch.Generator().manual_seed(2), **kwargs)
        return opt.state[model.weight]["hessian"].clone()

    default, official, unclipped = (
        hessian(),
        hessian(max_grad_norm=1.0),
        hessian(max_grad_norm=None),
    )
    assert torch.equal(default, official)
    assert not torch.allclose(default, unclipped)
    with pytest.raises(ValueError, match="Invalid max_grad_norm: 'paper'"):
        hessian(max_grad_norm="paper")
