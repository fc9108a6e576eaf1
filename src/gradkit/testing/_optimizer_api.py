"""Optimizer conformance checks on the ``torch.optim`` API: param groups and
``add_param_group``, a step without gradients, ``deepcopy``/``repr``, error messages, the
non-finite policy and closures.

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError`` with a
message saying what broke.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import torch

from gradkit._specs import ErrorInput, OptimizerSpec
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError
from gradkit.testing._harness import (
    assert_lockstep,
    assert_same,
    configs_of,
    expect_error,
    locate,
    make_optimizer,
    route_groups,
    run_step,
    snapshot,
    state_of,
    train,
)
from gradkit.testing._problems import TinyConvNet

__all__ = [
    "check_add_param_group",
    "check_closure",
    "check_deepcopy_and_repr",
    "check_error_inputs",
    "check_no_grad_step_is_noop",
    "check_nonfinite_policy",
    "check_param_groups",
]


def check_param_groups(spec: OptimizerSpec) -> None:
    """Per-group ``lr`` and ``weight_decay`` are honoured: two groups in one optimizer give the
    same result as two optimizers with one group each; a group with ``lr=0`` stays put."""
    config = configs_of(spec)[0]
    problem = TinyConvNet(torch.float64)
    together = problem.clone_params()
    apart = problem.clone_params()
    extra_a: dict[str, Any] = {"lr": spec.lr * 0.5}
    extra_b: dict[str, Any] = {"lr": spec.lr * 2.0}
    if spec.has_weight_decay:
        extra_a["weight_decay"] = 0.05
        extra_b["weight_decay"] = 0.0
    groups = [{"params": together[:2], **extra_a}, {"params": together[2:], **extra_b}]
    optimizer = make_optimizer(spec, groups, config)
    first = make_optimizer(spec, apart[:2], {**config, **extra_a})
    second = make_optimizer(spec, apart[2:], {**config, **extra_b})
    for step in range(4):
        run_step(spec, optimizer, problem, together, step)
        closure = problem.closure(apart, step)
        for sub in (first, second):
            if spec.hessian_refresh is not None:
                spec.hessian_refresh(sub, problem.loss_fn(apart, step))
        closure()
        for sub in (first, second):
            sub.step(cast(Any, closure)) if spec.requires_closure else sub.step()
    state_apart = state_of(first, apart[:2]) + state_of(second, apart[2:])
    assert_same(
        together,
        apart,
        state_of(optimizer, together),
        state_apart,
        f"{spec.name}: per-group hyper-parameters",
    )

    # A group with lr=0 next to a moving group: its params must not move.
    problem = TinyConvNet(torch.float64)
    params = problem.params
    before = [p.detach().clone() for p in params[:2]]
    optimizer = make_optimizer(
        spec, [{"params": params[:2], "lr": 0.0}, {"params": params[2:]}], config
    )
    train(spec, optimizer, problem, params, range(3))
    for index, (param, old) in enumerate(zip(params[:2], before, strict=True)):
        if not torch.equal(param.detach(), old):
            raise AssertionError(f"{spec.name}: param {index} in a group with lr=0 moved")
    if torch.equal(params[2].detach(), TinyConvNet(torch.float64).params[2].detach()):
        raise AssertionError(f"{spec.name}: the group with the default lr did not move")


def check_add_param_group(spec: OptimizerSpec) -> None:
    """``add_param_group`` adds a trainable group and validates its hyper-parameters."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = make_optimizer(spec, params[:2], configs_of(spec)[0])
    for group in route_groups(spec, [{"params": params[2:], "lr": spec.lr}]):
        optimizer.add_param_group(group)
    old = params[2].detach().clone()
    train(spec, optimizer, problem, params, range(2))
    if torch.equal(old, params[2].detach()):
        raise AssertionError(f"{spec.name}: a param added with add_param_group did not move")
    if not spec.validates_group_overrides:
        return
    extra = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def add_bad_group() -> None:
        for group in route_groups(spec, [{"params": [extra], "lr": -1.0}]):
            optimizer.add_param_group(group)

    expect_error(
        ErrorInput({}, ValueError, r"lr"),
        add_bad_group,
        f"{spec.name}: add_param_group(lr=-1) error does not name lr",
        not_raised=f"{spec.name}: add_param_group accepted lr=-1.0",
    )


