"""Generic behaviours from torch's own optimizer tests (``OptimizerInfo`` in
``test/test_optim.py``) that every ``torch.optim`` class meets: hooks, loading a checkpoint onto
params of another dtype, an ``lr`` given only per param group, and the ``foreach`` kwarg under
``torch.no_grad``.

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError``.
"""

from __future__ import annotations

from typing import Any

import torch

from gradkit._specs import OptimizerSpec
from gradkit.testing._harness import (
    assert_same,
    configs_of,
    impl_kwargs,
    make_optimizer,
    route_groups,
    run_step,
    save_load,
    state_of,
    train,
)
from gradkit.testing._problems import TinyConvNet

__all__ = [
    "check_foreach_under_no_grad",
    "check_hooks",
    "check_load_onto_another_dtype",
    "check_lr_only_in_param_groups",
]


def check_hooks(spec: OptimizerSpec) -> None:
    """Step pre/post hooks run around ``step``; state-dict and load-state-dict pre/post hooks run
    around their calls, in that order, and a load post-hook may store a non-dict entry."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = make_optimizer(spec, params, configs_of(spec)[0])
    calls: list[str] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("step_pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("step_post"))
    optimizer.register_state_dict_pre_hook(lambda opt: calls.append("state_dict_pre"))

    def state_dict_post(opt: Any, state_dict: dict[str, Any]) -> None:
        calls.append("state_dict_post")

    def load_pre(opt: Any, state_dict: dict[str, Any]) -> None:
        calls.append("load_pre")

    def load_post(opt: Any) -> None:
        calls.append("load_post")
        opt.state["ran_load_state_dict_post_hook"] = True  # torch's test stores a bool

    optimizer.register_state_dict_post_hook(state_dict_post)
    optimizer.register_load_state_dict_pre_hook(load_pre)
    optimizer.register_load_state_dict_post_hook(load_post)
    run_step(spec, optimizer, problem, params, 0)
    optimizer.load_state_dict(save_load(optimizer.state_dict()))
    expected = [
        "step_pre",
        "step_post",
        "state_dict_pre",
        "state_dict_post",
        "load_pre",
        "load_post",
    ]
    if calls != expected:
        raise AssertionError(f"{spec.name}: hooks ran as {calls}, expected {expected}")
    state: dict[Any, Any] = optimizer.state
    if state.get("ran_load_state_dict_post_hook") is not True:
        raise AssertionError(f"{spec.name}: a load post-hook's state entry was lost")
    run_step(spec, optimizer, problem, params, 1)  # a non-dict state entry does not break it


def check_load_onto_another_dtype(spec: OptimizerSpec) -> None:
    """A float32 checkpoint loads onto float64 params: floating state follows the params' dtype
    (as ``torch.optim`` casts it), and the next steps stay finite."""
    config = configs_of(spec)[0]
    problem = TinyConvNet(torch.float32)
    params = problem.params
    optimizer = make_optimizer(spec, params, config)
    train(spec, optimizer, problem, params, range(3))
    saved = save_load(optimizer.state_dict())
    wide = TinyConvNet(torch.float64)
    with torch.no_grad():
        for target, source in zip(wide.params, params, strict=True):
            target.copy_(source)
    twin = make_optimizer(spec, wide.params, config)
    twin.load_state_dict(saved)
    for index, state in enumerate(state_of(twin, wide.params)):
        for key, value in state.items():
            floating = isinstance(value, torch.Tensor) and value.is_floating_point()
            if key != "step" and floating and value.dtype != torch.float64:
                raise AssertionError(
                    f"{spec.name}: state[{key!r}] of param {index} is {value.dtype} after "
                    "loading onto float64 params"
                )
    train(spec, twin, wide, wide.params, range(3, 5))
    for index, param in enumerate(wide.params):
        if not bool(torch.isfinite(param).all()):
            raise AssertionError(f"{spec.name}: param {index} non-finite after loading")


def check_lr_only_in_param_groups(spec: OptimizerSpec) -> None:
    """``cls([{"params": ps, "lr": x}])`` (no ``lr`` for the constructor) trains exactly like
    ``cls(ps, lr=x)``."""
    config = configs_of(spec)[0]
    runs = []
    for in_group in (False, True):
        problem = TinyConvNet(torch.float64)
        params = problem.params
        if in_group:
            groups = route_groups(spec, [{"params": params, "lr": spec.lr}])
            optimizer = spec.cls(groups, **config)
        else:
            optimizer = make_optimizer(spec, params, config)
        train(spec, optimizer, problem, params, range(4))
        runs.append(([p.detach().clone() for p in params], state_of(optimizer, params)))
    (plain, plain_state), (grouped, grouped_state) = runs
    assert_same(
        grouped,
        plain,
        grouped_state,
        plain_state,
        f"{spec.name}: lr only in the groups",
        exact=True,
    )


def check_foreach_under_no_grad(spec: OptimizerSpec) -> None:
    """Construction and steps inside ``torch.no_grad()`` (with ``foreach`` on and off) give the
    same result as outside it."""
    config = configs_of(spec)[0]
    for impl in ("forloop", *[i for i in spec.supported_impls if i == "foreach"]):
        runs = []
        for no_grad in (False, True):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            optimizer = make_optimizer(spec, params, config, **impl_kwargs(impl))
            for step in range(3):
                closure = problem.closure(params, step)
                if spec.hessian_refresh is not None:
                    spec.hessian_refresh(optimizer, problem.loss_fn(params, step))
                closure()
                step_args: tuple[Any, ...] = (closure,) if spec.requires_closure else ()
                if no_grad:
                    with torch.no_grad():
                        optimizer.step(*step_args)
                else:
                    optimizer.step(*step_args)
            runs.append(([p.detach().clone() for p in params], state_of(optimizer, params)))
        (outside, outside_state), (inside, inside_state) = runs
        assert_same(
            inside,
            outside,
            inside_state,
            outside_state,
            f"{spec.name} ({impl}): step under torch.no_grad",
            exact=True,
        )
