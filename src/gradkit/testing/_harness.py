"""Shared machinery of the conformance suites: the optimizer harness (build an optimizer for a
spec, run a training step on :class:`~gradkit.testing._problems.TinyConvNet`, read its state)
and the comparisons every check uses (bit-exact or to a tolerance, an expected error, a
``torch.save``/``torch.load(weights_only=True)`` round trip)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from gradkit._specs import ErrorInput, OptimizerSpec
from gradkit.testing._problems import TinyConvNet

#: Flags that every gradkit optimizer gained after the first checkpoints could exist; a
#: checkpoint without them must still load.
GRADKIT_LATE_FLAGS = ("nonfinite", "upcast")


def make_optimizer(
    spec: OptimizerSpec, params: Any, config: dict[str, Any], **extra: Any
) -> torch.optim.Optimizer:
    kwargs = {"lr": spec.lr, **config, **extra}
    return spec.cls(route_groups(spec, params), **kwargs)


def route_groups(spec: OptimizerSpec, params: Any) -> Any:
    """``params`` routed by ``spec.param_groups_fn`` (a bare tensor passes unchanged, so the
    optimizer's own type check still runs)."""
    if spec.param_groups_fn is None or isinstance(params, torch.Tensor):
        return params
    return spec.param_groups_fn(list(params))


def locate(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> tuple[int, int]:
    """``(group index, index in group)`` of ``param`` in ``optimizer``."""
    for group_index, group in enumerate(optimizer.param_groups):
        for index, candidate in enumerate(group["params"]):
            if candidate is param:
                return group_index, index
    raise AssertionError("param not found in the optimizer's param groups")


def impl_kwargs(impl: str) -> dict[str, Any]:
    return {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[
        impl
    ]


def run_step(
    spec: OptimizerSpec,
    optimizer: torch.optim.Optimizer,
    problem: TinyConvNet,
    params: list[torch.Tensor],
    step: int,
    *,
    grads_none: bool = False,
    frozen: Sequence[int] = (),
) -> torch.Tensor | None:
    """One training step on ``problem``: backward (unless ``grads_none``), drop the grads of
    ``frozen`` params, refresh curvature if the method needs it, then ``optimizer.step``."""
    closure = problem.closure(params, step)
    if spec.hessian_refresh is not None:
        spec.hessian_refresh(optimizer, problem.loss_fn(params, step))
    loss: torch.Tensor | None = None
    if grads_none:
        for param in params:
            param.grad = None
    else:
        loss = closure()
        for index in frozen:
            params[index].grad = None
    if spec.requires_closure:
        optimizer.step(cast(Any, closure))
    else:
        optimizer.step()
    return loss


def state_of(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[dict[str, Any]]:
    return [dict(optimizer.state.get(param, {})) for param in params]


def assert_same(
    actual: list[torch.Tensor],
    expected: list[torch.Tensor],
    actual_state: list[dict[str, Any]],
    expected_state: list[dict[str, Any]],
    what: str,
    *,
    exact: bool = False,
    **tolerance: float,
) -> None:
    for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
        assert_close(a.detach(), b.detach(), f"{what}: param {index}", exact=exact, **tolerance)
    for index, (sa, sb) in enumerate(zip(actual_state, expected_state, strict=True)):
        if set(sa) != set(sb):
            raise AssertionError(
                f"{what}: state keys of param {index} differ: {sorted(sa)} vs {sorted(sb)}"
            )
        for key in sa:
            va, vb = sa[key], sb[key]
            if isinstance(va, torch.Tensor):
                assert_close(
                    va, vb, f"{what}: state[{key!r}] of param {index}", exact=exact, **tolerance
                )
            elif va != vb:
                raise AssertionError(f"{what}: state[{key!r}] of param {index}: {va!r} != {vb!r}")


def assert_close(a: torch.Tensor, b: Any, what: str, *, exact: bool, **tolerance: float) -> None:
    if not isinstance(b, torch.Tensor):
        raise AssertionError(f"{what}: expected a tensor, got {type(b).__name__}")
    if exact:
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            diff = (
                (a.double() - b.double()).abs().max().item()
                if a.shape == b.shape and a.numel()
                else "n/a"
            )
            raise AssertionError(f"{what}: not bit-identical (max abs diff {diff})")
        return
    try:
        torch.testing.assert_close(a, b, **tolerance)  # type: ignore[arg-type]
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from None


def configs_of(spec: OptimizerSpec) -> list[dict[str, Any]]:
    return [dict(config) for config in spec.configs] or [{}]


def snapshot(state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A deep copy of :func:`_state_of`'s output (tensors cloned)."""
    return [
        {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()} for s in state
    ]


def train(
    spec: OptimizerSpec,
    optimizer: torch.optim.Optimizer,
    problem: TinyConvNet,
    params: list[torch.Tensor],
    steps: range,
) -> None:
    for step in steps:
        run_step(spec, optimizer, problem, params, step)


def save_load(state_dict: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def expect_error(
    error: ErrorInput, call: Callable[[], Any], what: str, *, not_raised: str | None = None
) -> None:
    """``call()`` raises ``error.error`` with a message matching ``error.match``; otherwise an
    ``AssertionError`` starting with ``what`` (or saying ``not_raised`` when nothing raised)."""
    try:
        call()
    except error.error as raised:
        if not re.search(error.match, str(raised)):
            raise AssertionError(
                f"{what}: message {str(raised)!r} does not match {error.match!r}"
            ) from None
    except Exception as raised:
        raise AssertionError(
            f"{what}: raised {type(raised).__name__}({raised}), expected {error.error}"
        ) from None
    else:
        raise AssertionError(not_raised or f"{what}: did not raise {error.error}")


def assert_lockstep(
    spec: OptimizerSpec,
    problem: TinyConvNet,
    reference: tuple[torch.optim.Optimizer, list[torch.Tensor]],
    other: tuple[torch.optim.Optimizer, list[torch.Tensor]],
    steps: range,
    what: Callable[[str], str],
) -> None:
    """Step two ``(optimizer, params)`` pairs on the same batches; after every step their params
    and state must be bit-identical (``what(str(step))`` names the comparison)."""
    for step in steps:
        run_step(spec, reference[0], problem, reference[1], step)
        run_step(spec, other[0], problem, other[1], step)
        assert_same(
            other[1],
            reference[1],
            state_of(other[0], other[1]),
            state_of(reference[0], reference[1]),
            what(str(step)),
            exact=True,
        )


def run_named_checks(
    checks: Sequence[tuple[str, Callable[[], None]]], *, other_errors: bool = False
) -> None:
    """Run ``checks`` in order; the first failure is re-raised as ``AssertionError("check
    'name' failed: ...")``. With ``other_errors``, any other exception counts as a failure too."""
    for name, run in checks:
        try:
            run()
        except AssertionError as error:
            raise AssertionError(f"check {name!r} failed: {error}") from None
        except Exception as error:
            if not other_errors:
                raise
            raise AssertionError(
                f"check {name!r} failed: raised {type(error).__name__}: {error}"
            ) from error
