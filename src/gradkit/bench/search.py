"""Search spaces of the equal-budget tuning protocol and how a trial draws from them.

Every tunable bench method declares a :class:`~gradkit.registry.SearchSpace` (the registry's
``OptimizerSpec.search_space``; :data:`DEFAULT_SPACE` when an entry gives none): a log-uniform
learning rate over a documented range, plus optional log-uniform or categorical knobs
(SophiaG's ρ). The same range serves every method whose entry does not say otherwise, so no
method is handed a better-placed range than another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gradkit._specs import SearchSpace
from gradkit.bench.errors import BenchConfigError

__all__ = ["DEFAULT_LR_RANGE", "DEFAULT_SPACE", "check_space", "describe_space", "suggest"]

#: The learning-rate range every optimizer is tuned over unless its registry entry declares
#: another: four decades, log-uniform, from 1e-4 to 1.
DEFAULT_LR_RANGE = (1e-4, 1.0)

#: The search space of an optimizer whose registry entry declares none.
DEFAULT_SPACE = SearchSpace(lr=DEFAULT_LR_RANGE)


def _check_range(method: str, name: str, bounds: Any) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise BenchConfigError(
            f"search space of {method!r}: {name} must be a (low, high) pair of numbers, "
            f"got {bounds!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0:
        raise BenchConfigError(
            f"search space of {method!r}: {name} is log-uniform, so its bounds must be finite "
            f"and positive, got ({low!r}, {high!r})"
        )
    if low > high:
        raise BenchConfigError(
            f"search space of {method!r}: {name} has low > high ({low!r} > {high!r})"
        )
    return low, high


def check_space(method: str, space: SearchSpace) -> SearchSpace:
    """Validate ``space`` of ``method``; returns it unchanged.

    Raises:
        BenchConfigError: a range with ``low > high``, a non-positive or non-finite bound, an
            empty choice list, or a space with nothing to tune; the message names the method
            and the hyper-parameter.
    """
    if not isinstance(space, SearchSpace):
        raise BenchConfigError(
            f"search space of {method!r} must be a gradkit.registry.SearchSpace, got "
            f"{type(space).__name__}"
        )
    if space.lr is not None:
        _check_range(method, "lr", space.lr)
    for name, bounds in space.log_uniform.items():
        _check_range(method, name, bounds)
    for name, values in space.choices.items():
        if isinstance(values, (str, bytes)) or len(list(values)) == 0:
            raise BenchConfigError(
                f"search space of {method!r}: choices for {name} must be a non-empty list, "
                f"got {values!r}"
            )
    if space.lr is None and not space.log_uniform and not space.choices:
        raise BenchConfigError(f"search space of {method!r} declares nothing to tune")
    return space


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Draw one set of hyper-parameters from ``space`` with an Optuna ``trial``
    (``suggest_float(..., log=True)`` and ``suggest_categorical``), in a fixed order."""
    out: dict[str, Any] = {}
    if space.lr is not None:
        out["lr"] = trial.suggest_float("lr", *space.lr, log=True)
    for name, (low, high) in sorted(space.log_uniform.items()):
        out[name] = trial.suggest_float(name, low, high, log=True)
    for name, values in sorted(space.choices.items()):
        out[name] = trial.suggest_categorical(name, list(values))
    return out


def describe_space(space: SearchSpace | None) -> Mapping[str, Any]:
    """``space`` as plain JSON (``{"lr": [low, high], "rho": [low, high], "x": [choices]}``)
    for the report and the study's configuration fingerprint."""
    if space is None:
        return {}
    out: dict[str, Any] = {}
    if space.lr is not None:
        out["lr"] = ["log-uniform", *space.lr]
    for name, bounds in sorted(space.log_uniform.items()):
        out[name] = ["log-uniform", *bounds]
    for name, values in sorted(space.choices.items()):
        out[name] = ["choice", *values]
    return out
