"""Optimizer conformance checks on the numbers: the loss goes the right way, every
implementation (``foreach``, ``fused``) matches the for-loop, a checkpoint resumes bit-for-bit,
and a tensor ``lr`` behaves like a float one.

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError`` with a
message saying what broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradkit._specs import OptimizerSpec
from gradkit.testing._harness import (
    GRADKIT_LATE_FLAGS,
    assert_close,
    assert_lockstep,
    assert_same,
    configs_of,
    impl_kwargs,
    make_optimizer,
    run_step,
    save_load,
    snapshot,
    state_of,
    train,
)
from gradkit.testing._problems import TinyConvNet

__all__ = [
    "check_checkpoint_resumes_exactly",
    "check_configs_have_no_impl_flags",
    "check_goes_right_direction",
    "check_impl_matches_forloop",
    "check_low_precision_params",
    "check_tensor_lr",
]


def check_configs_have_no_impl_flags(spec: OptimizerSpec) -> None:
    """Registry configurations never set ``foreach``/``fused`` (the suite toggles them)."""
    for config in spec.configs:
        bad = sorted(set(config) & {"foreach", "fused"})
        if bad:
            raise AssertionError(f"{spec.name}: config {config} sets impl flags {bad}")


def check_goes_right_direction(spec: OptimizerSpec) -> None:
    """20 steps lower the loss (raise it under ``maximize``), for contiguous and non-contiguous
    params, with no scheduler, ``StepLR`` and ``ReduceLROnPlateau``."""
    for config in configs_of(spec):
        for contiguous in (True, False):
            for scheduler_name in (None, "StepLR", "ReduceLROnPlateau"):
                for maximize in (False, True):
                    problem = TinyConvNet(torch.float32, contiguous=contiguous)
                    params = problem.params
                    optimizer = make_optimizer(spec, params, config, maximize=maximize)
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
                        loss = run_step(spec, optimizer, problem, params, 0)
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
    optimizer = make_optimizer(spec, params, config, **impl_kwargs(impl))
    history_params, history_state = [], []
    for step in range(steps):
        run_step(
            spec,
            optimizer,
            problem,
            params,
            step,
            grads_none=step == 2,
            frozen=(0, 1) if step in (3, 4) else (),
        )
        history_params.append([p.detach().clone() for p in params])
        history_state.append(snapshot(state_of(optimizer, params)))
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

    for config in configs if configs is not None else configs_of(spec):
        if impl == "fused":
            torch._dynamo.reset()
        frames_before = counters["frames"]["ok"]
        expected_params, expected_state = _impl_trajectory(spec, config, "forloop")
        actual_params, actual_state = _impl_trajectory(spec, config, impl)
        for step in range(len(expected_params)):
            assert_same(
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


def check_checkpoint_resumes_exactly(spec: OptimizerSpec) -> None:
    """Save after 3 steps, ``torch.load(weights_only=True)``, load into a fresh optimizer on
    copied params, then 5 lock-step steps stay bit-identical (params and state). Also: a
    checkpoint without the late-added flags, and one with a float ``step``, still load and
    resume."""
    for config in configs_of(spec):
        for variant in ("plain", "old_flags", "float_step"):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            optimizer = make_optimizer(spec, params, config)
            train(spec, optimizer, problem, params, range(3))
            saved = save_load(optimizer.state_dict())
            if variant == "old_flags":
                for group in saved["param_groups"]:
                    for flag in (*GRADKIT_LATE_FLAGS, *spec.new_flags):
                        group.pop(flag, None)
            elif variant == "float_step":
                for state in saved["state"].values():
                    if isinstance(state.get("step"), torch.Tensor):
                        state["step"] = state["step"].to(torch.float32)
            twin_params = problem.clone_params()
            twin = make_optimizer(spec, twin_params, config)
            twin.load_state_dict(saved)
            if variant == "plain":
                reloaded = twin.state_dict()
                if reloaded["param_groups"] != optimizer.state_dict()["param_groups"]:
                    raise AssertionError(
                        f"{spec.name} {config}: param_groups changed through a checkpoint"
                    )
            assert_lockstep(
                spec,
                problem,
                (optimizer, params),
                (twin, twin_params),
                range(3, 8),
                f"{spec.name} {config} ({variant} checkpoint): step ".__add__,
            )


def check_tensor_lr(spec: OptimizerSpec) -> None:
    """A 0-d tensor ``lr`` gives the same trajectory as the same float ``lr``."""
    for impl in ("forloop", *[i for i in spec.supported_impls if i == "foreach"]):
        results = []
        for as_tensor in (False, True):
            problem = TinyConvNet(torch.float64)
            params = problem.params
            lr = torch.tensor(spec.lr, dtype=torch.float64) if as_tensor else spec.lr
            optimizer = make_optimizer(
                spec, params, configs_of(spec)[0], lr=lr, **impl_kwargs(impl)
            )
            train(spec, optimizer, problem, params, range(5))
            results.append(([p.detach().clone() for p in params], state_of(optimizer, params)))
        (float_params, float_state), (tensor_params, tensor_state) = results
        assert_same(
            tensor_params,
            float_params,
            tensor_state,
            float_state,
            f"{spec.name} ({impl}): tensor lr vs float lr",
        )


def check_low_precision_params(spec: OptimizerSpec) -> None:
    """float16 and bfloat16 params (for specs with ``low_precision``): 4 steps stay finite, keep
    every floating state tensor in float32 and follow a float32 run on the same numbers to
    within the dtype's rounding (second-order methods: finiteness and state dtype only)."""
    if not spec.low_precision:
        return
    for dtype, tol in ((torch.float16, 4e-3), (torch.bfloat16, 2e-2)):
        for config in configs_of(spec):
            runs = []
            for run_dtype in (dtype, torch.float32):
                torch.manual_seed(0)  # the same curvature probes (Hutchinson) in both runs
                gen = torch.Generator().manual_seed(0)
                # both runs see the same (low-precision representable) numbers, so they differ
                # only by the low-precision run's rounding of its result
                start = [torch.randn(6, 4, generator=gen), torch.randn(4, generator=gen)]
                start = [p.to(dtype).float() for p in start]
                params = [p.to(run_dtype).requires_grad_() for p in start]
                optimizer = make_optimizer(spec, params, config)
                for step in range(4):
                    grads = [
                        (1e-3 * torch.randn(p.shape, generator=gen)).to(dtype).float()
                        for p in start
                    ]
                    for p, g in zip(params, grads, strict=True):
                        p.grad = g.to(run_dtype)
                    if spec.hessian_refresh is not None:
                        spec.hessian_refresh(
                            optimizer, lambda ps=params: sum((p.float() ** 2).sum() for p in ps)
                        )
                    optimizer.step()
                    del step
                runs.append((params, optimizer))
            (low, optimizer), (reference, _) = runs
            for index, (p, ref) in enumerate(zip(low, reference, strict=True)):
                what = f"{spec.name} {config} {dtype} param {index}"
                if not bool(torch.isfinite(p).all()):
                    raise AssertionError(f"{what}: became non-finite")
                if spec.hessian_refresh is None:
                    # (a curvature estimate drawn in the param's dtype differs by rounding, and
                    # near Sophia's clipping boundary that flips whole coordinates: compared
                    # for finiteness and state dtype only)
                    assert_close(
                        p.detach().float(), ref.detach(), what, exact=False, rtol=tol, atol=tol
                    )
                for key, value in optimizer.state[p].items():
                    floating = isinstance(value, torch.Tensor) and value.is_floating_point()
                    if key != "step" and floating and value.dtype != torch.float32:
                        raise AssertionError(f"{what}: state {key!r} is {value.dtype}, not float32")
