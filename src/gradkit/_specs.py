"""Registry entries: what every family's spec holds (a leaf module).

A *spec* describes one method for the tools that treat methods generically: the shared
conformance suites (:mod:`gradkit.testing`), ``gradkit list`` and ``gradkit bench``. Each family
has a spec class with a ``family`` name; all of them share ``name``, ``paper`` and ``summary``.

This module imports nothing from gradkit, so every subpackage may import it to declare its
specs; :mod:`gradkit.registry` collects them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = [
    "IMPL_FLAGS",
    "AggregatorSpec",
    "CompressorSpec",
    "ErrorInput",
    "MethodSpec",
    "OptimizerSpec",
    "SearchSpace",
    "WeightingSpec",
]

#: Flags that select an implementation. Configurations in the registry must never set them:
#: the conformance suite toggles them itself.
IMPL_FLAGS = ("foreach", "fused")


@dataclass(frozen=True)
class ErrorInput:
    """A constructor call that must fail.

    Attributes:
        kwargs: keyword arguments passed to the method (besides the params).
        error: the exception type expected.
        match: a regular expression the message must match.
    """

    kwargs: dict[str, Any]
    error: type[Exception] | tuple[type[Exception], ...]
    match: str


@dataclass(frozen=True)
class SearchSpace:
    """A method's tuning search space (used by the bench's equal-budget tuning).

    Attributes:
        lr: ``(low, high)`` of a log-uniform learning rate, or ``None`` when the method has no
            learning rate.
        log_uniform: other log-uniform hyper-parameters, ``name -> (low, high)``.
        choices: categorical hyper-parameters, ``name -> values``.
    """

    lr: tuple[float, float] | None = (1e-4, 1.0)
    log_uniform: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """What every registry entry has.

    Attributes:
        name: registry key, lower case (``"diffgrad"``); unique within its family.
        paper: citation shown by ``gradkit list`` (with the arXiv id where there is one).
        summary: one-line description.
    """

    family: ClassVar[str] = "method"

    name: str
    paper: str
    summary: str


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec(MethodSpec):
    """Metadata for one registered optimizer.

    Attributes:
        cls: the optimizer class.
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
        matrix: whether the method updates hidden weight matrices with a matrix rule (its other
            params go to an AdamW group); the bench routes a model's params accordingly.
        bench_suites: the ``gradkit bench`` suites that run this method by default.
        search_space: the tuning search space (``None``: the bench's default for optimizers).
        low_precision: float16/bfloat16 params keep float32 state and stay finite (the
            conformance suite then checks them against a float32 run); ``torch.optim``'s
            Adam-like classes do not (their float16 state overflows).
    """

    family: ClassVar[str] = "optimizer"

    cls: type[torch.optim.Optimizer]
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
    matrix: bool = False
    bench_suites: tuple[str, ...] = ()
    search_space: SearchSpace | None = None
    low_precision: bool = False


@dataclass(frozen=True, kw_only=True)
class AggregatorSpec(MethodSpec):
    """Metadata for one registered multi-task aggregator (Jacobian ``[K, P]`` → ``[P]``).

    Attributes:
        cls: the :class:`gradkit.mtl.Aggregator` subclass.
        configs: constructor keyword sets exercised by :func:`gradkit.testing.check_aggregator`;
            the first is the default.
        permutation_invariant: the output does not depend on the order of the tasks (rows).
        non_conflicting: the output ``d`` satisfies ``J d >= 0`` (no task's loss increases to
            first order).
        stateful: the aggregator keeps state across calls (momentum, accumulation buffers);
            its ``state_dict`` must round-trip.
        seeded: the output depends on a random generator, given as ``generator=``.
        min_tasks: fewest tasks the method accepts.
        error_inputs: constructor calls that must raise, with the message regex.
        bench_suites: the ``gradkit bench`` suites that run this method by default.
    """

    family: ClassVar[str] = "aggregator"

    cls: type
    configs: Sequence[dict[str, Any]] = field(default_factory=lambda: [{}])
    permutation_invariant: bool = True
    non_conflicting: bool = False
    stateful: bool = False
    seeded: bool = False
    min_tasks: int = 1
    error_inputs: Sequence[ErrorInput] = ()
    bench_suites: tuple[str, ...] = ("mtl",)


@dataclass(frozen=True, kw_only=True)
class WeightingSpec(MethodSpec):
    """Metadata for one registered multi-task loss weighting (``step(losses, shared)`` → the
    weighted loss to back-propagate), e.g. GradNorm.

    Attributes:
        cls: the weighting class; ``cls(num_tasks, **config)``.
        configs: constructor keyword sets (besides ``num_tasks``); the first is the default.
        stateful: the weighting keeps state across steps; its ``state_dict`` must round-trip.
        min_tasks: fewest tasks the method accepts.
        error_inputs: constructor calls that must raise, with the message regex.
        bench_suites: the ``gradkit bench`` suites that run this method by default.
        bench_variants: further bench methods of this entry, ``bench name -> constructor
            options`` (``{"gradnorm_libmtl": {"variant": "libmtl"}}``); a suite of
            :attr:`bench_suites` resolves them by name but does not run them by default.
    """

    family: ClassVar[str] = "weighting"

    cls: type
    configs: Sequence[dict[str, Any]] = field(default_factory=lambda: [{}])
    stateful: bool = True
    min_tasks: int = 2
    error_inputs: Sequence[ErrorInput] = ()
    bench_suites: tuple[str, ...] = ()
    bench_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CompressorSpec(MethodSpec):
    """Metadata for one registered gradient compressor (update → compact payload).

    Attributes:
        compress: ``compress(tensors) -> payload``.
        decompress: ``decompress(payload) -> tensors`` (the server's reconstruction).
        bits_per_coordinate: payload size per coordinate, without headers.
        bench_suites: the ``gradkit bench`` suites that run this method by default.
    """

    family: ClassVar[str] = "compressor"

    compress: Callable[..., Any]
    decompress: Callable[..., Any]
    bits_per_coordinate: float
    bench_suites: tuple[str, ...] = ("fed",)
