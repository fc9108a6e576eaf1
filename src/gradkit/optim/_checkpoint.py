"""Loading a checkpoint into a gradkit optimizer: the state is validated, never trusted.

:meth:`GradkitOptimizer.load_state_dict` runs these checks after torch has matched the saved
params to the optimizer's own (and after the load-state-dict *pre*-hooks), and before anything
of the optimizer is replaced and before the *post*-hooks run, so that:

* a bad checkpoint raises a ``ValueError``/``TypeError`` naming the param, its group and the
  state key, and leaves the optimizer exactly as it was;
* the post-hooks see the state after gradkit's fix-ups (an ``int64`` step, the state dtypes the
  method keeps, hyper-parameters added since the checkpoint was written).

What is checked, for every param that has state:

* the state is a dict; its keys are ``step`` plus the state tensors the method declares for the
  param's group (:meth:`GradkitOptimizer._state_names_for` and
  :meth:`GradkitOptimizer._extra_state_names_for`): a missing key, or a key the method does not
  have (the checkpoint came from another optimizer), is refused unless ``strict=False``;
* ``step`` is a finite, whole, non-negative number;
* every state tensor is a real floating tensor of the expected shape, finite, and inside its
  domain (second-moment estimates are ``>= 0``).

A state dict written by gradkit also names the optimizer class (``state_dict()["gradkit"]``); a
checkpoint of another class is refused unless ``strict=False``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gradkit.optim._base import GradkitOptimizer

__all__ = ["MARKER_KEY", "check_marker", "check_param_state", "loaded_step"]

#: Top-level key of a gradkit state dict: ``{"optimizer": class name, "format": 1}``.
MARKER_KEY = "gradkit"
FORMAT = 1


def check_marker(optimizer: GradkitOptimizer, state_dict: Mapping[str, Any], strict: bool) -> None:
    """Refuse a checkpoint saved by another optimizer class (``strict``) or not a state dict."""
    name = type(optimizer).__name__
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"{name}.load_state_dict expects a mapping, got {type(state_dict).__name__}"
        )
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"{name}.load_state_dict: the state dict has no {key!r} entry")
    marker = state_dict.get(MARKER_KEY)
    if marker is None or not strict:
        return
    saved = marker.get("optimizer") if isinstance(marker, Mapping) else marker
    if saved != name:
        raise ValueError(
            f"{name}.load_state_dict: this checkpoint was saved by {saved!r}, not {name}; "
            "pass strict=False to load it anyway"
        )


def loaded_step(value: Any, where: str) -> torch.Tensor:
    """A saved ``step`` as a 0-d ``int64`` tensor; raises unless finite, whole and ``>= 0``."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{where}: 'step' must be one real number, got {value!r}")
        number = float(value.detach().reshape(()))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"{where}: 'step' must be a number, got {type(value).__name__}")
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"{where}: 'step' must be a whole number >= 0, got {number!r}")
    return torch.tensor(int(number), dtype=torch.int64)


def check_param_state(
    optimizer: GradkitOptimizer,
    param: torch.Tensor,
    state: Any,
    group: Mapping[str, Any],
    where: str,
    strict: bool,
) -> None:
    """Validate (and fix up) one param's loaded state in place; see the module docstring."""
    if not isinstance(state, dict):
        raise TypeError(f"{where}: the state must be a dict, got {type(state).__name__}")
    if not state:
        return
    tensors = tuple(optimizer._state_names_for(group))
    allowed = {"step", *tensors, *optimizer._extra_state_names_for(group)}
    unknown = sorted(str(key) for key in state if key not in allowed)
    missing = [key for key in ("step", *tensors) if key not in state]
    name = type(optimizer).__name__
    if unknown:
        if strict:
            raise ValueError(
                f"{where}: state key(s) {unknown} are not {name} state (expected "
                f"{sorted(allowed)}); the checkpoint may come from another optimizer. Pass "
                "strict=False to load it anyway (unknown keys are then dropped)"
            )
        for key in unknown:
            del state[key]
        warnings.warn(f"{where}: dropped unknown state key(s) {unknown}", stacklevel=4)
    if missing:
        if strict:
            raise ValueError(
                f"{where}: the checkpoint has no {missing} (a {name} param with state needs "
                f"{['step', *tensors]}); pass strict=False to re-initialise missing entries"
            )
        warnings.warn(f"{where}: missing state {missing} will be re-initialised", stacklevel=4)
    if "step" in state:
        state["step"] = loaded_step(state["step"], where)
    nonnegative = optimizer._nonnegative_state
    for key, value in state.items():
        if key == "step":
            continue
        _check_tensor(optimizer, param, group, key, value, f"{where}, state {key!r}")
        if key in nonnegative and bool((value < 0).any()):
            raise ValueError(f"{where}, state {key!r}: must be >= 0, found negative entries")


def _check_tensor(
    optimizer: GradkitOptimizer,
    param: torch.Tensor,
    group: Mapping[str, Any],
    key: str,
    value: Any,
    where: str,
) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: expected a tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{where}: expected a real floating tensor, got {value.dtype}")
    shape = optimizer._state_shape(param, group, key)
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(
            f"{where}: shape {tuple(value.shape)} does not match the expected {tuple(shape)}"
        )
    if value.device.type != "meta" and not bool(torch.isfinite(value).all()):
        kind = "NaN" if bool(torch.isnan(value).any()) else "inf"
        raise ValueError(f"{where}: contains {kind}")
