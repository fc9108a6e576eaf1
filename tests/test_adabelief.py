"""AdaBelief: parity with ``adabelief-pytorch==0.2.1`` over its full option grid, the oracles of
the spec (section 3e), and each documented deviation from the reference."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import itertools
import math

import pytest
import torch
from adabelief_pytorch import AdaBelief as RefAdaBelief
from torch import nn

from gradkit.optim import AdaBelief
from gradkit.optim._adabelief import registry_spec


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine a busy
    second thread makes every op wait (10-50x slower); run this module single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


IMPLS = {"forloop": {"foreach": False}, "foreach": {"foreach": True}}
STATE_NAMES = ("exp_avg", "exp_avg_var", "max_exp_avg_var")

# The full option grid adabelief_pytorch.AdaBelief 0.2.1 exposes; degenerated_to_sgd only
# matters with rectify=True, so it is varied there only. Every flag is passed explicitly.
RECTIFY = (False, True)
AMSGRAD = (False, True)
WEIGHT_DECOUPLE = (False, True)
FIXED_DECAY = (False, True)
WEIGHT_DECAY = (0.0, 1e-2)
DEGENERATED_TO_SGD = (False, True)
EPS = (1e-16, 1e-8)
GRID = [
    dict(
        lr=1e-2,
        betas=(0.9, 0.999),
        eps=eps,
        weight_decay=wd,
        amsgrad=amsgrad,
        weight_decouple=decouple,
        fixed_decay=fixed,
        rectify=rectify,
        degenerated_to_sgd=degenerated,
    )
    for rectify, amsgrad, decouple, fixed, wd, degenerated, eps in itertools.product(
        RECTIFY, AMSGRAD, WEIGHT_DECOUPLE, FIXED_DECAY, WEIGHT_DECAY, DEGENERATED_TO_SGD, EPS
    )
    if rectify or degenerated  # degenerated_to_sgd is inert without rectify: keep one value
]
# Other betas, where the rectification threshold is reached at other steps.
GRID += [
    {**GRID[0], "betas": (0.5, 0.99), "rectify": rectify, "amsgrad": True, "weight_decay": 1e-2}
    for rectify in (False, True)
]


def _config_id(config: dict) -> str:
    flags = [
        name for name in ("rectify", "amsgrad", "weight_decouple", "fixed_decay") if config[name]
    ]
    if config["rectify"] and not config["degenerated_to_sgd"]:
        flags.append("nodegen")
    betas = "" if config["betas"] == (0.9, 0.999) else f"-b{config['betas']}"
    return f"{'+'.join(flags) or 'plain'}-wd{config['weight_decay']}-eps{config['eps']}{betas}"


def _reference(params, **config) -> RefAdaBelief:
    """The reference, quiet: it prints on construction even with print_change_log=False."""
    with contextlib.redirect_stdout(io.StringIO()):
        return RefAdaBelief(params, print_change_log=False, **config)


def _model(dtype: torch.dtype) -> nn.Module:
    """A conv with a bias followed by BatchNorm (so the bias gradient is ~0 and AdaBelief's
    second moment there is almost only the accumulated ε), then linear weights and biases."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).to(dtype)


def _lockstep(
    config: dict, impls: dict[str, dict], dtype: torch.dtype, steps: int = 50
) -> tuple[RefAdaBelief, list[nn.Parameter], dict[str, tuple[AdaBelief, list[nn.Parameter]]]]:
    """Train one model per optimizer (the reference and each gradkit impl) in lock step: each
    step the gradient is computed once by a real forward/backward (on the first gradkit model)
    and every optimizer gets its own fresh copy of it."""
    ref_model = _model(dtype)
    ref = _reference(ref_model.parameters(), **config)
    models = {name: _model(dtype) for name in impls}
    ours = {
        name: (AdaBelief(model.parameters(), **config, **impls[name]), list(model.parameters()))
        for name, model in models.items()
    }
    driver = next(iter(models.values()))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 1, 6, 6, generator=gen, dtype=dtype)
        y = torch.randint(0, 3, (16,), generator=gen)
        driver.zero_grad()
        nn.functional.cross_entropy(driver(x), y).backward()
        grads = [p.grad.detach().clone() for p in driver.parameters()]
        for params in [list(ref_model.parameters())] + [params for _, params in ours.values()]:
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad.clone()
        ref.step()
        for optimizer, _ in ours.values():
            optimizer.step()
    return ref, list(ref_model.parameters()), ours


