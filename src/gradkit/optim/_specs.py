"""The built-in registry entries: one line per optimizer module."""

from __future__ import annotations

from gradkit._specs import OptimizerSpec


def builtin_specs() -> list[OptimizerSpec]:
    """Registry entries of the optimizers that ship with gradkit, in display order."""
    from gradkit.optim import (
        _adabelief,
        _adamp_specs,
        _aro,
        _diffgrad,
        _sinkgd,
        _sophia_refresh,
        _swan,
    )

    return [
        _diffgrad.registry_spec(),
        _adabelief.registry_spec(),
        *_adamp_specs.registry_specs(),
        _swan.registry_spec(),
        _sinkgd.registry_spec(),
        _aro.registry_spec(),
        *_sophia_refresh.registry_specs(),
    ]
