"""Loaded optimizer state is validated, never trusted (issue: no silent wrong results).

Each test here failed before the validation existed: the bad checkpoint loaded silently and the
params turned NaN on the next step, or another optimizer's hyper-parameters took over.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from gradkit.optim import ARO, AdaBelief, AdamP, DiffGrad, NonFiniteGradientError, SophiaG
from gradkit.registry import get_optimizer, optimizer_names


def _trained(cls, steps=3, **kwargs):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(3))
    opt = cls([w, b], **kwargs)
    for _ in range(steps):
        w.grad = torch.randn_like(w)
        b.grad = torch.randn_like(b)
        opt.step()
    return opt, [w, b]


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict())


def _assert_unchanged(opt, params, snapshot):
    values, state = snapshot
    for p, v in zip(params, values, strict=True):
        assert torch.equal(p, v)
    now = opt.state_dict()
    assert now["param_groups"] == state["param_groups"]
    for key, entry in state["state"].items():
        for name, value in entry.items():
            assert torch.equal(now["state"][key][name], value), name


# ---------------------------------------------------------------- torch's load-hook tests
@pytest.mark.parametrize("name", optimizer_names())
def test_post_hook_sees_fixed_up_state_and_may_store_non_dict_entries(name):
    spec = get_optimizer(name)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    params = list(model.parameters())
    groups = spec.param_groups_fn(params) if spec.param_groups_fn else params
    opt = spec.cls(groups, lr=1e-3)
    model(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    saved = opt.state_dict()
    for entry in saved["state"].values():
        entry["step"] = entry["step"].to(torch.float32)  # torch's convention
    seen = []

    def post_hook(optimizer):
        # torch's test_optim stores a bool under a non-param key
        optimizer.state["ran_load_state_dict_post_hook"] = True
        seen.extend(
            s["step"].dtype for k, s in optimizer.state.items() if isinstance(s, dict) and s
        )

    def pre_hook(optimizer, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    opt.register_load_state_dict_pre_hook(pre_hook)
    opt.register_load_state_dict_post_hook(post_hook)
    opt.load_state_dict(saved)
    assert opt.state["ran_load_state_dict_post_hook"] is True
    assert seen and all(dtype == torch.int64 for dtype in seen)
    assert opt.param_groups[0]["lr"] == 0.002
    model(torch.randn(5, 3)).square().sum().backward()
    opt.step()  # a non-dict entry under a non-param key does not break the next step


# ---------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("cls", "key", "value", "match"),
    [
        (AdamP, "exp_avg", math.nan, r"param 0 of group 0, state 'exp_avg': contains NaN"),
        (AdamP, "exp_avg_sq", -1.0, r"param 0 of group 0, state 'exp_avg_sq': must be >= 0"),
        (DiffGrad, "exp_avg_sq", -1.0, r"state 'exp_avg_sq': must be >= 0"),
        (DiffGrad, "previous_grad", math.inf, r"state 'previous_grad': contains inf"),
        (AdaBelief, "exp_avg_var", -1.0, r"state 'exp_avg_var': must be >= 0"),
        (SophiaG, "hessian", -1.0, r"state 'hessian': must be >= 0"),
    ],
)
def test_bad_state_values_are_refused_and_nothing_changes(cls, key, value, match):
    opt, params = _trained(cls)
    saved = _roundtrip(opt.state_dict())
    first = next(iter(saved["state"]))
    saved["state"][first][key][0, 0] = value
    snapshot = _snapshot(opt, params)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    _assert_unchanged(opt, params, snapshot)


@pytest.mark.parametrize(
    ("step", "error", "match"),
    [
        ("3", TypeError, r"'step' must be a number, got str"),
        (-1, ValueError, r"'step' must be a whole number >= 0, got -1\.0"),
        (2.5, ValueError, r"got 2\.5"),
        (torch.tensor(math.nan), ValueError, r"got nan"),
    ],
)
def test_bad_steps_are_refused(step, error, match):
    opt, _ = _trained(AdamP)
    saved = _roundtrip(opt.state_dict())
    saved["state"][0]["step"] = step
    with pytest.raises(error, match=match):
        opt.load_state_dict(saved)


def test_wrong_shape_is_refused():
    opt, _ = _trained(AdamP)
    saved = _roundtrip(opt.state_dict())
    saved["state"][0]["exp_avg"] = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"shape \(3, 4\) does not match the expected \(4, 3\)"):
        opt.load_state_dict(saved)


def test_aro_rotation_shape_and_dtype_are_checked():
    w = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.bfloat16))
    opt = ARO([w], lr=1e-2)
    w.grad = torch.randn_like(w)
    opt.step()
    saved = _roundtrip(opt.state_dict())
    opt.load_state_dict(saved)
    assert opt.state[w]["rotation"].dtype == torch.float32
    saved["state"][0]["rotation"] = torch.eye(5)
    with pytest.raises(ValueError, match=r"state 'rotation': shape \(5, 5\)"):
        opt.load_state_dict(saved)


# ---------------------------------------------------------------- keys and the class
def test_another_optimizers_checkpoint_is_refused():
    sophia, _ = _trained(SophiaG)
    adamp, params = _trained(AdamP)
    snapshot = _snapshot(adamp, params)
    with pytest.raises(ValueError, match=r"saved by 'SophiaG', not AdamP; pass strict=False"):
        adamp.load_state_dict(sophia.state_dict())
    _assert_unchanged(adamp, params, snapshot)
    # an old checkpoint (no class marker) is still recognised by its state keys
    old = sophia.state_dict()
    del old["gradkit"]
    with pytest.raises(ValueError, match=r"state key\(s\) \['hessian'\] are not AdamP state"):
        adamp.load_state_dict(old)
    _assert_unchanged(adamp, params, snapshot)


def test_strict_false_drops_unknown_and_reinitialises_missing_keys():
    adamp, params = _trained(AdamP)
    missing = adamp.state_dict()
    del missing["state"][1]["exp_avg_sq"]
    with pytest.raises(
        ValueError, match=r"param 1 of group 0: the checkpoint has no \['exp_avg_sq'\]"
    ):
        adamp.load_state_dict(copy.deepcopy(missing))
    with pytest.warns(UserWarning, match=r"missing state \['exp_avg_sq'\] will be re-initialised"):
        adamp.load_state_dict(missing, strict=False)
    for p in params:
        p.grad = torch.ones_like(p)
    adamp.step()
    assert torch.equal(adamp.state[params[1]]["exp_avg_sq"], torch.full((3,), 1 - 0.999))
    unknown = adamp.state_dict()
    unknown["state"][0]["hessian"] = torch.zeros(4, 3)
    with pytest.warns(UserWarning, match=r"dropped unknown state key\(s\) \['hessian'\]"):
        adamp.load_state_dict(unknown, strict=False)
    assert "hessian" not in adamp.state[params[0]]


def test_checkpoints_from_before_the_marker_still_load():
    opt, params = _trained(DiffGrad)
    saved = _roundtrip(opt.state_dict())
    del saved["gradkit"]
    for entry in saved["state"].values():
        entry["step"] = float(entry["step"])
    twin, twin_params = _trained(DiffGrad, steps=0)
    with torch.no_grad():
        for p, q in zip(twin_params, params, strict=True):
            p.copy_(q)
    twin.load_state_dict(saved)
    assert all(s["step"].dtype == torch.int64 for s in twin.state.values())


def test_state_dict_names_the_class():
    opt, _ = _trained(AdaBelief)
    assert _roundtrip(opt.state_dict())["gradkit"] == {"optimizer": "AdaBelief", "format": 1}


def test_not_a_state_dict():
    opt, _ = _trained(AdamP)
    with pytest.raises(TypeError, match="expects a mapping, got list"):
        opt.load_state_dict([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no 'param_groups' entry"):
        opt.load_state_dict({"state": {}})


# ---------------------------------------------------------------- hyper-parameters at step time
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (math.nan, ValueError, r"AdamP param group 0: Invalid lr: nan \(must be finite\)"),
        (-0.1, ValueError, r"AdamP param group 0: Invalid lr: -0\.1"),
        ("0.1", TypeError, r"AdamP param group 0: Invalid lr: '0\.1'"),
    ],
)
def test_hyperparameters_changed_after_construction_are_checked_at_step(value, error, match):
    opt, params = _trained(AdamP)
    snapshot = _snapshot(opt, params)
    opt.param_groups[0]["lr"] = value
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(error, match=match):
        opt.step()
    opt.param_groups[0]["lr"] = snapshot[1]["param_groups"][0]["lr"]
    _assert_unchanged(opt, params, snapshot)


def test_bad_group_values_in_a_checkpoint_are_refused():
    opt, _ = _trained(AdamP)
    saved = opt.state_dict()
    saved["param_groups"][0]["betas"] = (0.9, "x")
    with pytest.raises(TypeError, match=r"Invalid betas\[1\]: 'x'"):
        opt.load_state_dict(saved)


# ---------------------------------------------------------------- the non-finite message
def test_nonfinite_message_names_a_non_finite_param_not_just_the_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, math.nan]))
    opt = DiffGrad([w])
    w.grad = torch.tensor([0.1, math.nan])
    with pytest.raises(NonFiniteGradientError, match="the param itself is already non-finite"):
        opt.step()
    w2 = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt2 = DiffGrad([w2])
    w2.grad = torch.tensor([0.1, math.nan])
    with pytest.raises(NonFiniteGradientError, match=r"contains NaN; this step was not applied"):
        opt2.step()


# ---------------------------------------------------------------- lr given only per group
def test_sgdp_accepts_lr_given_only_in_the_param_groups():
    from gradkit.optim import SGDP

    ps = [torch.nn.Parameter(torch.randn(3, 2))]
    opt = SGDP([{"params": ps, "lr": 0.1}])
    assert opt.param_groups[0]["lr"] == 0.1
    ps[0].grad = torch.ones_like(ps[0])
    before = ps[0].detach().clone()
    opt.step()
    assert not torch.equal(ps[0], before)
    with pytest.raises(ValueError, match=r"SGDP: param group 0 did not specify .* 'lr'"):
        SGDP([{"params": [torch.nn.Parameter(torch.randn(2))]}])


# ---------------------------------------------------------------- meta-device params
@pytest.mark.parametrize("name", optimizer_names())
def test_meta_device_params_step_like_torch(name):
    # torch.optim steps meta params (shape-only); gradkit raised "Tensor.item() cannot be
    # called on meta tensors" from its finiteness check.
    spec = get_optimizer(name)
    w = torch.nn.Parameter(torch.empty(3, 2, device="meta"))
    groups = spec.param_groups_fn([w]) if spec.param_groups_fn else [w]
    opt = spec.cls(groups, lr=0.1)
    w.grad = torch.empty(3, 2, device="meta")
    opt.step()
    assert w.device.type == "meta"


# ---------------------------------------------------------------- CoordinateClip on complex
def test_coordinate_clip_refuses_complex_params_before_stepping():
    from gradkit.transforms import CoordinateClip, coordinate_clip

    w = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    opt = CoordinateClip(torch.optim.SGD([w], lr=0.1), threshold=0.01)
    w.grad = torch.randn(3, dtype=torch.complex64)
    before = w.detach().clone()
    with pytest.raises(TypeError, match=r"param 0 is torch\.complex64.*view_as_real"):
        opt.step()
    assert torch.equal(w.detach(), before)
    with pytest.raises(TypeError, match=r"tensor 0 is torch\.complex64"):
        coordinate_clip([torch.ones(2, dtype=torch.complex64)], threshold=1.0)


# ---------------------------------------------------------------- fused=True is quiet
@pytest.mark.compile
def test_fused_first_step_prints_no_torch_deprecation_warnings():
    import warnings

    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = DiffGrad([w], fused=True)
    w.grad = torch.randn(4, 3)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    assert not [str(c.message) for c in caught if issubclass(c.category, DeprecationWarning)]