def _assert_parity(
    config: dict, impls: dict[str, dict], dtype: torch.dtype, **tolerance: float
) -> None:
    ref, ref_params, ours = _lockstep(config, impls, dtype)
    for name, (optimizer, params) in ours.items():
        for index, (param, ref_param) in enumerate(zip(params, ref_params, strict=True)):
            what = f"{name} param {index}"
            assert param.dtype == ref_param.dtype, what
            torch.testing.assert_close(param.detach(), ref_param.detach(), **tolerance, msg=what)
            state, ref_state = optimizer.state[param], ref.state[ref_param]
            assert int(state["step"]) == ref_state["step"], what
            compared = [key for key in STATE_NAMES if key in ref_state]
            assert sorted(compared) == sorted(k for k in state if k != "step"), what
            for key in compared:
                torch.testing.assert_close(
                    state[key], ref_state[key], **tolerance, msg=f"{what} {key}"
                )


@pytest.mark.parametrize("config", GRID, ids=[_config_id(c) for c in GRID])
def test_parity_float64(config: dict) -> None:
    """Params and every state tensor match the reference after 50 float64 steps, for the
    for-loop and the foreach implementations."""
    _assert_parity(config, IMPLS, torch.float64, rtol=1e-7, atol=1e-9)


def test_parity_float32() -> None:
    config = dict(GRID[0], rectify=True, amsgrad=True, weight_decay=1e-2, eps=1e-8)
    _assert_parity(config, IMPLS, torch.float32, rtol=1e-5, atol=1e-6)


def test_parity_float16_upcasts_like_the_reference() -> None:
    """float16 params are stepped in float32 with float32 state and rounded back, as in 0.2.1."""
    config = dict(GRID[0], rectify=False, weight_decouple=False, weight_decay=1e-2)
    ref, ref_params, ours = _lockstep(config, IMPLS, torch.float16, steps=20)
    for name, (optimizer, params) in ours.items():
        for param, ref_param in zip(params, ref_params, strict=True):
            assert param.dtype == torch.float16
            assert optimizer.state[param]["exp_avg_var"].dtype == torch.float32
            torch.testing.assert_close(
                param.detach(), ref_param.detach(), rtol=1e-3, atol=1e-3, msg=name
            )
            torch.testing.assert_close(
                optimizer.state[param]["exp_avg"],
                ref.state[ref_param]["exp_avg"],
                rtol=1e-4,
                atol=1e-6,
            )


