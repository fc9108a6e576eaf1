"""DiffGrad: parity with torch_optimizer.DiffGrad 0.3.0 (a copy of the authors' diffGrad_v2)
and the closed-form oracles of the spec (section 1e)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch_optimizer
from torch import nn

from gradkit.optim import DiffGrad

# The full option grid torch_optimizer.DiffGrad exposes: lr, betas, eps, weight_decay.
GRID = [
    dict(lr=lr, betas=betas, eps=eps, weight_decay=wd)
    for lr, betas, eps, wd in itertools.product(
        (3e-2,), ((0.9, 0.999), (0.5, 0.9), (0.0, 0.99)), (1e-8, 1e-3), (0.0, 1e-2)
    )
]


def _bn_model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8, bias=False),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).to(dtype)


def _parity(config: dict, impl: dict, dtype: torch.dtype, steps: int = 50) -> tuple[list, list]:
    """Train two copies of a BN model, one per optimizer, feeding both the same fresh gradient
    (computed on our copy) each step; return both parameter lists."""
    ours_model = _bn_model(dtype)
    ref_model = _bn_model(dtype)
    ours = DiffGrad(ours_model.parameters(), **config, **impl)
    ref = torch_optimizer.DiffGrad(ref_model.parameters(), **config)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 1, 6, 6, generator=gen, dtype=dtype)
        y = torch.randint(0, 3, (16,), generator=gen)
        ours_model.zero_grad()
        nn.functional.cross_entropy(ours_model(x), y).backward()
        for p_ours, p_ref in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
            p_ref.grad = p_ours.grad.clone()
        ours.step()
        ref.step()
        # Keep both models on the same trajectory of inputs (gradients are computed on ours).
    return list(ours_model.parameters()), list(ref_model.parameters())


@pytest.mark.parametrize(
    "impl", [{"foreach": False}, {"foreach": True}], ids=["forloop", "foreach"]
)
@pytest.mark.parametrize("config", GRID, ids=[str(i) for i in range(len(GRID))])
def test_parity_float64(config: dict, impl: dict) -> None:
    ours, ref = _parity(config, impl, torch.float64)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-7, atol=1e-9)


def test_parity_float32() -> None:
    ours, ref = _parity(
        dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2), {}, torch.float32
    )
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_parity_exercises_friction() -> None:
    """The friction coefficient really varies in the parity problem (else Adam would pass)."""
    model = _bn_model(torch.float64)
    opt = DiffGrad(model.parameters(), lr=1e-2)
    x = torch.randn(16, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    weight = next(model.parameters())
    previous = torch.zeros_like(weight)
    for _ in range(2):
        model.zero_grad()
        nn.functional.cross_entropy(model(x + torch.randn_like(x)), y).backward()
        friction = 1 / (1 + torch.exp(-(previous - weight.grad).abs()))
        opt.step()
        previous = opt.state[weight]["previous_grad"].clone()
    assert friction.max() - friction.min() > 0.01


def test_step_one_closed_form() -> None:
    """Step 1: Δθ = −η ξ1 g √(1−β2)/(√(1−β2)|g| + ε), ≈ +0.000881 for g=−2, η=1e-3."""
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([w], lr=1e-3, foreach=False)
    w.grad = torch.tensor([-2.0], dtype=torch.float64)
    opt.step()
    g, eta, b2, eps = -2.0, 1e-3, 0.999, 1e-8
    xi = 1 / (1 + math.exp(-abs(g)))
    expected = -eta * xi * g * math.sqrt(1 - b2) / (math.sqrt(1 - b2) * abs(g) + eps)
    assert w.item() == pytest.approx(expected, rel=1e-12)
    assert w.item() == pytest.approx(0.000881, abs=5e-7)


@pytest.mark.parametrize("foreach", [False, True])
def test_constant_gradient_is_half_adam(foreach: bool) -> None:
    """With a constant gradient ξ = 0.5 from step 2 on: the step is half the Adam step that
    uses the same ε placement (ε = 0 makes that torch.optim.Adam)."""
    g = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    ours = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    adam = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([ours], lr=1e-2, eps=0.0, foreach=foreach)
    ref = torch.optim.Adam([adam], lr=1e-2, eps=0.0)
    for step in range(1, 6):
        before_ours, before_adam = ours.detach().clone(), adam.detach().clone()
        ours.grad, adam.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
        if step >= 2:
            torch.testing.assert_close(
                ours.detach() - before_ours, 0.5 * (adam.detach() - before_adam), rtol=1e-12, atol=0
            )


def test_does_not_mutate_grad() -> None:
    """Deviation from the reference: coupled L2 decay never modifies p.grad in place."""
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    for impl in ({"foreach": False}, {"foreach": True}):
        opt = DiffGrad([w], weight_decay=0.5, **impl)
        grad = torch.full((4,), 0.25, dtype=torch.float64)
        w.grad = grad.clone()
        opt.step()
        assert torch.equal(w.grad, grad)


def test_reference_does_mutate_grad() -> None:
    """The documented deviation is real: torch_optimizer.DiffGrad adds λθ to p.grad."""
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = torch_optimizer.DiffGrad([w], weight_decay=0.5)
    w.grad = torch.full((4,), 0.25, dtype=torch.float64)
    opt.step()
    assert not torch.equal(w.grad, torch.full((4,), 0.25, dtype=torch.float64))