def check_no_grad_step_is_noop(spec: OptimizerSpec) -> None:
    """A step with no gradients changes neither params nor state (before and after training)."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = make_optimizer(spec, params, configs_of(spec)[0])
    before = [p.detach().clone() for p in params]
    optimizer.step() if not spec.requires_closure else None
    if any(not torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True)) or len(
        optimizer.state
    ):
        raise AssertionError(f"{spec.name}: a step with no gradients changed params or state")
    train(spec, optimizer, problem, params, range(2))
    before = [p.detach().clone() for p in params]
    state_before = snapshot(state_of(optimizer, params))
    for param in params:
        param.grad = None
    if not spec.requires_closure:
        optimizer.step()
    assert_same(
        params,
        before,
        state_of(optimizer, params),
        state_before,
        f"{spec.name}: no-grad step",
        exact=True,
    )


def check_deepcopy_and_repr(spec: OptimizerSpec) -> None:
    """``deepcopy`` keeps state and hyper-parameters and gives an independent optimizer that
    continues identically; ``repr`` names the class and shows the hyper-parameters."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = make_optimizer(spec, params, configs_of(spec)[0])
    train(spec, optimizer, problem, params, range(2))
    if not optimizer.state:
        raise AssertionError(f"{spec.name}: state is empty after two steps")
    clone = copy.deepcopy(optimizer)
    clone_params = []  # the clone's params in the problem's order
    for param in params:
        group_index, index = locate(optimizer, param)
        clone_params.append(clone.param_groups[group_index]["params"][index])
    if any(cp is p for cp, p in zip(clone_params, params, strict=True)):
        raise AssertionError(f"{spec.name}: deepcopy shares params with the original")
    for attr in ("defaults", "skipped_steps"):
        if hasattr(optimizer, attr) and getattr(clone, attr) != getattr(optimizer, attr):
            raise AssertionError(f"{spec.name}: deepcopy changed {attr}")
    assert_same(
        clone_params,
        params,
        state_of(clone, clone_params),
        state_of(optimizer, params),
        f"{spec.name}: deepcopy",
        exact=True,
    )
    assert_lockstep(
        spec,
        problem,
        (optimizer, params),
        (clone, clone_params),
        range(2, 4),
        lambda step: f"{spec.name}: deepcopy then step {step}",
    )
    text = repr(optimizer)
    if type(optimizer).__name__ not in text:
        raise AssertionError(f"{spec.name}: repr does not name the class: {text}")
    for name in spec.hyperparams:
        if name not in text:
            raise AssertionError(f"{spec.name}: repr does not show {name!r}: {text}")


def check_error_inputs(spec: OptimizerSpec) -> None:
    """Every registered invalid hyper-parameter raises its error with the expected message, in
    the constructor and in a per-group override; plus the errors common to all optimizers."""
    config = configs_of(spec)[0]

    def params() -> list[torch.Tensor]:
        return [torch.zeros(2, 3, requires_grad=True)]

    def construct(kwargs: dict[str, Any]) -> Callable[[], Any]:
        return lambda: make_optimizer(spec, params(), config, **kwargs)

    def construct_group(kwargs: dict[str, Any]) -> Callable[[], Any]:
        return lambda: make_optimizer(spec, [{"params": params(), **kwargs}], config)

    for error in spec.error_inputs:
        expect_error(error, construct(error.kwargs), f"{spec.name}{error.kwargs}")
        if spec.validates_group_overrides:
            expect_error(
                error, construct_group(error.kwargs), f"{spec.name} group override {error.kwargs}"
            )
    common = [
        ErrorInput({"lr": torch.tensor([0.1, 0.2])}, ValueError, r"lr.*1.element"),
        ErrorInput({"unknown_flag": 1}, TypeError, r"unknown_flag"),
    ]
    if "foreach" in spec.supported_impls and "fused" in spec.supported_impls:
        common.append(ErrorInput({"foreach": True, "fused": True}, ValueError, r"fused.*foreach"))
    for error in common:
        expect_error(error, construct(error.kwargs), f"{spec.name}{error.kwargs}")
    expect_error(
        ErrorInput({}, TypeError, r"Tensor|iterable"),
        lambda: make_optimizer(spec, torch.zeros(2, requires_grad=True), config),
        f"{spec.name}: a bare tensor as params",
    )
    non_leaf = torch.zeros(2, requires_grad=True) * 2
    expect_error(
        ErrorInput({}, ValueError, r"leaf"),
        lambda: make_optimizer(spec, [non_leaf], config),
        f"{spec.name}: non-leaf param",
    )
    if not spec.supports_complex:
        expect_error(
            ErrorInput({}, TypeError, r"complex"),
            lambda: make_optimizer(
                spec, [torch.zeros(2, dtype=torch.complex64, requires_grad=True)], config
            ),
            f"{spec.name}: complex param",
        )
    if not spec.supports_sparse and not spec.requires_closure:
        weight = torch.zeros(4, 3, requires_grad=True)
        optimizer = make_optimizer(spec, [weight], config)
        weight.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.ones(2, 3), (4, 3))
        # gradkit raises TypeError; torch.optim raises RuntimeError, also a clear error.
        expected: Any = (
            TypeError if issubclass(spec.cls, GradkitOptimizer) else (TypeError, RuntimeError)
        )
        expect_error(
            ErrorInput({}, expected, r"sparse"), optimizer.step, f"{spec.name}: sparse gradient"
        )


