"""Bench methods: what a suite runs. Optimizers (torch baselines plus every gradkit registry
entry), multi-task aggregators, federated strategies and task-specific baselines all derive
from :class:`BenchMethod`; a task receives the method objects its suite resolved.

The baselines are ``sgd`` (``torch.optim.SGD`` with momentum 0.9), ``adam`` and ``adamw``.
Every name in :func:`gradkit.registry.optimizer_names` is available too; nothing here lists the
gradkit optimizers by hand.

Tasks describe hyper-parameters as one dict (``lr``, ``betas``, ``momentum``,
``weight_decay``...); :meth:`Method.build` passes only the keywords the optimizer's constructor
accepts, so ``betas`` reaches Adam-like methods and ``momentum`` reaches SGD-like ones.

Matrix methods (Muon, SWAN, SinkGD, ARO) update only the hidden weight matrices; the other
parameters go to AdamW. A :class:`Method` with ``routing`` set says how
(:meth:`Method.build_for_model`, see :mod:`gradkit.bench.routing`); the AdamW side's
keyword arguments are the ``"aux"`` entry of the requested hyper-parameters. A method that
needs a curvature refresh every few steps (Sophia) carries it as ``refresh``/``refresh_every``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, cast

import torch

from gradkit._specs import SearchSpace
from gradkit.bench.errors import BenchConfigError, unknown_name

__all__ = [
    "BASELINES",
    "BenchMethod",
    "Method",
    "UserMethod",
    "available_methods",
    "constructor_keywords",
    "registry_methods",
    "resolve_method",
    "resolve_methods",
    "suite_optimizers",
    "user_method",
]


class BenchMethod(abc.ABC):
    """Anything a bench suite runs, of any family.

    Every method has a lower-case :attr:`name` (the ``--optimizers`` value), a :attr:`source`
    (``"torch"``, ``"gradkit"``, ``"gradkit.mtl"``...), a one-line :attr:`summary` and a
    :attr:`paper`; :attr:`kind` names its family (``"optimizer"``, ``"aggregator"``,
    ``"strategy"``, ``"baseline"``). The engine only needs :meth:`hyperparams` (what a failed
    run records as its arguments) and :meth:`with_overrides` (a task's hyper-parameter
    variants); everything else is between the method and the tasks of its suite.
    """

    kind: ClassVar[str] = "method"
    name: str
    source: str
    summary: str
    paper: str

    @abc.abstractmethod
    def hyperparams(self, requested: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments this method would be built with from ``requested``."""

    def with_overrides(self, overrides: Mapping[str, Any]) -> BenchMethod:
        """This method with fixed hyper-parameters ``overrides`` (a task's variant).

        Raises:
            TypeError: the method kind has no hyper-parameters to override.
        """
        if not overrides:
            return self
        raise TypeError(f"{self.kind} method {self.name!r} takes no hyper-parameter variants")

    def tuning_space(self) -> SearchSpace | None:
        """What the equal-budget tuning draws this method's hyper-parameters from (its
        :class:`~gradkit.registry.SearchSpace`); ``None``: nothing to tune, the method runs
        with the hyper-parameters its task gives it."""
        return None


