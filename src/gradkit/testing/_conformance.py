"""The optimizer conformance suite (the ``torch.optim`` conventions, as executable checks).

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError`` with a
message saying what broke. :func:`conformance_checks` lists them for one registry entry (so a
test module can parametrize over them) and :func:`check_optimizer` runs them all.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from gradkit._specs import ErrorInput, OptimizerSpec
from gradkit.optim._base import GradkitOptimizer, NonFiniteGradientError
from gradkit.testing._problems import TinyConvNet

__all__ = ["check_optimizer", "conformance_checks"]

#: Flags that every gradkit optimizer gained after the first checkpoints could exist; a
#: checkpoint without them must still load.
_GRADKIT_LATE_FLAGS = ("nonfinite",)


# ---------------------------------------------------------------------------- helpers
def _make(
    spec: OptimizerSpec, params: Any, config: dict[str, Any], **extra: Any
) -> torch.optim.Optimizer:
    kwargs = {"lr": spec.lr, **config, **extra}
    return spec.cls(_groups(spec, params), **kwargs)


def _groups(spec: OptimizerSpec, params: Any) -> Any:
    """``params`` routed by ``spec.param_groups_fn`` (a bare tensor passes unchanged, so the
    optimizer's own type check still runs)."""
    if spec.param_groups_fn is None or isinstance(params, torch.Tensor):
        return params
    return spec.param_groups_fn(list(params))


def _locate(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> tuple[int, int]:
    """``(group index, index in group)`` of ``param`` in ``optimizer``."""
    for group_index, group in enumerate(optimizer.param_groups):
        for index, candidate in enumerate(group["params"]):
            if candidate is param:
                return group_index, index
    raise AssertionError("param not found in the optimizer's param groups")


def _impl_kwargs(impl: str) -> dict[str, Any]:
    return {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[
        impl
    ]


def _run_step(
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


def _state_of(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[dict[str, Any]]:
    return [dict(optimizer.state.get(param, {})) for param in params]


def _assert_same(
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
        _close(a.detach(), b.detach(), f"{what}: param {index}", exact=exact, **tolerance)
    for index, (sa, sb) in enumerate(zip(actual_state, expected_state, strict=True)):
        if set(sa) != set(sb):
            raise AssertionError(
                f"{what}: state keys of param {index} differ: {sorted(sa)} vs {sorted(sb)}"
            )
        for key in sa:
            va, vb = sa[key], sb[key]
            if isinstance(va, torch.Tensor):
                _close(va, vb, f"{what}: state[{key!r}] of param {index}", exact=exact, **tolerance)
            elif va != vb:
                raise AssertionError(f"{what}: state[{key!r}] of param {index}: {va!r} != {vb!r}")


def _close(a: torch.Tensor, b: Any, what: str, *, exact: bool, **tolerance: float) -> None:
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


def _configs(spec: OptimizerSpec) -> list[dict[str, Any]]:
    return [dict(config) for config in spec.configs] or [{}]


# ---------------------------------------------------------------------------- the checks
def check_configs_have_no_impl_flags(spec: OptimizerSpec) -> None:
    """Registry configurations never set ``foreach``/``fused`` (the suite toggles them)."""
    for config in spec.configs:
        bad = sorted(set(config) & {"foreach", "fused"})
        if bad:
            raise AssertionError(f"{spec.name}: config {config} sets impl flags {bad}")


def check_goes_right_direction(spec: OptimizerSpec) -> None:
    """20 steps lower the loss (raise it under ``maximize``), for contiguous and non-contiguous
    params, with no scheduler, ``StepLR`` and ``ReduceLROnPlateau``."""
    for config in _configs(spec):
        for contiguous in (True, False):
            for scheduler_name in (None, "StepLR", "ReduceLROnPlateau"):
                for maximize in (False, True):
                    problem = TinyConvNet(torch.float32, contiguous=contiguous)
                    params = problem.params
                    optimizer = _make(spec, params, config, maximize=maximize)
                    scheduler: Any = None
                    if scheduler_name == "StepLR":
                        scheduler = torch.optim.lr_scheduler.StepLR(
                            optimizer, step_size=5, gamma=0.9
                        )
                    elif scheduler_name == "ReduceLROnPlateau":
                        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                            optimizer, patience=2
                        )
                    with torch.no_grad():
                        initial = problem.loss(params, 0).item()
                    for step in range(20):
                        loss = _run_step(spec, optimizer, problem, params, 0)
                        if scheduler_name == "ReduceLROnPlateau":
                            scheduler.step(loss.item() if loss is not None else 0.0)
                        elif scheduler is not None:
                            scheduler.step()
                        del step
                    with torch.no_grad():
                        final = problem.loss(params, 0).item()
                    moved_right = final > initial if maximize else final < initial
                    if not moved_right:
                        raise AssertionError(
                            f"{spec.name} {config} (contiguous={contiguous}, scheduler={scheduler_name}, "
                            f"maximize={maximize}): loss went from {initial:.6g} to {final:.6g} in 20 steps"
                        )


def _impl_trajectory(
    spec: OptimizerSpec, config: dict[str, Any], impl: str, steps: int = 7
) -> tuple[list[list[torch.Tensor]], list[list[dict[str, Any]]]]:
    """Params and state after each of ``steps`` float64 steps: all grads None at iteration 2, the
    conv layer frozen at iterations 3–4 and unfrozen at 5, a trailing zero-size param."""
    problem = TinyConvNet(torch.float64, contiguous=False)
    params = problem.clone_params()
    optimizer = _make(spec, params, config, **_impl_kwargs(impl))
    history_params, history_state = [], []
    for step in range(steps):
        _run_step(
            spec,
            optimizer,
            problem,
            params,
            step,
            grads_none=step == 2,
            frozen=(0, 1) if step in (3, 4) else (),
        )
        history_params.append([p.detach().clone() for p in params])
        history_state.append(
            [
                {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                for s in _state_of(optimizer, params)
            ]
        )
    return history_params, history_state


def check_impl_matches_forloop(
    spec: OptimizerSpec, impl: str, configs: Sequence[dict[str, Any]] | None = None
) -> None:
    """``impl`` (``"foreach"`` or ``"fused"``) matches the for-loop reference on params and every
    state tensor after each of 7 float64 steps (see :func:`_impl_trajectory`).

    For ``"fused"`` the check also asserts that ``torch.compile`` really compiled a frame (a
    silent fall-back to eager fails). It resets dynamo's caches first so that earlier compiled
    graphs do not exhaust the recompile limit.
    """
    if impl not in spec.supported_impls:
        return
    import torch._dynamo
    from torch._dynamo.utils import counters

    for config in configs if configs is not None else _configs(spec):
        if impl == "fused":
            torch._dynamo.reset()
        frames_before = counters["frames"]["ok"]
        expected_params, expected_state = _impl_trajectory(spec, config, "forloop")
        actual_params, actual_state = _impl_trajectory(spec, config, impl)
        for step in range(len(expected_params)):
            _assert_same(
                actual_params[step],
                expected_params[step],
                actual_state[step],
                expected_state[step],
                f"{spec.name} {config}: {impl} vs for-loop after step {step}",
            )
        if impl == "fused" and counters["frames"]["ok"] <= frames_before:
            raise AssertionError(
                f"{spec.name}: fused=True compiled no frame (silent fall-back to eager?)"
            )


def _train(
    spec: OptimizerSpec,
    optimizer: torch.optim.Optimizer,
    problem: TinyConvNet,
    params: list[torch.Tensor],
    steps: range,
) -> None:
    for step in steps:
        _run_step(spec, optimizer, problem, params, step)


def _save_load(state_dict: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_checkpoint_resumes_exactly(spec: OptimizerSpec) -> None:
    """Save after 3 steps, ``torch.load(weights_only=True)``, load into a fresh optimizer on
    copied params, then 5 lock-step steps stay bit-identical (params and state). Also: a
    checkpoint without the late-added flags, and one with a float ``step``, still load and
    resume."""
    for config in _configs(spec):
        for variant in ("plain", "old_flags", "float_step"):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            optimizer = _make(spec, params, config)
            _train(spec, optimizer, problem, params, range(3))
            saved = _save_load(optimizer.state_dict())
            if variant == "old_flags":
                for group in saved["param_groups"]:
                    for flag in (*_GRADKIT_LATE_FLAGS, *spec.new_flags):
                        group.pop(flag, None)
            elif variant == "float_step":
                for state in saved["state"].values():
                    if isinstance(state.get("step"), torch.Tensor):
                        state["step"] = state["step"].to(torch.float32)
            twin_params = problem.clone_params()
            twin = _make(spec, twin_params, config)
            twin.load_state_dict(saved)
            if variant == "plain":
                reloaded = twin.state_dict()
                if reloaded["param_groups"] != optimizer.state_dict()["param_groups"]:
                    raise AssertionError(
                        f"{spec.name} {config}: param_groups changed through a checkpoint"
                    )
            for step in range(3, 8):
                _run_step(spec, optimizer, problem, params, step)
                _run_step(spec, twin, problem, twin_params, step)
                _assert_same(
                    twin_params,
                    params,
                    _state_of(twin, twin_params),
                    _state_of(optimizer, params),
                    f"{spec.name} {config} ({variant} checkpoint): step {step}",
                    exact=True,
                )


def check_tensor_lr(spec: OptimizerSpec) -> None:
    """A 0-d tensor ``lr`` gives the same trajectory as the same float ``lr``."""
    for impl in ("forloop", *[i for i in spec.supported_impls if i == "foreach"]):
        results = []
        for as_tensor in (False, True):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            lr = torch.tensor(spec.lr, dtype=torch.float64) if as_tensor else spec.lr
            optimizer = _make(spec, params, _configs(spec)[0], lr=lr, **_impl_kwargs(impl))
            _train(spec, optimizer, problem, params, range(5))
            results.append(([p.detach().clone() for p in params], _state_of(optimizer, params)))
        (float_params, float_state), (tensor_params, tensor_state) = results
        _assert_same(
            tensor_params,
            float_params,
            tensor_state,
            float_state,
            f"{spec.name} ({impl}): tensor lr vs float lr",
        )


def check_param_groups(spec: OptimizerSpec) -> None:
    """Per-group ``lr`` and ``weight_decay`` are honoured: two groups in one optimizer give the
    same result as two optimizers with one group each; a group with ``lr=0`` stays put."""
    config = _configs(spec)[0]
    problem = TinyConvNet(torch.float64)
    together = problem.clone_params()
    apart = problem.clone_params()
    extra_a: dict[str, Any] = {"lr": spec.lr * 0.5}
    extra_b: dict[str, Any] = {"lr": spec.lr * 2.0}
    if spec.has_weight_decay:
        extra_a["weight_decay"] = 0.05
        extra_b["weight_decay"] = 0.0
    groups = [{"params": together[:2], **extra_a}, {"params": together[2:], **extra_b}]
    optimizer = _make(spec, groups, config)
    first = _make(spec, apart[:2], {**config, **extra_a})
    second = _make(spec, apart[2:], {**config, **extra_b})
    for step in range(4):
        _run_step(spec, optimizer, problem, together, step)
        closure = problem.closure(apart, step)
        for sub in (first, second):
            if spec.hessian_refresh is not None:
                spec.hessian_refresh(sub, problem.loss_fn(apart, step))
        closure()
        for sub in (first, second):
            sub.step(cast(Any, closure)) if spec.requires_closure else sub.step()
    state_apart = _state_of(first, apart[:2]) + _state_of(second, apart[2:])
    _assert_same(
        together,
        apart,
        _state_of(optimizer, together),
        state_apart,
        f"{spec.name}: per-group hyper-parameters",
    )

    # A group with lr=0 next to a moving group: its params must not move.
    problem = TinyConvNet(torch.float64)
    params = problem.params
    before = [p.detach().clone() for p in params[:2]]
    optimizer = _make(spec, [{"params": params[:2], "lr": 0.0}, {"params": params[2:]}], config)
    _train(spec, optimizer, problem, params, range(3))
    for index, (param, old) in enumerate(zip(params[:2], before, strict=True)):
        if not torch.equal(param.detach(), old):
            raise AssertionError(f"{spec.name}: param {index} in a group with lr=0 moved")
    if torch.equal(params[2].detach(), TinyConvNet(torch.float64).params[2].detach()):
        raise AssertionError(f"{spec.name}: the group with the default lr did not move")


def check_add_param_group(spec: OptimizerSpec) -> None:
    """``add_param_group`` adds a trainable group and validates its hyper-parameters."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = _make(spec, params[:2], _configs(spec)[0])
    for group in _groups(spec, [{"params": params[2:], "lr": spec.lr}]):
        optimizer.add_param_group(group)
    old = params[2].detach().clone()
    _train(spec, optimizer, problem, params, range(2))
    if torch.equal(old, params[2].detach()):
        raise AssertionError(f"{spec.name}: a param added with add_param_group did not move")
    if not spec.validates_group_overrides:
        return
    extra = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    try:
        for group in _groups(spec, [{"params": [extra], "lr": -1.0}]):
            optimizer.add_param_group(group)
    except ValueError as error:
        if "lr" not in str(error):
            raise AssertionError(
                f"{spec.name}: add_param_group(lr=-1) error does not name lr: {error}"
            ) from None
    else:
        raise AssertionError(f"{spec.name}: add_param_group accepted lr=-1.0")


def check_no_grad_step_is_noop(spec: OptimizerSpec) -> None:
    """A step with no gradients changes neither params nor state (before and after training)."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = _make(spec, params, _configs(spec)[0])
    before = [p.detach().clone() for p in params]
    optimizer.step() if not spec.requires_closure else None
    if any(not torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True)) or len(
        optimizer.state
    ):
        raise AssertionError(f"{spec.name}: a step with no gradients changed params or state")
    _train(spec, optimizer, problem, params, range(2))
    before = [p.detach().clone() for p in params]
    state_before = [
        {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
        for s in _state_of(optimizer, params)
    ]
    for param in params:
        param.grad = None
    if not spec.requires_closure:
        optimizer.step()
    _assert_same(
        params,
        before,
        _state_of(optimizer, params),
        state_before,
        f"{spec.name}: no-grad step",
        exact=True,
    )


def check_deepcopy_and_repr(spec: OptimizerSpec) -> None:
    """``deepcopy`` keeps state and hyper-parameters and gives an independent optimizer that
    continues identically; ``repr`` names the class and shows the hyper-parameters."""
    problem = TinyConvNet(torch.float64)
    params = problem.params
    optimizer = _make(spec, params, _configs(spec)[0])
    _train(spec, optimizer, problem, params, range(2))
    if not optimizer.state:
        raise AssertionError(f"{spec.name}: state is empty after two steps")
    clone = copy.deepcopy(optimizer)
    clone_params = []  # the clone's params in the problem's order
    for param in params:
        group_index, index = _locate(optimizer, param)
        clone_params.append(clone.param_groups[group_index]["params"][index])
    if any(cp is p for cp, p in zip(clone_params, params, strict=True)):
        raise AssertionError(f"{spec.name}: deepcopy shares params with the original")
    for attr in ("defaults", "skipped_steps"):
        if hasattr(optimizer, attr) and getattr(clone, attr) != getattr(optimizer, attr):
            raise AssertionError(f"{spec.name}: deepcopy changed {attr}")
    _assert_same(
        clone_params,
        params,
        _state_of(clone, clone_params),
        _state_of(optimizer, params),
        f"{spec.name}: deepcopy",
        exact=True,
    )
    for step in range(2, 4):
        _run_step(spec, optimizer, problem, params, step)
        _run_step(spec, clone, problem, clone_params, step)
    _assert_same(
        clone_params,
        params,
        _state_of(clone, clone_params),
        _state_of(optimizer, params),
        f"{spec.name}: deepcopy then step",
        exact=True,
    )
    text = repr(optimizer)
    if type(optimizer).__name__ not in text:
        raise AssertionError(f"{spec.name}: repr does not name the class: {text}")
    for name in spec.hyperparams:
        if name not in text:
            raise AssertionError(f"{spec.name}: repr does not show {name!r}: {text}")


def _expect(error: ErrorInput, call: Callable[[], Any], what: str) -> None:
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
        raise AssertionError(f"{what}: did not raise {error.error}")


def check_error_inputs(spec: OptimizerSpec) -> None:
    """Every registered invalid hyper-parameter raises its error with the expected message, in
    the constructor and in a per-group override; plus the errors common to all optimizers."""
    config = _configs(spec)[0]

    def params() -> list[torch.Tensor]:
        return [torch.zeros(2, 3, requires_grad=True)]

    def construct(kwargs: dict[str, Any]) -> Callable[[], Any]:
        return lambda: _make(spec, params(), config, **kwargs)

    def construct_group(kwargs: dict[str, Any]) -> Callable[[], Any]:
        return lambda: _make(spec, [{"params": params(), **kwargs}], config)

    for error in spec.error_inputs:
        _expect(error, construct(error.kwargs), f"{spec.name}{error.kwargs}")
        if spec.validates_group_overrides:
            _expect(
                error, construct_group(error.kwargs), f"{spec.name} group override {error.kwargs}"
            )
    common = [
        ErrorInput({"lr": torch.tensor([0.1, 0.2])}, ValueError, r"lr.*1.element"),
        ErrorInput({"unknown_flag": 1}, TypeError, r"unknown_flag"),
    ]
    if "foreach" in spec.supported_impls and "fused" in spec.supported_impls:
        common.append(ErrorInput({"foreach": True, "fused": True}, ValueError, r"fused.*foreach"))
    for error in common:
        _expect(error, construct(error.kwargs), f"{spec.name}{error.kwargs}")
    _expect(
        ErrorInput({}, TypeError, r"Tensor|iterable"),
        lambda: _make(spec, torch.zeros(2, requires_grad=True), config),
        f"{spec.name}: a bare tensor as params",
    )
    non_leaf = torch.zeros(2, requires_grad=True) * 2
    _expect(
        ErrorInput({}, ValueError, r"leaf"),
        lambda: _make(spec, [non_leaf], config),
        f"{spec.name}: non-leaf param",
    )
    if not spec.supports_complex:
        _expect(
            ErrorInput({}, TypeError, r"complex"),
            lambda: _make(
                spec, [torch.zeros(2, dtype=torch.complex64, requires_grad=True)], config
            ),
            f"{spec.name}: complex param",
        )
    if not spec.supports_sparse and not spec.requires_closure:
        weight = torch.zeros(4, 3, requires_grad=True)
        optimizer = _make(spec, [weight], config)
        weight.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.ones(2, 3), (4, 3))
        # gradkit raises TypeError; torch.optim raises RuntimeError, also a clear error.
        expected: Any = (
            TypeError if issubclass(spec.cls, GradkitOptimizer) else (TypeError, RuntimeError)
        )
        _expect(
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
            optimizer = _make(spec, params, _configs(spec)[0], nonfinite=policy)
            _train(spec, optimizer, problem, params, range(2))
            before = [p.detach().clone() for p in params]
            state_before = [
                {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                for s in _state_of(optimizer, params)
            ]
            problem.closure(params, 2)()
            assert params[2].grad is not None
            params[2].grad[1, 3] = bad
            if policy == "raise":
                group_index, index = _locate(optimizer, params[2])
                where = rf"param {index} of group {group_index}.*(NaN|inf)"
                _expect(
                    ErrorInput({}, NonFiniteGradientError, where),
                    optimizer.step,
                    f"{spec.name}: non-finite gradient under nonfinite='raise'",
                )
            else:
                optimizer.step()
            if policy in ("raise", "skip"):
                _assert_same(
                    params,
                    before,
                    _state_of(optimizer, params),
                    state_before,
                    f"{spec.name} nonfinite={policy}",
                    exact=True,
                )
            elif torch.isfinite(params[2].detach()).all() and all(
                bool(torch.isfinite(value).all())
                for value in _state_of(optimizer, params)[2].values()
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
    optimizer = _make(spec, params, _configs(spec)[0])
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


# ---------------------------------------------------------------------------- entry points
def conformance_checks(
    spec: OptimizerSpec, *, fused: bool = True
) -> list[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for ``spec``; each ``check()`` raises ``AssertionError`` on failure.

    Args:
        spec: the registry entry (or one built by :func:`check_optimizer`).
        fused: include the compiled-path check (slow: it runs ``torch.compile``). It uses the
            first configuration only, to keep compile time down.
    """
    checks: list[tuple[str, Callable[[], None]]] = [
        ("configs_have_no_impl_flags", lambda: check_configs_have_no_impl_flags(spec)),
        ("goes_right_direction", lambda: check_goes_right_direction(spec)),
        ("foreach_matches_forloop", lambda: check_impl_matches_forloop(spec, "foreach")),
        ("checkpoint_resumes_exactly", lambda: check_checkpoint_resumes_exactly(spec)),
        ("tensor_lr", lambda: check_tensor_lr(spec)),
        ("param_groups", lambda: check_param_groups(spec)),
        ("add_param_group", lambda: check_add_param_group(spec)),
        ("no_grad_step_is_noop", lambda: check_no_grad_step_is_noop(spec)),
        ("deepcopy_and_repr", lambda: check_deepcopy_and_repr(spec)),
        ("error_inputs", lambda: check_error_inputs(spec)),
        ("nonfinite_policy", lambda: check_nonfinite_policy(spec)),
        ("closure", lambda: check_closure(spec)),
    ]
    if fused and "fused" in spec.supported_impls:
        checks.append(
            (
                "fused_matches_forloop",
                lambda: check_impl_matches_forloop(spec, "fused", _configs(spec)[:1]),
            )
        )
    return checks


def check_optimizer(
    optimizer: type[torch.optim.Optimizer] | OptimizerSpec,
    *,
    configs: Sequence[dict[str, Any]] = ({},),
    error_inputs: Sequence[ErrorInput] = (),
    lr: float = 1e-2,
    hyperparams: Sequence[str] = ("lr",),
    supported_impls: tuple[str, ...] = (),
    supports_complex: bool = False,
    supports_sparse: bool = False,
    requires_closure: bool = False,
    has_weight_decay: bool = True,
    validates_group_overrides: bool = True,
    hessian_refresh: Callable[..., None] | None = None,
    param_groups_fn: Callable[[Any], list[dict[str, Any]]] | None = None,
    fused: bool = True,
) -> None:
    """Run the gradkit conformance suite on an optimizer class; raise ``AssertionError`` on the
    first failure, naming the check.

    The suite checks the ``torch.optim`` conventions: the loss moves the right way (also under
    ``maximize`` and LR schedulers), ``foreach``/``fused`` match the for-loop, checkpoints
    resume bit-for-bit through ``torch.load(weights_only=True)``, tensor ``lr``, param groups,
    no-op steps, ``deepcopy``/``repr``, error messages, the non-finite policy and closures.

    Args:
        optimizer: the class to certify, or a full :class:`~gradkit.registry.OptimizerSpec`
            (then the other arguments are ignored).
        configs: keyword-argument sets to test (never ``foreach``/``fused``).
        error_inputs: constructor calls that must raise.
        lr: a learning rate that makes 20 steps move the loss.
        hyperparams: names that ``repr`` must show.
        supported_impls: which of ``"foreach"``, ``"fused"`` the class accepts.
        supports_complex / supports_sparse / requires_closure / has_weight_decay: capabilities.
        validates_group_overrides: expect per-group hyper-parameters to be validated (pass
            ``False`` for ``torch.optim`` classes, which validate only the constructor).
        hessian_refresh: ``hook(optimizer, loss_fn)`` for second-order methods, called before
            every step; ``loss_fn()`` returns the step's scalar loss with its autograd graph
            (no backward run), so the hook can compute gradients or Hessian-vector products.
        param_groups_fn: routes the suite's params into the groups the optimizer needs (e.g.
            :func:`gradkit.optim.matrix_param_groups` for matrix optimizers).
        fused: run the compiled-path check.

    Example:
        >>> import torch
        >>> from gradkit.testing import check_optimizer
        >>> check_optimizer(torch.optim.SGD, lr=0.1, configs=[{"momentum": 0.9}],
        ...                 supported_impls=("foreach",), supports_complex=True,
        ...                 supports_sparse=True, validates_group_overrides=False)
    """
    if isinstance(optimizer, OptimizerSpec):
        spec = optimizer
    else:
        spec = OptimizerSpec(
            name=optimizer.__name__,
            cls=optimizer,
            paper="",
            summary="",
            configs=list(configs),
            error_inputs=list(error_inputs),
            hyperparams=tuple(hyperparams),
            supported_impls=supported_impls,
            supports_complex=supports_complex,
            supports_sparse=supports_sparse,
            requires_closure=requires_closure,
            hessian_refresh=hessian_refresh,
            param_groups_fn=param_groups_fn,
            lr=lr,
            has_weight_decay=has_weight_decay,
            validates_group_overrides=validates_group_overrides,
        )
    for name, run in conformance_checks(spec, fused=fused):
        try:
            run()
        except AssertionError as error:
            raise AssertionError(f"check {name!r} failed: {error}") from None
