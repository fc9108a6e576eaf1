"""float16 / bfloat16 params: state and update arithmetic in float32 by default (issue 11 item 3).

Before: AdamP, DiffGrad, SophiaG and the AdamW part of the matrix optimizers turned float16
params into NaN on the first step (g² of ordinary gradients underflows float16 and 1/√v
explodes), as torch's Adam does. ``upcast=False`` keeps torch's convention.
"""

from __future__ import annotations

import pytest
import torch

from gradkit.registry import get_optimizer, optimizer_names

LOW = (torch.float16, torch.bfloat16)


def _run(name: str, dtype: torch.dtype, steps: int = 4, **kwargs):
    spec = get_optimizer(name)
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(8, 4, generator=gen), torch.randn(4, generator=gen)]
    grads = [[1e-3 * torch.randn(p.shape, generator=gen) for p in start] for _ in range(steps)]
    params = [torch.nn.Parameter(p.to(dtype)) for p in start]
    groups = spec.param_groups_fn(params) if spec.param_groups_fn else params
    opt = spec.cls(groups, lr=1e-3, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.to(dtype)
        if spec.hessian_refresh is not None:
            spec.hessian_refresh(opt, lambda: sum((p.float() ** 2).sum() for p in params))
        opt.step()
    return params, opt


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name", optimizer_names())
def test_low_precision_params_follow_the_float32_run(name, dtype):
    params, opt = _run(name, dtype)
    reference, _ = _run(name, torch.float32)
    for p, ref in zip(params, reference, strict=True):
        assert p.dtype == dtype
        assert bool(torch.isfinite(p).all()), f"{name}: {dtype} param became non-finite"
        # one rounding of the float32 result per step: within a few ulps of the dtype
        tol = (
            {"rtol": 2e-2, "atol": 2e-2}
            if dtype == torch.bfloat16
            else {"rtol": 4e-3, "atol": 4e-3}
        )
        torch.testing.assert_close(p.float(), ref.detach(), **tol)
        for key, value in opt.state[p].items():
            if key != "step" and isinstance(value, torch.Tensor) and value.is_floating_point():
                assert value.dtype == torch.float32, (name, key, value.dtype)


@pytest.mark.parametrize("name", ["diffgrad", "adamp"])
def test_upcast_false_is_torchs_convention(name):
    # the flag for torch's behaviour: state in float16, and the classic float16 overflow
    params, opt = _run(name, torch.float16, upcast=False)
    assert opt.state[params[0]]["exp_avg"].dtype == torch.float16
    assert not bool(torch.isfinite(params[0]).all())


def test_upcast_survives_a_checkpoint_and_old_checkpoints_default_to_it():
    _, opt = _run("diffgrad", torch.float16)
    saved = opt.state_dict()
    assert saved["param_groups"][0]["upcast"] is True
    del saved["param_groups"][0]["upcast"]  # a checkpoint from before the flag
    twin, twin_opt = _run("diffgrad", torch.float16, steps=0)
    twin_opt.load_state_dict(saved)
    assert twin_opt.param_groups[0]["upcast"] is True
    assert twin_opt.state[twin[0]]["exp_avg"].dtype == torch.float32


def test_upcast_is_validated():
    with pytest.raises(TypeError, match="Invalid upcast"):
        get_optimizer("diffgrad").cls([torch.nn.Parameter(torch.zeros(2))], upcast="yes")


def test_the_conformance_check_catches_torchs_float16_adam():
    from gradkit._specs import OptimizerSpec
    from gradkit.testing._optimizer_numerics import check_low_precision_params

    spec = OptimizerSpec(
        name="adam", cls=torch.optim.Adam, paper="", summary="torch Adam", low_precision=True
    )
    with pytest.raises(AssertionError, match=r"float16 param 0: (became non-finite|state)"):
        check_low_precision_params(spec)
    # the registry's gradkit entries claim it and pass (tests/test_conformance.py runs them)
    assert get_optimizer("diffgrad").low_precision
