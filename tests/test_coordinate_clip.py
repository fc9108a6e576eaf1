"""Coordinate-wise clipping (Pan & Li, 2023): the function and the optimizer wrapper.

Oracles: hand-written float64 Adam and SGD-momentum references that clip the update direction
u (m̂/(√v̂+ε), the momentum buffer) or the raw gradient; "the base optimizer's step on a copy,
then clipped" for a gradkit optimizer; and the fraction / tie semantics on fixed vectors.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from gradkit.optim import DiffGrad, SophiaG
from gradkit.transforms import CoordinateClip, clip_thresholds, coordinate_clip

DT = torch.float64


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=DT).requires_grad_() for s in [(6, 5), (7,), (0,)]]


def _grads(params: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    # heavy-tailed: a few coordinates dominate, as in the paper's motivation
    return [
        torch.randn(p.shape, generator=gen, dtype=DT)
        * torch.exp(2 * torch.randn(p.shape, generator=gen, dtype=DT))
        for p in params
    ]


def _reference_clip(u: list[torch.Tensor], **kwargs: Any) -> list[torch.Tensor]:
    """Spec §8 written out: sort magnitudes, count ⌊f n⌋, clip to the largest remaining one."""
    threshold, scope = kwargs.get("threshold"), kwargs["scope"]
    fraction = float(kwargs.get("fraction") or 0.0)
    if threshold is not None:
        taus = [threshold] * len(u)
    elif scope == "tensor":
        taus = []
        for t in u:
            mags = sorted(t.abs().reshape(-1).tolist())
            k = math.floor(round(fraction * len(mags), 9))
            taus.append(math.inf if k == 0 or not mags else mags[max(len(mags) - k, 1) - 1])
    else:
        mags = sorted(torch.cat([t.abs().reshape(-1) for t in u]).tolist())
        k = math.floor(round(fraction * len(mags), 9))
        tau = math.inf if k == 0 else mags[max(len(mags) - k, 1) - 1]
        taus = [tau] * len(u)
    return [t.sign() * t.abs().clamp(max=tau) for t, tau in zip(u, taus, strict=True)]


CLIPS = [
    {"threshold": 0.7, "scope": "tensor"},
    {"fraction": 0.1, "scope": "tensor"},
    {"fraction": 0.3, "scope": "global"},
]


# ---------------------------------------------------------------------------- the function
def test_value_threshold_is_clamp() -> None:
    gen = torch.Generator().manual_seed(1)
    u = [torch.randn(50, generator=gen, dtype=DT) * 3, torch.randn(2, 3, generator=gen)]
    originals = [t.clone() for t in u]
    out = coordinate_clip(u, threshold=1.5)
    for t, o, orig in zip(u, out, originals, strict=True):
        assert torch.equal(o, t.clamp(-1.5, 1.5))
        assert torch.equal(t, orig)  # inputs untouched


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.29, 0.5, 0.97, 1.0])
def test_fraction_clips_exactly_the_top_coordinates(fraction: float) -> None:
    n = 100
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(n, generator=gen, dtype=DT)
    (out,) = coordinate_clip([u], fraction=fraction)
    changed = out != u
    k = math.floor(round(fraction * n, 9))  # 0.29 * 100 = 28.999999999999996 must count 29
    assert int(changed.sum()) == (min(k, n - 1))
    order = u.abs().argsort(descending=True)
    assert changed[order[: min(k, n - 1)]].all()  # the clipped ones are the largest
    (tau,) = clip_thresholds([u], fraction=fraction)
    if k:
        assert float(tau) == float(u.abs()[~changed].max())  # the largest remaining magnitude
        assert torch.equal(
            out[changed].abs(), torch.full((int(changed.sum()),), float(tau), dtype=DT)
        )
    else:
        assert math.isinf(float(tau))
    assert torch.equal(out.sign(), u.sign())
    assert (out.abs() <= u.abs()).all()


def test_fraction_with_ties() -> None:
    u = torch.tensor([5.0, -5.0, 5.0, 1.0, -2.0])
    # k = 1: τ = the 4th smallest |u| = 5, nothing lies above it, ties at τ stay: no change
    assert torch.equal(coordinate_clip([u], fraction=0.2)[0], u)
    # k = 3: τ = 2: all three tied 5s are clipped
    assert torch.equal(
        coordinate_clip([u], fraction=0.6)[0], torch.tensor([2.0, -2.0, 2.0, 1.0, -2.0])
    )
    # k = 2 with a tie above τ: τ = 3rd smallest = 5 again → no change (ties are not split)
    assert torch.equal(coordinate_clip([u], fraction=0.4)[0], u)
    # f = 1: everything clipped to the smallest magnitude: a scaled sign vector
    assert torch.equal(coordinate_clip([u], fraction=1.0)[0], u.sign())


def test_scope_global_counts_over_all_tensors() -> None:
    a = torch.tensor([10.0, 9.0, 8.0, 7.0])
    b = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out_a, out_b = coordinate_clip([a, b], fraction=0.25, scope="global")
    assert torch.equal(out_a, torch.tensor([8.0, 8.0, 8.0, 7.0]))  # top 2 of 8 clipped to 8
    assert torch.equal(out_b, b)
    per_tensor = coordinate_clip([a, b], fraction=0.25)
    assert torch.equal(per_tensor[0], torch.tensor([9.0, 9.0, 8.0, 7.0]))
    assert torch.equal(per_tensor[1], torch.tensor([1.0, 2.0, 3.0, 3.0]))
    assert coordinate_clip([torch.zeros(0)], fraction=0.5)[0].numel() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, r"exactly one of threshold="),
        ({"threshold": 1.0, "fraction": 0.1}, ValueError, r"exactly one of threshold="),
        ({"threshold": -1.0}, ValueError, r"Invalid threshold: -1\.0"),
        ({"threshold": float("nan")}, ValueError, r"Invalid threshold: nan"),
        ({"threshold": "1"}, TypeError, r"Invalid threshold: '1'"),
        ({"fraction": 1.5}, ValueError, r"Invalid fraction: 1\.5 \(must be in \[0, 1\]\)"),
        ({"fraction": True}, TypeError, r"Invalid fraction: True"),
        ({"fraction": 0.1, "scope": "layer"}, ValueError, r"Invalid scope: 'layer'"),
    ],
)
def test_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        coordinate_clip([torch.ones(3)], **kwargs)
    with pytest.raises(error, match=match):
        CoordinateClip(torch.optim.SGD([torch.ones(3, requires_grad=True)], lr=0.1), **kwargs)


def test_wrapper_errors() -> None:
    with pytest.raises(ValueError, match=r"Invalid mode: 'both'"):
        CoordinateClip(
            torch.optim.SGD([torch.ones(1, requires_grad=True)]), threshold=1.0, mode="both"
        )
    with pytest.raises(TypeError, match=r"wraps a torch.optim.Optimizer, got list"):
        CoordinateClip([], threshold=1.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the wrapper vs references
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: str(sorted(c.items())))
def test_adam_update_mode_matches_reference(clip: dict[str, Any]) -> None:
    """θ ← θ − η clip(m̂/(√v̂+ε)), by hand, against CoordinateClip(torch.optim.Adam)."""
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    params = _params()
    ref = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in ref]
    v = [torch.zeros_like(p) for p in ref]
    opt = CoordinateClip(
        torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps, foreach=False), **clip
    )
    gen = torch.Generator().manual_seed(3)
    clipped_total = 0
    for t in range(1, 21):
        grads = _grads(params, gen)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        u = []
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            u.append((m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps))
        clipped_u = _reference_clip(u, **clip)
        clipped_total += sum(int((c != x).sum()) for c, x in zip(clipped_u, u, strict=True))
        ref = [r - lr * c for r, c in zip(ref, clipped_u, strict=True)]
        for p, r in zip(params, ref, strict=True):
            torch.testing.assert_close(p.detach(), r, rtol=1e-12, atol=1e-14)
    assert clipped_total > 20  # the clip was active


@pytest.mark.parametrize("mode", ["update", "gradient"])
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: str(sorted(c.items())))
def test_sgd_momentum_matches_reference(clip: dict[str, Any], mode: str) -> None:
    """update mode: θ ← θ − η clip(buf), buf = μ buf + g; gradient mode: buf = μ buf + clip(g)."""
    lr, mu = 0.05, 0.9
    params = _params(1)
    ref = [p.detach().clone() for p in params]
    buf = [torch.zeros_like(p) for p in ref]
    opt = CoordinateClip(
        torch.optim.SGD(params, lr=lr, momentum=mu, foreach=True), mode=mode, **clip
    )
    gen = torch.Generator().manual_seed(4)
    for t in range(15):
        grads = _grads(params, gen)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for p, g in zip(params, grads, strict=True):
            assert p.grad is not None and torch.equal(p.grad, g)  # user grads restored
        if mode == "gradient":
            grads = _reference_clip(grads, **clip)
        buf = [g.clone() if t == 0 else mu * b + g for b, g in zip(buf, grads, strict=True)]
        step = _reference_clip(buf, **clip) if mode == "update" else buf
        ref = [r - lr * s for r, s in zip(ref, step, strict=True)]
        for p, r in zip(params, ref, strict=True):
            torch.testing.assert_close(p.detach(), r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("base", ["diffgrad", "sophiag"])
def test_gradkit_optimizer_matches_step_on_a_copy(base: str) -> None:
    """For any optimizer: the wrapped step equals the base step taken on a copy, with the
    displacement clipped at lr·τ (global fraction over two groups with different lr)."""

    def build(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        groups = [{"params": params[:1], "lr": 0.02}, {"params": params[1:], "lr": 0.005}]
        if base == "diffgrad":
            return DiffGrad(groups, lr=0.01)
        return SophiaG(groups, lr=0.01, bs=4, weight_decay=0.0)

    params = _params(2)
    shadow = [p.detach().clone().requires_grad_() for p in params]
    wrapped = CoordinateClip(build(params), fraction=0.2, scope="global")
    plain = build(shadow)
    gen = torch.Generator().manual_seed(5)
    for _ in range(10):
        grads = _grads(params, gen)
        for p, q, g in zip(params, shadow, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        before = [q.detach().clone() for q in shadow]
        plain.step()
        lrs = [0.02, 0.005, 0.005]
        u = [(q.detach() - b) / lr for q, b, lr in zip(shadow, before, lrs, strict=True)]
        clipped = _reference_clip(u, fraction=0.2, scope="global")
        with torch.no_grad():
            for q, b, c, lr in zip(shadow, before, clipped, lrs, strict=True):
                q.copy_(b + lr * c)  # continue the reference from the clipped point
        wrapped.step()
        for p, q in zip(params, shadow, strict=True):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)
        for p, q in zip(params, shadow, strict=True):  # the base state evolves as unclipped
            for key, value in plain.state[q].items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    torch.testing.assert_close(wrapped.state[p][key], value, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- optimizer plumbing
def test_scheduler_lr_scales_the_threshold_and_lr_zero_group_stays() -> None:
    w = torch.tensor([0.0, 0.0], dtype=DT, requires_grad=True)
    frozen = torch.tensor([1.0], dtype=DT, requires_grad=True)
    groups: list[dict[str, Any]] = [{"params": [w]}, {"params": [frozen], "lr": 0.0}]
    opt = CoordinateClip(torch.optim.SGD(groups, lr=0.1), threshold=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for lr in (0.1, 0.05):
        before = w.detach().clone()
        w.grad = torch.tensor([4.0, -0.5], dtype=DT)
        frozen.grad = torch.tensor([3.0], dtype=DT)
        opt.step()
        scheduler.step()
        torch.testing.assert_close(w.detach() - before, torch.tensor([-lr, 0.5 * lr], dtype=DT))
        assert torch.equal(frozen.detach(), torch.tensor([1.0], dtype=DT))


def test_state_dict_deepcopy_and_no_grad_params() -> None:
    params = _params(3)
    opt = CoordinateClip(torch.optim.Adam(params, lr=0.01), fraction=0.1)
    gen = torch.Generator().manual_seed(6)
    for _ in range(3):
        for p, g in zip(params, _grads(params, gen), strict=True):
            p.grad = g
        opt.step()
    assert opt.state_dict()["state"].keys() == opt.optimizer.state_dict()["state"].keys()
    twin_params = [p.detach().clone().requires_grad_() for p in params]
    twin = CoordinateClip(torch.optim.Adam(twin_params, lr=0.01), fraction=0.1)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    clone = copy.deepcopy(opt)
    assert clone.fraction == 0.1 and clone.optimizer is not opt.optimizer
    grads = _grads(params, gen)
    params[1].grad = None  # a param without a gradient does not move
    before = params[1].detach().clone()
    for o, ps in ((opt, params), (twin, twin_params)):
        for i, p in enumerate(ps):
            p.grad = None if i == 1 else grads[i].clone()
        o.step()
    assert torch.equal(params[1].detach(), before)
    for p, q in zip(params, twin_params, strict=True):
        assert torch.equal(p.detach(), q.detach())
    assert "CoordinateClip(fraction=0.1" in repr(opt) and "Adam" in repr(opt)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("base", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_mode_is_bit_identical_to_feeding_clipped_gradients(
    base: str, dtype: torch.dtype
) -> None:
    """mode="gradient" equals the plain base optimizer fed the hand-clipped gradients, bit for
    bit (update mode is equal only to rounding: Δ carries one rounding of the step)."""

    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        if base == "sgd":
            return torch.optim.SGD(params, lr=0.037, momentum=0.5)
        return torch.optim.Adam(params, lr=0.01)

    gen = torch.Generator().manual_seed(7)
    p = torch.randn(300, generator=gen, dtype=dtype).requires_grad_()
    q = p.detach().clone().requires_grad_()
    wrapped = CoordinateClip(make([p]), threshold=0.8, mode="gradient")
    plain = make([q])
    for _ in range(10):
        g = torch.randn(300, generator=gen, dtype=dtype) * 2
        p.grad = g.clone()
        q.grad = torch.where(g.abs() > 0.8, g.sign() * 0.8, g)
        wrapped.step()
        plain.step()
        assert torch.equal(p.detach(), q.detach())