def constructor_keywords(cls: type) -> frozenset[str] | None:
    """Keyword names ``cls``'s constructor accepts, besides ``self`` and ``params`` (``None``
    when it takes ``**kwargs`` or has no inspectable signature)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    names = set()
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(p.name)
    return frozenset(names - {"self", "params"})


@dataclass(frozen=True)
class Method(BenchMethod):
    """An optimizer the benchmark can run.

    Attributes:
        name: lower-case name used on the command line (``"adam"``, ``"diffgrad"``).
        cls: the ``torch.optim.Optimizer`` subclass, called as ``cls(params, lr=..., **kw)``.
        source: ``"torch"`` for the baselines, ``"gradkit"`` for registry entries.
        summary: one-line description.
        paper: citation.
        fixed: keyword arguments that define the method and override task settings
            (``sgd`` fixes ``momentum=0.9``).
        routing: ``None`` (every parameter to ``cls``), ``"groups"`` (``cls`` routes by param
            group itself: matrix group and AdamW group from
            :func:`gradkit.optim.matrix_param_groups`) or ``"chain"`` (matrices to ``cls``,
            the rest to a separate ``torch.optim.AdamW``); see :meth:`build_for_model`.
        refresh: ``refresh(optimizer, model, batch)``, called by tasks that support it after
            every ``refresh_every``-th step (Sophia's Hessian estimate).
        refresh_every: the refresh interval in steps (0: never).
        param_groups_fn: maps the parameters :meth:`build` receives (a list of tensors or
            group dicts) to the param groups the optimizer is built with; set for registry
            entries whose :attr:`~gradkit.registry.OptimizerSpec.param_groups_fn` is set (the
            matrix optimizers route 1-D parameters to AdamW by ``ndim``).
        search_space: the tuning search space (the registry entry's; ``None``: the default,
            see :meth:`tuning_space`).
    """

    name: str
    cls: type[torch.optim.Optimizer]
    source: str
    summary: str = ""
    paper: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    routing: str | None = None
    refresh: Callable[[Any, torch.nn.Module, Any], None] | None = field(default=None, compare=False)
    refresh_every: int = 0
    param_groups_fn: Callable[[Any], Any] | None = field(default=None, compare=False)
    search_space: SearchSpace | None = field(default=None, compare=False)

    kind: ClassVar[str] = "optimizer"

    def tuning_space(self) -> SearchSpace:
        """:attr:`search_space`, or :data:`~gradkit.bench.search.DEFAULT_SPACE` (log-uniform
        lr in [1e-4, 1]) when the method declares none."""
        from gradkit.bench.search import DEFAULT_SPACE

        return self.search_space if self.search_space is not None else DEFAULT_SPACE

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.refresh_every < 0 or (self.refresh is not None and self.refresh_every < 1):
            raise ValueError(
                f"refresh_every must be >= 1 with a refresh hook (0 without), got "
                f"{self.refresh_every}"
            )

    @cached_property
    def accepted(self) -> frozenset[str] | None:
        """Keyword names the constructor accepts (``None`` if it takes ``**kwargs``)."""
        return constructor_keywords(self.cls)

    def accepts(self, keyword: str) -> bool:
        """Whether the constructor takes ``keyword`` (``lr`` is always assumed)."""
        return keyword == "lr" or self.accepted is None or keyword in self.accepted

    @property
    def family(self) -> str:
        """``"adaptive"`` (takes ``betas``), ``"momentum"`` (takes ``momentum``) or ``"other"``.

        Tasks use the family to pick a learning rate for methods they have no entry for.
        """
        if self.accepted is None:
            return "other"
        if "betas" in self.accepted:
            return "adaptive"
        if "momentum" in self.accepted:
            return "momentum"
        return "other"

    def hyperparams(self, requested: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments actually passed: ``requested`` filtered to what the
        constructor accepts (``lr`` always kept), then :attr:`fixed` on top."""
        if "lr" not in requested:
            raise ValueError(f"hyper-parameters for {self.name!r} must contain 'lr'")
        if self.accepted is None:
            chosen = {"lr": requested["lr"]}
        else:
            chosen = {k: v for k, v in requested.items() if self.accepts(k)}
        chosen.update(self.fixed)
        return chosen

    def with_overrides(self, overrides: Mapping[str, Any]) -> Method:
        """This method with ``overrides`` added to :attr:`fixed` (they win over a task's
        requested hyper-parameters)."""
        if not overrides:
            return self
        return dataclasses.replace(self, fixed={**self.fixed, **overrides})

    def build(
        self, params: Iterable[Any], requested: Mapping[str, Any]
    ) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
        """Construct the optimizer; returns it and the keyword arguments used."""
        kwargs = self.hyperparams(requested)
        kwargs.pop("aux", None)
        if self.param_groups_fn is not None:
            params = self.param_groups_fn(list(params))
        return self.cls(params, **kwargs), kwargs

    def build_for_model(
        self, model: torch.nn.Module, requested: Mapping[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """Construct the optimizer for ``model``'s parameters, following :attr:`routing`.

        ``requested["aux"]`` (a dict, optional) holds the AdamW keyword arguments of the
        non-matrix parameters of routed methods; it is ignored without routing. Returns the
        optimizer (a :class:`~gradkit.bench.routing.OptimizerChain` for ``"chain"``) and the
        keyword arguments used, with ``"aux"`` for routed methods.
        """
        if self.routing is None:
            return self.build(model.parameters(), requested)
        from gradkit.bench.routing import build_routed

        kwargs = self.hyperparams(requested)
        aux = dict(kwargs.pop("aux", None) or requested.get("aux") or {})
        optimizer = build_routed(self.cls, self.routing, model, kwargs, aux)
        return optimizer, {**kwargs, "aux": aux}


#: The values of :attr:`Method.routing`.
ROUTINGS = (None, "groups", "chain")

#: The torch baselines, always available.
BASELINES: dict[str, Method] = {
    "sgd": Method(
        "sgd",
        torch.optim.SGD,
        "torch",
        "torch.optim.SGD with heavy-ball momentum 0.9",
        "Polyak 1964; Sutskever et al., ICML 2013",
        {"momentum": 0.9},
    ),
    "adam": Method(
        "adam",
        torch.optim.Adam,
        "torch",
        "torch.optim.Adam",
        "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015",
    ),
    "adamw": Method(
        "adamw",
        torch.optim.AdamW,
        "torch",
        "torch.optim.AdamW (decoupled weight decay)",
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019",
    ),
}


def registry_methods() -> tuple[dict[str, Method], str | None]:
    """The gradkit registry entries as :class:`Method` objects.

    Returns the methods and, if the registry could not be loaded (for example while
    ``gradkit.optim`` is incomplete), an error message instead of raising.
    """
    try:
        from gradkit.registry import get_optimizer, optimizer_names

        names = optimizer_names()
        specs = [get_optimizer(n) for n in names]
    except Exception as exc:  # a broken optional part must not break the baselines
        return {}, f"gradkit optimizer registry unavailable: {type(exc).__name__}: {exc}"
    out: dict[str, Method] = {}
    for spec in specs:
        key = spec.name.lower()
        if key in BASELINES:
            continue  # the baseline names keep their torch meaning
        out[key] = Method(
            key,
            spec.cls,
            "gradkit",
            spec.summary,
            spec.paper,
            routing="groups" if spec.matrix else None,
            param_groups_fn=spec.param_groups_fn,
            search_space=spec.search_space,
        )
    return out, None


def suite_optimizers(suite: str) -> list[str]:
    """Names of the registered optimizers tagged for ``suite`` (their
    :attr:`~gradkit.registry.OptimizerSpec.bench_suites`), in registration order; empty when
    the registry cannot be read.

    Example:
        >>> suite_optimizers("default")
        ['diffgrad', 'adabelief', 'adamp', 'sgdp']
    """
    try:
        from gradkit.registry import specs

        tagged = [s for s in specs("optimizer") if suite in getattr(s, "bench_suites", ())]
    except Exception:  # the baselines still run (see registry_methods)
        return []
    return [s.name for s in tagged]


def available_methods() -> dict[str, Method]:
    """Every resolvable method: baselines first, then the registry in registration order."""
    methods = dict(BASELINES)
    methods.update(registry_methods()[0])
    return methods


def resolve_method(name: str, methods: Mapping[str, Method] | None = None) -> Method:
    """Look ``name`` up (case-insensitive) in ``methods`` (default :func:`available_methods`).

    Raises:
        BenchConfigError: unknown name; the message lists the valid ones.
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"method name must be a str, got {type(name).__name__}")
    if methods is None:
        methods = available_methods()
    key = name.strip().lower()
    if key not in methods:
        raise unknown_name("optimizer", name, methods)
    return methods[key]


def resolve_methods(
    names: Iterable[str | Method | type | Callable[..., Any]],
    extra: Mapping[str, Method] | None = None,
) -> list[Method]:
    """Resolve several methods, rejecting duplicates and an empty list.

    Each item is a name (looked up in :func:`available_methods`; ``extra``, a suite's own
    methods, is searched first and may shadow registry names), a :class:`Method`, or a user's
    optimizer class or factory (:func:`user_method`).

    Raises:
        BenchConfigError: an unknown name, an empty list, two methods of the same name, or a
            user method named like a built-in one.
    """
    items = list(names)
    if not items:
        raise BenchConfigError("no optimizers selected")
    methods = {**available_methods(), **(extra or {})}
    seen: dict[str, Method] = {}
    for item in items:
        if isinstance(item, str):
            method = resolve_method(item, methods)
        else:
            method = item if isinstance(item, Method) else user_method(item)
            taken = methods.get(method.name)
            if isinstance(method, UserMethod) and taken is not None and taken != method:
                raise BenchConfigError(
                    f"your optimizer {method.summary} would be named {method.name!r}, which is "
                    f"the built-in {taken.source} method {method.name!r} ({taken.summary}); "
                    "give it another name: gradkit.bench.user_method(obj, name=...) in Python, "
                    "{ name = ..., factory = ... } in a config file"
                )
        if method.name in seen:
            first = seen[method.name]
            both = f" ({first.summary} and {method.summary})" if first != method else ""
            raise BenchConfigError(f"optimizer {method.name!r} is selected twice{both}")
        seen[method.name] = method
    return list(seen.values())


#: What a user method's name may look like (it names studies, records and report rows).
_NAME = re.compile(r"[a-z0-9_][a-z0-9_.+-]*")


def _object_name(obj: Any) -> str:
    """``module.qualname`` of a class or function, for messages."""
    inner = obj.func if isinstance(obj, functools.partial) else obj
    module = getattr(inner, "__module__", None) or "?"
    return f"{module}.{getattr(inner, '__qualname__', type(inner).__name__)}"


@dataclass(frozen=True)
class UserMethod(Method):
    """A user's optimizer: a ``torch.optim.Optimizer`` subclass, or a factory
    ``factory(params, **hyperparams) -> torch.optim.Optimizer`` (made by :func:`user_method`).

    It is built like every :class:`Method` (``cls(params, **kwargs)``, keywords filtered to
    what the class or factory accepts); :meth:`build` also checks that a factory returned an
    optimizer.
    """

    def build(
        self, params: Iterable[Any], requested: Mapping[str, Any]
    ) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
        """Construct the optimizer; ``TypeError`` if a factory returns anything else."""
        optimizer, kwargs = super().build(params, requested)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer factory {self.summary} returned {type(optimizer).__name__}, not a "
                "torch.optim.Optimizer"
            )
        return optimizer, kwargs


def user_method(
    obj: type | Callable[..., Any], name: str | None = None, *, source: str = "user"
) -> UserMethod:
    """A bench method from a user's optimizer class or factory.

    Args:
        obj: a ``torch.optim.Optimizer`` subclass (built as ``obj(params, lr=..., ...)``), or a
            factory ``obj(params, **hyperparams)`` returning one. Only the keywords its
            signature names reach it (all of the task's and the tuner's when it takes
            ``**kwargs``; ``lr`` always).
        name: the method's name in records and the report; default the class name lower-cased,
            or the function's ``__name__`` (lower-cased).
        source: the :attr:`Method.source` shown in the report.

    The method is tuned over :data:`~gradkit.bench.search.DEFAULT_SPACE` (log-uniform lr in
    [1e-4, 1]) unless a search space is set (``dataclasses.replace(m, search_space=...)``, or
    ``[search.<name>]`` in a config file).

    Raises:
        BenchConfigError: ``obj`` is not a class or callable, a lambda without ``name``, a
            class that is not a ``torch.optim.Optimizer``, or a name that is not lower-case
            letters, digits and ``_.+-``.

    Example:
        >>> m = user_method(torch.optim.RMSprop)
        >>> (m.name, m.source, m.family)
        ('rmsprop', 'user', 'momentum')
    """
    if isinstance(obj, (BenchMethod, str)) or not callable(obj):
        raise BenchConfigError(
            f"an optimizer must be a torch.optim.Optimizer subclass or a factory "
            f"f(params, **hyperparams), got {type(obj).__name__} {obj!r}"
        )
    if isinstance(obj, type) and not issubclass(obj, torch.optim.Optimizer):
        raise BenchConfigError(
            f"{_object_name(obj)} is a class but not a torch.optim.Optimizer subclass"
        )
    inner = obj.func if isinstance(obj, functools.partial) else obj
    default = getattr(inner, "__name__", None)
    if name is None and (not default or default == "<lambda>"):
        raise BenchConfigError(
            f"{_object_name(obj)} has no usable name; define the factory with def, or pass name=..."
        )
    key = (name if name is not None else str(default)).strip().lower()
    if not _NAME.fullmatch(key):
        raise BenchConfigError(
            f"method name {key!r} (from {_object_name(obj)}) must be lower-case letters, "
            "digits and _.+- (it names studies and report rows)"
        )
    return UserMethod(key, cast(Any, obj), source, _object_name(obj))
