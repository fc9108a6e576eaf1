"""Eager hyper-parameter validation with precise messages.

Every check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) and names the
hyper-parameter and the value, in the style ``Invalid lr: -1.0 (must be >= 0)``. The checks
are used by :class:`gradkit.optim._base.GradkitOptimizer` for every param group, so a
per-group override is validated exactly like a constructor argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

Check = Callable[[str, Any], None]

NONFINITE_POLICIES = ("raise", "skip", "ignore")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise TypeError(
            f"Invalid {name}: {value!r} (expected a real number, got {type(value).__name__})"
        )
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Invalid {name}: a Tensor {name} must have exactly 1 element, got shape {tuple(value.shape)}"
            )
        if value.is_complex() or not value.is_floating_point():
            raise TypeError(
                f"Invalid {name}: a Tensor {name} must be a real floating tensor, got {value.dtype}"
            )
        value = float(value.detach().reshape(()))
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"Invalid {name}: {number!r} (must be finite)")
    return number


def nonnegative(name: str, value: Any) -> None:
    """``value`` is a finite real ``>= 0``."""
    if _real(name, value) < 0.0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")


def positive(name: str, value: Any) -> None:
    """``value`` is a finite real ``> 0``."""
    if _real(name, value) <= 0.0:
        raise ValueError(f"Invalid {name}: {value!r} (must be > 0)")


def unit_interval(name: str, value: Any) -> None:
    """``value`` is in ``[0, 1)`` (a momentum or decay coefficient)."""
    number = _real(name, value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"Invalid {name}: {value!r} (must be in [0, 1))")


def closed_unit_interval(name: str, value: Any) -> None:
    """``value`` is in ``[0, 1]``."""
    number = _real(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"Invalid {name}: {value!r} (must be in [0, 1])")


def betas(name: str, value: Any) -> None:
    """A pair ``(beta1, beta2)`` with each coefficient in ``[0, 1)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"Invalid {name}: {value!r} (expected a pair (beta1, beta2))")
    for index, beta in enumerate(value):
        unit_interval(f"{name}[{index}]", beta)


def boolean(name: str, value: Any) -> None:
    """``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"Invalid {name}: {value!r} (expected a bool, got {type(value).__name__})")


def optional_boolean(name: str, value: Any) -> None:
    """``value`` is ``None`` or a ``bool``."""
    if value is not None:
        boolean(name, value)


def nonfinite_policy(name: str, value: Any) -> None:
    """One of :data:`NONFINITE_POLICIES`."""
    if value not in NONFINITE_POLICIES:
        raise ValueError(
            f"Invalid {name}: {value!r} (must be one of {', '.join(NONFINITE_POLICIES)})"
        )


def one_of(*choices: Any) -> Check:
    """A check that ``value`` is one of ``choices``."""

    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(
                f"Invalid {name}: {value!r} (must be one of {', '.join(map(repr, choices))})"
            )

    return check


def positive_int(name: str, value: Any) -> None:
    """``value`` is an ``int`` (not a bool) ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Invalid {name}: {value!r} (expected an int, got {type(value).__name__})")
    if value < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 1)")
