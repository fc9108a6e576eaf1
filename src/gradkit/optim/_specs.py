"""The built-in registry entries: one line per optimizer module, one line per bench tag."""

from __future__ import annotations

import dataclasses
from typing import Any

from gradkit._specs import OptimizerSpec, SearchSpace

#: What ``gradkit bench`` does with each built-in optimizer: the suites that run it by default
#: (``bench_suites``) and whether it is a matrix method (``matrix``: the bench routes a model's
#: hidden weight matrices to it and the other parameters to its AdamW groups) and its tuning
#: ``search_space`` (none: the bench's default, log-uniform lr in [1e-4, 1]). Adding an
#: optimizer to a suite is one line here (or the same fields in its own spec).
BENCH_TAGS: dict[str, dict[str, Any]] = {
    "diffgrad": {"bench_suites": ("default",)},
    "adabelief": {"bench_suites": ("default",)},
    "adamp": {"bench_suites": ("default",)},
    "sgdp": {"bench_suites": ("default",)},
    "swan": {"bench_suites": ("lm",), "matrix": True},
    "sinkgd": {"bench_suites": ("lm",), "matrix": True},
    "aro": {"bench_suites": ("lm",), "matrix": True},
    # SophiaG's ρ is tuned too: the official 0.04 leaves almost every coordinate clipped in a
    # short run (win rate 0.02 in the lm suite), 1.0 put it in the README's 0.1-0.5 band.
    "sophiag": {
        "bench_suites": ("lm",),
        "search_space": SearchSpace(lr=(1e-4, 1.0), log_uniform={"rho": (0.01, 3.0)}),
    },
}


def builtin_specs() -> list[OptimizerSpec]:
    """Registry entries of the optimizers that ship with gradkit, in display order, with their
    :data:`BENCH_TAGS`."""
    from gradkit.optim import (
        _adabelief,
        _adamp_specs,
        _aro,
        _diffgrad,
        _sinkgd,
        _sophia_refresh,
        _swan,
    )

    specs = [
        _diffgrad.registry_spec(),
        _adabelief.registry_spec(),
        *_adamp_specs.registry_specs(),
        _swan.registry_spec(),
        _sinkgd.registry_spec(),
        _aro.registry_spec(),
        *_sophia_refresh.registry_specs(),
    ]
    return [dataclasses.replace(s, **BENCH_TAGS.get(s.name, {})) for s in specs]
