"""Directional sharpness vᵀHv/‖v‖² and the step-direction helper.

Oracles: a quadratic with a known Hessian (split across two param tensors, with cross terms),
the explicit Hessian of a tiny network from ``torch.autograd.functional.hessian``, the exact
Taylor identity of a quadratic, and SGD's closed-form step.
"""

from __future__ import annotations

import pytest
import torch

from gradkit.diagnostics import directional_sharpness, step_direction

DT = torch.float64


def _quadratic(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(7, 7, generator=gen, dtype=DT)
    a = q @ q.T - 2 * torch.eye(7, dtype=DT)  # indefinite, with cross terms
    b = torch.randn(7, generator=gen, dtype=DT)
    params = [torch.randn(3, generator=gen, dtype=DT).requires_grad_(),
              torch.randn(2, 2, generator=gen, dtype=DT).requires_grad_()]  # fmt: skip
    return a, b, params


def _quadratic_loss(a: torch.Tensor, b: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    theta = torch.cat([p.reshape(-1) for p in params])
    return 0.5 * theta @ a @ theta + b @ theta


def test_equals_vhv_over_norm_on_quadratic() -> None:
    a, b, params = _quadratic()
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        v = [torch.randn(p.shape, generator=gen, dtype=DT) for p in params]
        flat = torch.cat([t.reshape(-1) for t in v])
        s = directional_sharpness(_quadratic_loss(a, b, params), params, v)
        torch.testing.assert_close(s, flat @ a @ flat / (flat @ flat), rtol=1e-13, atol=1e-13)
        raw = directional_sharpness(lambda: _quadratic_loss(a, b, params), params, v,
                                    normalize=False)  # fmt: skip
        torch.testing.assert_close(raw, flat @ a @ flat, rtol=1e-13, atol=1e-13)
    assert all(p.grad is None for p in params)


def test_exact_taylor_identity_on_quadratic() -> None:
    """f(θ − ηv) = f(θ) − η∇fᵀv + ½η²·S·‖v‖² exactly for a quadratic."""
    a, b, params = _quadratic(2)
    v = [torch.ones_like(p) for p in params]
    loss = _quadratic_loss(a, b, params)
    grads = torch.autograd.grad(loss, params)
    s = directional_sharpness(_quadratic_loss(a, b, params), params, v)
    slope = sum((g * t).sum() for g, t in zip(grads, v, strict=True))
    eta = 0.3
    moved = [p.detach() - eta * t for p, t in zip(params, v, strict=True)]
    predicted = loss.detach() - eta * slope + 0.5 * eta**2 * s * 7
    torch.testing.assert_close(_quadratic_loss(a, b, moved), predicted, rtol=1e-12, atol=1e-12)


def test_matches_explicit_hessian_of_tiny_network() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=gen, dtype=DT)
    y = torch.randn(5, generator=gen, dtype=DT)
    w1 = torch.randn(4, 3, generator=gen, dtype=DT).requires_grad_()
    w2 = torch.randn(4, generator=gen, dtype=DT).requires_grad_()

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        return ((torch.tanh(x @ flat[:12].reshape(4, 3).T) @ flat[12:] - y) ** 2).mean()

    flat = torch.cat([w1.detach().reshape(-1), w2.detach()])
    hessian = torch.autograd.functional.hessian(loss_of, flat)
    v = torch.randn(16, generator=gen, dtype=DT)
    s = directional_sharpness(
        lambda: loss_of(torch.cat([w1.reshape(-1), w2])), [w1, w2], [v[:12].reshape(4, 3), v[12:]]
    )
    torch.testing.assert_close(s, v @ hessian @ v / (v @ v), rtol=1e-12, atol=1e-12)


def test_bad_inputs() -> None:
    a, b, params = _quadratic()
    loss = _quadratic_loss(a, b, params)
    with pytest.raises(ValueError, match=r"the direction is zero"):
        directional_sharpness(loss, params, [torch.zeros_like(p) for p in params])
    with pytest.raises(
        ValueError, match=r"direction\[1\] has shape \(4,\), its param has \(2, 2\)"
    ):
        directional_sharpness(loss, params, [torch.ones(3, dtype=DT), torch.ones(4, dtype=DT)])
    with pytest.raises(ValueError, match=r"direction has 1 tensors but there are 2 params"):
        directional_sharpness(loss, params, [torch.ones(3, dtype=DT)])
    with pytest.raises(ValueError, match=r"direction\[0\] contains NaN or inf"):
        directional_sharpness(loss, params, [torch.full((3,), float("nan"), dtype=DT),
                                             torch.ones(2, 2, dtype=DT)])  # fmt: skip
    with pytest.raises(TypeError, match=r"sequences of tensors"):
        directional_sharpness(loss, params[0], torch.ones(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"loss must be a scalar"):
        directional_sharpness(
            torch.stack([loss, loss]), params, [torch.ones_like(p) for p in params]
        )
    # a zero direction is fine without normalisation
    zero = directional_sharpness(loss, params, [torch.zeros_like(p) for p in params],
                                 normalize=False)  # fmt: skip
    assert float(zero) == 0.0


def test_step_direction_is_the_step_on_a_copy() -> None:
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT, requires_grad=True)
    frozen = torch.zeros(2, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([w, frozen], lr=0.1, momentum=0.9)
    w.grad = torch.tensor([0.3, 0.1, -1.0], dtype=DT)
    (dw, dfrozen) = step_direction(opt)
    torch.testing.assert_close(dw, -0.1 * w.grad)
    assert torch.equal(dfrozen, torch.zeros(2, dtype=DT))
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0, 0.5], dtype=DT))
    assert not opt.state  # the original optimizer did not step
    layer = torch.nn.Linear(3, 1, dtype=DT)  # nn.Parameter: deepcopy alone drops .grad
    layer.weight.grad = torch.tensor([[0.3, 0.1, -1.0]], dtype=DT)
    layer.bias.grad = torch.tensor([-2.0], dtype=DT)
    adam = torch.optim.Adam(layer.parameters(), lr=0.01)
    da, db = step_direction(adam)
    torch.testing.assert_close(da, -0.01 * layer.weight.grad.sign(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(db, torch.tensor([0.01], dtype=DT), rtol=1e-6, atol=1e-9)
    assert not adam.state
    with pytest.raises(TypeError, match=r"expects a torch.optim.Optimizer, got list"):
        step_direction([w])  # type: ignore[arg-type]
