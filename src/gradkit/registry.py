"""The method registry: one entry per optimizer, with what the shared tests need.

The registry is the single list that drives :func:`gradkit.testing.check_optimizer`
(the conformance suite), ``gradkit list`` and ``gradkit bench``. Adding an optimizer means
writing its module and adding one :class:`OptimizerSpec` here (see ``_builtin_specs``).

Example:
    >>> from gradkit.registry import get_optimizer, optimizer_names
    >>> "diffgrad" in optimizer_names()
    True
    >>> get_optimizer("adamp").cls.__name__
    'AdamP'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "ErrorInput",
    "OptimizerSpec",
    "get_optimizer",
    "optimizer_names",
    "register",
]

#: Flags that select an implementation. Configurations in the registry must never set them:
#: the conformance suite toggles them itself.
IMPL_FLAGS = ("foreach", "fused")


@dataclass(frozen=True)
class ErrorInput:
    """A constructor call that must fail.

    Attributes:
        kwargs: keyword arguments passed to the optimizer (besides the params).
        error: the exception type expected.
        match: a regular expression the message must match.
    """

    kwargs: dict[str, Any]
    error: type[Exception] | tuple[type[Exception], ...]
    match: str


@dataclass(frozen=True)
class OptimizerSpec:
    """Metadata for one registered optimizer.

    Attributes:
        name: registry key, lower case (``"diffgrad"``).
        cls: the optimizer class.
        paper: citation shown by ``gradkit list``.
        summary: one-line description.
        configs: keyword-argument sets exercised by the conformance suite. The first one is the
            "default" configuration. They never contain the impl flags ``foreach``/``fused``.
        error_inputs: constructor calls that must raise, with the message regex.
        hyperparams: names of scalar hyper-parameters (for the ``repr`` check).
        supported_impls: which of ``"foreach"`` and ``"fused"`` the class accepts.
        supports_complex: whether complex parameters are supported.
        supports_sparse: whether sparse gradients are supported.
        requires_closure: whether ``step`` needs a closure.
        new_flags: constructor flags added after the first release; the conformance suite deletes
            them from a saved state dict and checks that the checkpoint still loads.
        hessian_refresh: for second-order methods, ``hook(optimizer, loss_fn)`` that refreshes
            the curvature estimate; ``loss_fn()`` returns the current scalar loss with its
            autograd graph (no backward run, ``.grad`` untouched). The conformance suite calls it
            before every step (a curvature update every step, k = 1).
        lr: a learning rate that makes the 20-step "goes right direction" check meaningful.
        has_weight_decay: whether the class has a ``weight_decay`` hyper-parameter.
        validates_group_overrides: whether hyper-parameters given per param group (and through
            ``add_param_group``) are validated like constructor arguments (``torch.optim``'s
            classes do not do this).
        param_groups_fn: for optimizers that need their params routed into groups (the matrix
            optimizers: ≥2-D params to the matrix rule, the rest to AdamW), a function mapping
            what the suite would pass (a list of tensors or of group dicts) to the groups the
            optimizer is built with, e.g. :func:`gradkit.optim.matrix_param_groups`. The suite
            also routes the groups it adds with ``add_param_group``. ``None`` (default): params
            are passed unchanged.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    paper: str
    summary: str
    configs: Sequence[dict[str, Any]] = field(default_factory=lambda: [{}])
    error_inputs: Sequence[ErrorInput] = ()
    hyperparams: Sequence[str] = ("lr",)
    supported_impls: tuple[str, ...] = ("foreach", "fused")
    supports_complex: bool = False
    supports_sparse: bool = False
    requires_closure: bool = False
    new_flags: tuple[str, ...] = ()
    hessian_refresh: Callable[..., None] | None = None
    lr: float = 1e-2
    has_weight_decay: bool = True
    validates_group_overrides: bool = True
    param_groups_fn: Callable[[Any], list[dict[str, Any]]] | None = None


_REGISTRY: dict[str, OptimizerSpec] = {}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Add ``spec`` to the registry. Raises ``ValueError`` on a duplicate name or impl flag."""
    if not isinstance(spec, OptimizerSpec):
        raise TypeError(f"register expects an OptimizerSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY:
        raise ValueError(f"optimizer {spec.name!r} is already registered")
    for config in spec.configs:
        bad = [flag for flag in IMPL_FLAGS if flag in config]
        if bad:
            raise ValueError(
                f"registry configs must not set impl flags {bad} (optimizer {spec.name!r})"
            )
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtins() -> None:
    if not _REGISTRY:
        from gradkit.optim import _specs

        for spec in _specs.builtin_specs():
            register(spec)


def optimizer_names() -> list[str]:
    """Names of all registered optimizers, in registration order."""
    _ensure_builtins()
    return list(_REGISTRY)


def get_optimizer(name: str) -> OptimizerSpec:
    """Look up a registered optimizer by name (case-insensitive).

    Raises:
        ValueError: if ``name`` is not registered; the message lists the known names.
    """
    _ensure_builtins()
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]
