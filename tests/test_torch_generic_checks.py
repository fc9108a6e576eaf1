"""The checks taken from torch's OptimizerInfo tests can fail (issue 11 item 1): each runs
against an optimizer broken on purpose, and torch's own SGD passes them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradkit.optim import DiffGrad
from gradkit.registry import OptimizerSpec, get_optimizer
from gradkit.testing import conformance_checks


def _spec(cls: type, **kwargs: Any) -> OptimizerSpec:
    base = get_optimizer("diffgrad")
    fields: dict[str, Any] = dict(
        name=cls.__name__, cls=cls, paper="", summary="", configs=[{}], lr=base.lr
    )
    fields.update(kwargs)
    return OptimizerSpec(**fields)


def _run(spec: OptimizerSpec, check: str) -> None:
    dict(conformance_checks(spec, fused=False))[check]()


CHECKS = ["hooks", "load_onto_another_dtype", "lr_only_in_param_groups", "foreach_under_no_grad"]


@pytest.mark.parametrize("check", CHECKS)
def test_torch_sgd_passes(check: str) -> None:
    _run(_spec(torch.optim.SGD, supported_impls=("foreach",), has_weight_decay=True), check)


class FixupsAfterPostHooks(DiffGrad):
    """Fix-ups after torch's load post-hooks (gradkit's own bug before issue 11)."""

    def load_state_dict(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        super().load_state_dict(state_dict, **kwargs)
        for entry in self.state.values():
            entry.get("step")  # crashes on the bool a post-hook stored


class KeepsFloat32State(DiffGrad):
    """Casts loaded state back to float32 whatever the params' dtype."""

    def load_state_dict(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        super().load_state_dict(state_dict, **kwargs)
        for entry in self.state.values():
            for key, value in list(entry.items()):
                if key != "step":
                    entry[key] = value.float()


class NeedsConstructorLr(DiffGrad):
    """Ignores a group's lr when none was given to the constructor."""

    def __init__(self, params: Any, lr: float = 0.5, **kwargs: Any) -> None:
        super().__init__(params, lr=lr, **kwargs)
        for group in self.param_groups:
            group["lr"] = lr


class DependsOnGradMode(DiffGrad):
    """Takes a different step when called under torch.no_grad."""

    def step(self, closure: Any = None) -> Any:
        grad_mode = torch.is_grad_enabled()
        for group in self.param_groups:
            group["eps"] = 1e-8 if grad_mode else 1e-3
        return super().step(closure)


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (FixupsAfterPostHooks, "hooks"),
        (KeepsFloat32State, "load_onto_another_dtype"),
        (NeedsConstructorLr, "lr_only_in_param_groups"),
        (DependsOnGradMode, "foreach_under_no_grad"),
    ],
)
def test_each_check_catches_its_bug(cls: type, check: str) -> None:
    with pytest.raises((AssertionError, AttributeError)):
        _run(_spec(cls), check)
    _run(_spec(DiffGrad), check)  # the unbroken class passes
