"""The method registry: one registry for every family.

Each family keeps its built-in entries next to its code (``gradkit/optim/_specs.py``,
``gradkit/mtl/_specs.py``, ``gradkit/comm/_specs.py``); this module collects them. Spec classes
live in the leaf module :mod:`gradkit._specs`, so the method modules never import this one: the
registry sits above the families it lists, and an import only goes down.

The registry drives the conformance suites (:func:`gradkit.testing.check_optimizer`,
:func:`gradkit.testing.check_aggregator`), ``gradkit list`` and ``gradkit bench``. Adding a
method means writing its module and adding one spec to its family's ``_specs.py``.

Example:
    >>> from gradkit import registry
    >>> "diffgrad" in registry.optimizer_names()
    True
    >>> registry.get_optimizer("adamp").cls.__name__
    'AdamP'
    >>> registry.get("aggregator", "mgda").cls.__name__
    'MGDA'
    >>> registry.families()
    ['optimizer', 'aggregator', 'weighting', 'compressor']
"""

from __future__ import annotations

from typing import cast

from gradkit import _specs
from gradkit._specs import (
    IMPL_FLAGS,
    AggregatorSpec,
    CompressorSpec,
    ErrorInput,
    MethodSpec,
    OptimizerSpec,
    SearchSpace,
    WeightingSpec,
)
from gradkit.comm import _specs as comm_specs
from gradkit.mtl import _specs as mtl_specs
from gradkit.mtl import _weighting_specs as weighting_specs
from gradkit.optim import _specs as optim_specs

__all__ = [
    "IMPL_FLAGS",
    "AggregatorSpec",
    "CompressorSpec",
    "ErrorInput",
    "MethodSpec",
    "OptimizerSpec",
    "SearchSpace",
    "WeightingSpec",
    "aggregator_names",
    "families",
    "get",
    "get_aggregator",
    "get_optimizer",
    "names",
    "optimizer_names",
    "register",
    "specs",
]

#: family -> name -> spec, in registration order.
_REGISTRY: dict[str, dict[str, MethodSpec]] = {}
_SPEC_CLASSES: dict[str, type[MethodSpec]] = {
    cls.family: cls for cls in (_specs.OptimizerSpec, _specs.AggregatorSpec, _specs.CompressorSpec)
}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to its family's registry and return it.

    Raises:
        TypeError: ``spec`` is not a registry spec.
        ValueError: the name is already registered in that family, or is not lower case, or
            (optimizers) a config sets an impl flag.
    """
    if not isinstance(spec, MethodSpec) or type(spec) is MethodSpec:
        raise TypeError(
            "register expects an OptimizerSpec, AggregatorSpec, WeightingSpec or CompressorSpec, "
            f"got {type(spec).__name__}"
        )
    family = _REGISTRY.setdefault(spec.family, {})
    if spec.name != spec.name.lower() or not spec.name:
        raise ValueError(f"registry names are lower case and non-empty, got {spec.name!r}")
    if spec.name in family:
        raise ValueError(f"{spec.family} {spec.name!r} is already registered")
    if isinstance(spec, OptimizerSpec):
        for config in spec.configs:
            bad = [flag for flag in IMPL_FLAGS if flag in config]
            if bad:
                raise ValueError(
                    f"registry configs must not set impl flags {bad} (optimizer {spec.name!r})"
                )
    family[spec.name] = spec
    return spec


def families() -> list[str]:
    """The registered families, in display order."""
    return list(_REGISTRY)


def _family(family: str) -> dict[str, MethodSpec]:
    if not isinstance(family, str):
        raise TypeError(f"family must be a str, got {type(family).__name__}")
    if family not in _REGISTRY:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[family]


def names(family: str) -> list[str]:
    """Names registered in ``family``, in registration order."""
    return list(_family(family))


def specs(family: str) -> list[MethodSpec]:
    """Specs registered in ``family``, in registration order."""
    return list(_family(family).values())


def get(family: str, name: str) -> MethodSpec:
    """Look up ``name`` (case-insensitive) in ``family``.

    Raises:
        ValueError: unknown family or name; the message lists the known names.
    """
    entries = _family(family)
    if not isinstance(name, str):
        raise TypeError(f"{family} name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in entries:
        raise ValueError(f"unknown {family} {name!r}; known: {', '.join(entries)}")
    return entries[key]


def optimizer_names() -> list[str]:
    """Names of all registered optimizers, in registration order."""
    return names("optimizer")


def get_optimizer(name: str) -> OptimizerSpec:
    """Look up a registered optimizer by name (case-insensitive)."""
    return cast(OptimizerSpec, get("optimizer", name))


def aggregator_names() -> list[str]:
    """Names of all registered multi-task aggregators, in registration order."""
    return names("aggregator")


def get_aggregator(name: str) -> AggregatorSpec:
    """Look up a registered aggregator by name (case-insensitive)."""
    return cast(AggregatorSpec, get("aggregator", name))


for _family_specs in (optim_specs, mtl_specs, weighting_specs, comm_specs):
    for _spec in _family_specs.builtin_specs():
        register(_spec)
for _name in _SPEC_CLASSES:
    _REGISTRY.setdefault(_name, {})