@pytest.mark.compile
def test_parity_fused() -> None:
    """The compiled path against the reference (the one fused case here; the conformance suite
    covers the rest). The config switches rectification branch (SGD for steps 1-5, adaptive from
    step 6) with AMSGrad and coupled decay, and the second param is frozen for its first 3 steps,
    so for a while the two params of the group take different branches in the same graph. The
    gradients are left untouched."""
    config = dict(
        GRID[0], rectify=True, amsgrad=True, weight_decouple=False, weight_decay=1e-2, eps=1e-8
    )
    gen = torch.Generator().manual_seed(11)
    values = [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
    params = [v.clone().requires_grad_() for v in values]
    ref_params = [v.clone().requires_grad_() for v in values]
    optimizer = AdaBelief(params, **config, fused=True)
    ref = _reference(ref_params, **config)
    for t in range(12):
        grads = [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
        for index in range(2):
            frozen = index == 1 and t < 3
            params[index].grad = None if frozen else grads[index]
            ref_params[index].grad = None if frozen else grads[index].clone()
        saved = [g.clone() for g in grads]
        optimizer.step()
        ref.step()
        assert all(torch.equal(g, s) for g, s in zip(grads, saved, strict=True))
    assert [int(optimizer.state[p]["step"]) for p in params] == [12, 9]
    for param, ref_param in zip(params, ref_params, strict=True):
        torch.testing.assert_close(param.detach(), ref_param.detach(), rtol=1e-7, atol=1e-9)
        for key in STATE_NAMES:
            torch.testing.assert_close(
                optimizer.state[param][key], ref.state[ref_param][key], rtol=1e-7, atol=1e-9
            )


# ---------------------------------------------------------------------------- oracles
def _one_step(values: torch.Tensor, grad: torch.Tensor, **config) -> torch.Tensor:
    param = values.clone().requires_grad_()
    optimizer = AdaBelief([param], **config)
    param.grad = grad.clone()
    optimizer.step()
    return param.detach() - values


@pytest.mark.parametrize("impl", list(IMPLS))
def test_first_step_without_rectification(impl: str) -> None:
    """Spec 3e: Δθ₁ = −η g / (√(β₁² g² + ε/(1−β₂)) + ε), ≈ −(η/β₁) sign(g) for large |g|."""
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    grad = torch.tensor([1.0, -3.0, 1e-4, -2e-5, 0.0], dtype=torch.float64)
    delta = _one_step(
        torch.ones(5, dtype=torch.float64), grad, lr=lr, betas=(beta1, beta2), eps=eps,
        rectify=False, **IMPLS[impl],
    )  # fmt: skip
    expected = -lr * grad / (torch.sqrt(beta1**2 * grad**2 + eps / (1 - beta2)) + eps)
    torch.testing.assert_close(delta, expected, rtol=1e-12, atol=0)
    assert delta[0].item() == pytest.approx(-lr / beta1, rel=1e-4)  # ≈ −1.111 η
    assert abs(delta[2].item()) < 0.1 * lr / beta1  # ε dominates for small gradients


@pytest.mark.parametrize("impl", list(IMPLS))
def test_first_step_with_rectification_is_minus_lr_g(impl: str) -> None:
    grad = torch.tensor([1.0, -3.0, 1e-4, 0.0], dtype=torch.float64)
    delta = _one_step(
        torch.zeros(4, dtype=torch.float64), grad, lr=0.1, rectify=True, **IMPLS[impl]
    )
    torch.testing.assert_close(delta, -0.1 * grad, rtol=1e-15, atol=0)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("degenerated", [True, False])
def test_rectified_first_five_steps(impl: str, degenerated: bool) -> None:
    """With β₂=0.999, ρ_t < 5 for t ≤ 5: SGD-momentum steps θ −= η m/(1−β₁^t) (or none without
    degenerated_to_sgd); step 6 is the first adaptive one, θ −= η r₆/(1−β₁⁶) m/(√s + ε)."""
    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    param = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    optimizer = AdaBelief(
        [param], lr=lr, betas=(beta1, beta2), eps=eps, rectify=True,
        degenerated_to_sgd=degenerated, **IMPLS[impl],
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    m = torch.zeros(3, dtype=torch.float64)
    s = torch.zeros(3, dtype=torch.float64)
    for t in range(1, 7):
        grad = torch.randn(3, generator=gen, dtype=torch.float64)
        before = param.detach().clone()
        param.grad = grad.clone()
        optimizer.step()
        m = beta1 * m + (1 - beta1) * grad
        s = beta2 * s + (1 - beta2) * (grad - m) ** 2 + eps
        if t <= 5:
            expected = (
                -lr * m / (1 - beta1**t) if degenerated else torch.zeros(3, dtype=torch.float64)
            )
        else:
            rho_inf = 2 / (1 - beta2) - 1
            rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
            assert rho >= 5
            r = math.sqrt(
                (1 - beta2**t)
                * (rho - 4)
                * (rho - 2)
                * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho)
            )
            expected = -lr * r / (1 - beta1**t) * m / (s.sqrt() + eps)
        torch.testing.assert_close(
            param.detach() - before, expected, rtol=1e-10, atol=1e-15, msg=f"step {t}"
        )


@pytest.mark.parametrize("impl", list(IMPLS))
def test_eps_accumulates_in_the_second_moment(impl: str) -> None:
    """With g = 0 (so g − m = 0), s_t = ε (1−β₂^t)/(1−β₂): ε is accumulated in the state."""
    param = torch.ones(2, dtype=torch.float64, requires_grad=True)
    optimizer = AdaBelief([param], eps=1e-8, **IMPLS[impl])
    for _ in range(10):
        param.grad = torch.zeros(2, dtype=torch.float64)
        optimizer.step()
    expected = 1e-8 * (1 - 0.999**10) / (1 - 0.999)
    torch.testing.assert_close(
        optimizer.state[param]["exp_avg_var"], torch.full((2,), expected, dtype=torch.float64)
    )


@pytest.mark.parametrize("impl", list(IMPLS))
def test_rectified_amsgrad_divides_by_s_not_s_max(impl: str) -> None:
    """The reference's rectified branch ignores max_exp_avg_var; gradkit too (and parity)."""
    # β2 = 0.9: adaptive from step 6, and s forgets the large first gradient quickly.
    config = dict(GRID[0], betas=(0.9, 0.9), rectify=True, amsgrad=True, eps=1e-8)
    steps = 40
    grads = [torch.tensor([10.0, -10.0], dtype=torch.float64)] + [
        torch.tensor([0.01, 0.02], dtype=torch.float64) * (k % 3) for k in range(steps - 1)
    ]
    param = torch.ones(2, dtype=torch.float64, requires_grad=True)
    ref_param = torch.ones(2, dtype=torch.float64, requires_grad=True)
    optimizer = AdaBelief([param], **config, **IMPLS[impl])
    ref = _reference([ref_param], **config)
    for grad in grads:
        before = param.detach().clone()
        param.grad, ref_param.grad = grad.clone(), grad.clone()
        optimizer.step()
        ref.step()
    state = optimizer.state[param]
    assert (state["max_exp_avg_var"] > 20 * state["exp_avg_var"]).all()  # s_max would matter
    t, (beta1, beta2) = steps, config["betas"]
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    r = math.sqrt(
        (1 - beta2**t) * (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    )
    expected = (
        -config["lr"] * r / (1 - beta1**t) * state["exp_avg"] / (state["exp_avg_var"].sqrt() + 1e-8)
    )
    torch.testing.assert_close(param.detach() - before, expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(param.detach(), ref_param.detach(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_coupled_l2_changes_the_result(impl: str) -> None:
    """weight_decouple=False adds λθ to the gradient before the moments (0.2.x), so the decay is
    effective (in 0.1.0 it came after the moments and did nothing)."""
    values = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    grad = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)

    def run(weight_decay: float, manual_l2: bool = False) -> torch.Tensor:
        param = values.clone().requires_grad_()
        optimizer = AdaBelief(
            [param], lr=0.1, weight_decay=weight_decay, weight_decouple=False, rectify=False,
            eps=1e-8, **IMPLS[impl],
        )  # fmt: skip
        for _ in range(5):
            param.grad = grad + 0.5 * param.detach() if manual_l2 else grad.clone()
            optimizer.step()
        return param.detach()

    assert not torch.allclose(run(0.5), run(0.0))
    torch.testing.assert_close(run(0.5), run(0.0, manual_l2=True), rtol=1e-12, atol=0)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_grad_is_not_mutated(impl: str, dtype: torch.dtype) -> None:
    """The reference adds λθ to p.grad in place (and replaces a float16 p.grad); gradkit leaves
    p.grad untouched: same object, same values, same dtype."""
    param = torch.tensor([1.0, -2.0, 3.0], dtype=dtype, requires_grad=True)
    optimizer = AdaBelief(
        [param], lr=0.1, weight_decay=0.5, weight_decouple=False, maximize=True, **IMPLS[impl]
    )
    grad = torch.tensor([0.1, 0.2, -0.3], dtype=dtype)
    param.grad = grad
    saved = grad.clone()
    optimizer.step()
    assert param.grad is grad
    assert torch.equal(grad, saved)


def test_reference_does_mutate_grad() -> None:
    """Documents the reference behaviour gradkit deviates from."""
    param = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    ref = _reference([param], weight_decay=0.5, weight_decouple=False)
    param.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
    ref.step()
    assert not torch.equal(param.grad, torch.tensor([0.1, 0.2], dtype=torch.float64))


# ---------------------------------------------------------------------------- per-param steps
def _frozen_layer_run(make, frozen_steps: int = 8, steps: int = 20):
    """Two params in one group; the second gets no gradient for its first ``frozen_steps``
    steps, so the two params' step counts differ by that much. Returns (both params of the
    group run, the second param run alone from when it is unfrozen)."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    b = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    solo = b.detach().clone().requires_grad_()
    group, alone = make([a, b]), make([solo])
    for t in range(steps):
        a.grad = torch.randn(4, generator=gen, dtype=torch.float64)
        grad_b = torch.randn(4, generator=gen, dtype=torch.float64)
        b.grad = None
        if t >= frozen_steps:
            b.grad, solo.grad = grad_b.clone(), grad_b.clone()
            alone.step()
        group.step()
    return group, a, b, solo


@pytest.mark.parametrize("impl", list(IMPLS))
def test_each_param_uses_its_own_step(impl: str) -> None:
    """A layer frozen for 8 steps: its ρ_t, r_t and bias corrections come from its own step
    count (it takes SGD steps while the other param is already adaptive), exactly as if it were
    optimized alone. The reference agrees here: its buffer is keyed on the exact step."""
    config = dict(GRID[0], rectify=True, eps=1e-8)
    group, a, b, solo = _frozen_layer_run(lambda ps: AdaBelief(ps, **config, **IMPLS[impl]))
    assert int(group.state[a]["step"]) == 20 and int(group.state[b]["step"]) == 12
    torch.testing.assert_close(b.detach(), solo.detach(), rtol=1e-12, atol=0)
    _, _, ref_b, _ = _frozen_layer_run(lambda ps: _reference(ps, **config))
    torch.testing.assert_close(b.detach(), ref_b.detach(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_rectification_terms_follow_the_group_betas(impl: str) -> None:
    """Deviation: the reference shares one (step % 10)-keyed rectification cache between the
    groups built from its defaults, so a group added with add_param_group and other betas reuses
    terms computed for the default betas. gradkit computes them from each group's own betas."""
    config = dict(GRID[0], rectify=True, eps=1e-8)
    other = {"betas": (0.9, 0.99)}

    def run(make):
        gen = torch.Generator().manual_seed(5)
        a = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_()
        b = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_()
        solo = b.detach().clone().requires_grad_()
        optimizer = make([a], config)
        optimizer.add_param_group({"params": [b], **other})
        alone = make([solo], {**config, **other})
        for _ in range(20):
            a.grad = torch.randn(3, generator=gen, dtype=torch.float64)
            b.grad = torch.randn(3, generator=gen, dtype=torch.float64)
            solo.grad = b.grad.clone()
            optimizer.step()
            alone.step()
        return b.detach(), solo.detach()

    ours_b, ours_solo = run(lambda ps, c: AdaBelief(ps, **c, **IMPLS[impl]))
    torch.testing.assert_close(ours_b, ours_solo, rtol=1e-12, atol=0)
    ref_b, ref_solo = run(lambda ps, c: _reference(ps, **c))
    torch.testing.assert_close(ours_solo, ref_solo, rtol=1e-7, atol=1e-9)  # a lone group agrees
    assert not torch.allclose(ref_b, ref_solo)  # the reference's stale cache


# ---------------------------------------------------------------------------- implementations
def test_foreach_matches_forloop_on_mixed_dtypes_and_steps() -> None:
    """One group holding float64, float32, float16 and bfloat16 params with different step
    counts and AMSGrad switched on midway: foreach matches the for-loop reference."""
    dtypes = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

    def run(foreach: bool):
        gen = torch.Generator().manual_seed(7)
        params = [torch.randn(5, 3, generator=gen).to(d).requires_grad_() for d in dtypes]
        optimizer = AdaBelief(params, lr=1e-2, eps=1e-8, weight_decay=1e-2, foreach=foreach)
        for t in range(14):
            if t == 7:
                optimizer.param_groups[0]["amsgrad"] = True
            for index, param in enumerate(params):
                grad = torch.randn(5, 3, generator=gen).to(param.dtype)
                param.grad = grad if t >= 2 * index else None
            optimizer.step()
        return params, optimizer

    (loop_params, loop_opt), (each_params, each_opt) = run(False), run(True)
    for loop_param, each_param in zip(loop_params, each_params, strict=True):
        # Same math; the op order differs by an FMA here and there, which float64/32 (and the
        # float32 state of float16) absorb, while bfloat16 arithmetic can move by an ulp.
        tol = dict(rtol=5e-2, atol=1e-2) if loop_param.dtype == torch.bfloat16 else {}
        torch.testing.assert_close(each_param, loop_param, **tol, msg=str(loop_param.dtype))
        for key in STATE_NAMES:
            each, loop = each_opt.state[each_param][key], loop_opt.state[loop_param][key]
            torch.testing.assert_close(each, loop, **tol, msg=f"{loop_param.dtype} {key}")
    assert loop_opt.state[loop_params[2]]["exp_avg"].dtype == torch.float32  # float16 upcast
    # bfloat16: float32 state under upcast=True (the default); upcast=False keeps the
    # reference's bfloat16 state (its float16 upcast is AdaBelief's own and stays)
    assert loop_opt.state[loop_params[3]]["exp_avg"].dtype == torch.float32
    native = [torch.zeros(2, dtype=d, requires_grad=True) for d in (torch.float16, torch.bfloat16)]
    optimizer = AdaBelief(native, upcast=False)
    for param in native:
        param.grad = torch.ones_like(param)
    optimizer.step()
    assert optimizer.state[native[0]]["exp_avg"].dtype == torch.float32
    assert optimizer.state[native[1]]["exp_avg"].dtype == torch.bfloat16


@pytest.mark.parametrize("impl", list(IMPLS))
def test_maximize_is_descent_on_the_negated_gradient(impl: str) -> None:
    def run(maximize: bool) -> torch.Tensor:
        param = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
        optimizer = AdaBelief(
            [param],
            lr=0.1,
            weight_decay=0.1,
            weight_decouple=False,
            maximize=maximize,
            **IMPLS[impl],
        )
        gen = torch.Generator().manual_seed(0)
        for _ in range(8):
            grad = torch.randn(3, generator=gen, dtype=torch.float64)
            param.grad = -grad if maximize else grad
            optimizer.step()
        return param.detach()

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)


def test_float16_state_stays_float32_through_a_checkpoint() -> None:
    """torch.optim casts loaded state to the param dtype; gradkit keeps float16 params' float32
    state, so a resumed run is bit-identical."""

    def train(optimizer, param, steps) -> None:
        gen = torch.Generator().manual_seed(len(steps))
        for _ in steps:
            param.grad = (torch.randn(6, generator=gen) * 1e-3).half()
            optimizer.step()

    param = torch.randn(6).half().requires_grad_()
    optimizer = AdaBelief([param], lr=1e-2)
    train(optimizer, param, range(3))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    twin_param = param.detach().clone().requires_grad_()
    twin = AdaBelief([twin_param], lr=1e-2)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    assert twin.state[twin_param]["exp_avg_var"].dtype == torch.float32
    train(optimizer, param, range(5))
    train(twin, twin_param, range(5))
    assert torch.equal(param, twin_param)
    for key in ("exp_avg", "exp_avg_var"):
        assert torch.equal(optimizer.state[param][key], twin.state[twin_param][key])


# ---------------------------------------------------------------------------- API
def test_signature_and_defaults_match_the_reference() -> None:
    ours = inspect.signature(AdaBelief).parameters
    ref = inspect.signature(RefAdaBelief).parameters
    for name, parameter in ref.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    for name in ("maximize", "foreach", "fused", "nonfinite"):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_never_prints(capsys: pytest.CaptureFixture[str]) -> None:
    param = torch.ones(2, requires_grad=True)
    optimizer = AdaBelief(
        [param], print_change_log=True, amsgrad=True, fixed_decay=True, weight_decay=0.1
    )
    param.grad = torch.ones(2)
    optimizer.step()
    copy.deepcopy(optimizer).state_dict()
    assert capsys.readouterr() == ("", "")
    assert "print_change_log" not in optimizer.defaults


def test_print_change_log_must_be_bool() -> None:
    with pytest.raises(TypeError, match=r"Invalid print_change_log: 'no' \(expected a bool"):
        AdaBelief([torch.ones(2, requires_grad=True)], print_change_log="no")  # type: ignore[arg-type]


def test_registry_entry() -> None:
    from gradkit.registry import get_optimizer

    spec = get_optimizer("adabelief")
    assert spec.cls is AdaBelief and spec.name == registry_spec().name == "adabelief"
    configs = spec.configs
    assert any(c.get("rectify", True) for c in configs) and any(
        not c.get("rectify", True) for c in configs
    )
    assert any(c.get("amsgrad") for c in configs) and any(c.get("fixed_decay") for c in configs)
    assert any(c.get("weight_decouple") is False and c.get("weight_decay") for c in configs)
    invalid = {name for error in spec.error_inputs for name in error.kwargs}
    assert {"lr", "betas", "eps", "weight_decay", "amsgrad", "weight_decouple", "fixed_decay",
            "rectify", "degenerated_to_sgd"} <= invalid  # fmt: skip
    for error in spec.error_inputs:
        with pytest.raises(error.error, match=error.match):
            AdaBelief([torch.ones(2, requires_grad=True)], **error.kwargs)
