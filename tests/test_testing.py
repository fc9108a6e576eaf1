"""The conformance suite can fail: each check is run against an optimizer broken on purpose."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradkit.optim import DiffGrad, SophiaH
from gradkit.registry import ErrorInput, OptimizerSpec, get_optimizer
from gradkit.testing import check_optimizer, conformance_checks


def _spec(cls: type, **kwargs: Any) -> OptimizerSpec:
    base = get_optimizer("diffgrad")
    fields = dict(
        name=cls.__name__,
        cls=cls,
        paper="",
        summary="",
        configs=[{}],
        error_inputs=base.error_inputs,
        hyperparams=base.hyperparams,
        supported_impls=("foreach",),
        lr=base.lr,
    )
    fields.update(kwargs)
    return OptimizerSpec(**fields)


def _run(spec: OptimizerSpec, check: str) -> None:
    dict(conformance_checks(spec, fused=False))[check]()


class ForeachBug(DiffGrad):
    """The foreach path uses a different eps."""

    def _update(self, group, params, grads, state, steps, impl):
        if impl == "foreach":
            group = {**group, "eps": group["eps"] * 1e4 + 1e-3}
        super()._update(group, params, grads, state, steps, impl)


class HiddenState(DiffGrad):
    """Keeps a counter outside optimizer.state, so a checkpoint cannot restore it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def _update(self, group, params, grads, state, steps, impl):
        self.calls += 1
        group = {**group, "lr": group["lr"] / self.calls}
        super()._update(group, params, grads, state, steps, impl)


class IgnoresGroupLR(DiffGrad):
    def _update(self, group, params, grads, state, steps, impl):
        super()._update({**group, "lr": self.defaults["lr"]}, params, grads, state, steps, impl)


class IgnoresMaximize(DiffGrad):
    def _update(self, group, params, grads, state, steps, impl):
        super()._update({**group, "maximize": False}, params, grads, state, steps, impl)


class StepsWithoutGrads(DiffGrad):
    """Applies weight decay to params that have no gradient."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.data.mul_(0.99)
        return super().step(closure)


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (ForeachBug, "foreach_matches_forloop"),
        (HiddenState, "checkpoint_resumes_exactly"),
        (IgnoresGroupLR, "param_groups"),
        (IgnoresMaximize, "goes_right_direction"),
        (StepsWithoutGrads, "no_grad_step_is_noop"),
    ],
)
def test_broken_optimizer_fails_its_check(cls: type, check: str) -> None:
    with pytest.raises(AssertionError):
        _run(_spec(cls), check)
    # ... and the unbroken class passes the same check.
    _run(_spec(DiffGrad), check)


def test_wrong_error_message_fails() -> None:
    spec = _spec(
        DiffGrad, error_inputs=[ErrorInput({"lr": -1.0}, ValueError, r"learning rate is negative")]
    )
    with pytest.raises(AssertionError, match="does not match"):
        _run(spec, "error_inputs")


def test_missing_error_fails() -> None:
    spec = _spec(DiffGrad, error_inputs=[ErrorInput({"lr": 5.0}, ValueError, r"lr")])
    with pytest.raises(AssertionError, match="did not raise"):
        _run(spec, "error_inputs")


def test_check_optimizer_names_the_failed_check() -> None:
    with pytest.raises(AssertionError, match="check 'foreach_matches_forloop' failed"):
        check_optimizer(_spec(ForeachBug), fused=False)


def test_check_optimizer_certifies_torch_adamw() -> None:
    check_optimizer(
        torch.optim.AdamW,
        lr=0.05,
        configs=[{}, {"amsgrad": True}],
        error_inputs=[ErrorInput({"lr": -1.0}, ValueError, r"Invalid learning rate")],
        # torch's foreach AdamW rejects a tensor lr unless capturable: certify its for-loop.
        supported_impls=(),
        supports_complex=True,
        hyperparams=("lr", "betas", "weight_decay"),
        validates_group_overrides=False,
    )


def test_torch_adamw_lacks_group_override_validation() -> None:
    """gradkit's stricter check: torch validates lr only in the constructor."""
    with pytest.raises(AssertionError, match="add_param_group accepted lr=-1"):
        _run(
            OptimizerSpec(
                name="AdamW", cls=torch.optim.AdamW, paper="", summary="", supported_impls=()
            ),
            "add_param_group",
        )


# ---------------------------------------------------------------------------- hessian_refresh
class StaleForeachCurvature(SophiaH):
    """The foreach path never refreshes its curvature: only a suite that calls the registry's
    ``hessian_refresh`` hook can tell it from the for-loop."""

    def update_hessian(self, hessian=None, **kwargs):
        if self.param_groups[0]["foreach"] is not False:
            return
        super().update_hessian(hessian, **kwargs)


def test_suite_calls_hessian_refresh_before_every_step() -> None:
    """The hook gets the optimizer and a loss_fn returning the step's loss with its graph, once
    per step: 7 steps x 2 implementations x each config in foreach_matches_forloop."""
    base = get_optimizer("sophiah")
    calls: list[tuple[int, bool]] = []

    def hook(optimizer: Any, loss_fn: Any) -> None:
        loss = loss_fn()
        calls.append((sum(int(s["step"]) for s in optimizer.state.values()), loss.requires_grad))
        assert base.hessian_refresh is not None
        base.hessian_refresh(optimizer, lambda: loss)

    spec = _spec(SophiaH, hessian_refresh=hook, configs=base.configs, error_inputs=())
    _run(spec, "foreach_matches_forloop")
    assert len(calls) == 7 * 2 * len(base.configs)
    assert all(has_graph for _, has_graph in calls)
    for check in ("checkpoint_resumes_exactly", "param_groups", "closure", "tensor_lr"):
        calls.clear()
        _run(spec, check)
        assert calls, f"{check} never refreshed the curvature"


def test_ignored_hessian_refresh_would_fail_a_check() -> None:
    """A foreach path that drops curvature updates fails foreach_matches_forloop, because the
    suite really calls the hook (without the hook both paths would be sign momentum and agree)."""
    hook = get_optimizer("sophiah").hessian_refresh
    with pytest.raises(AssertionError, match="foreach vs for-loop"):
        _run(_spec(StaleForeachCurvature, hessian_refresh=hook), "foreach_matches_forloop")
    _run(_spec(StaleForeachCurvature, hessian_refresh=None), "foreach_matches_forloop")
    _run(_spec(SophiaH, hessian_refresh=hook), "foreach_matches_forloop")