def check_nonfinite_policy(spec: OptimizerSpec) -> None:
    """``nonfinite="raise"`` raises before touching params or state, ``"skip"`` skips the step,
    ``"ignore"`` applies it. Only for :class:`GradkitOptimizer` subclasses."""
    if not issubclass(spec.cls, GradkitOptimizer):
        return
    for policy in ("raise", "skip", "ignore"):
        for bad in (float("nan"), float("inf")):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            optimizer = make_optimizer(spec, params, configs_of(spec)[0], nonfinite=policy)
            train(spec, optimizer, problem, params, range(2))
            before = [p.detach().clone() for p in params]
            state_before = snapshot(state_of(optimizer, params))
            problem.closure(params, 2)()
            assert params[2].grad is not None
            params[2].grad[1, 3] = bad
            if policy == "raise":
                group_index, index = locate(optimizer, params[2])
                where = rf"param {index} of group {group_index}.*(NaN|inf)"
                expect_error(
                    ErrorInput({}, NonFiniteGradientError, where),
                    optimizer.step,
                    f"{spec.name}: non-finite gradient under nonfinite='raise'",
                )
            else:
                optimizer.step()
            if policy in ("raise", "skip"):
                assert_same(
                    params,
                    before,
                    state_of(optimizer, params),
                    state_before,
                    f"{spec.name} nonfinite={policy}",
                    exact=True,
                )
            elif torch.isfinite(params[2].detach()).all() and all(
                bool(torch.isfinite(value).all())
                for value in state_of(optimizer, params)[2].values()
                if isinstance(value, torch.Tensor) and value.is_floating_point()
            ):
                # A method may bound its step (Sophia's clip turns an inf momentum into a finite
                # step of size lr), so a non-finite state also shows that the step was applied.
                raise AssertionError(
                    f"{spec.name}: nonfinite='ignore' did not apply the non-finite step"
                )
            if policy == "skip" and getattr(optimizer, "skipped_steps", None) != 1:
                raise AssertionError(f"{spec.name}: skipped_steps is not 1 after a skipped step")


def check_closure(spec: OptimizerSpec) -> None:
    """``step(closure)`` calls the closure once, with grad enabled, and returns its loss."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = make_optimizer(spec, params, configs_of(spec)[0])
    calls = []
    inner = problem.closure(params, 0)

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        return inner()

    if spec.hessian_refresh is not None:
        spec.hessian_refresh(optimizer, problem.loss_fn(params, 0))
    before = params[2].detach().clone()
    loss = optimizer.step(cast(Any, closure))
    if not isinstance(loss, torch.Tensor) or calls != [True]:
        raise AssertionError(
            f"{spec.name}: step(closure) returned {loss!r}; closure calls (grad enabled) {calls}"
        )
    if torch.equal(before, params[2].detach()):
        raise AssertionError(f"{spec.name}: step(closure) did not move the params")
