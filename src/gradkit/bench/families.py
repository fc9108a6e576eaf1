"""Bench methods of the families other than optimizers: aggregators, strategies, baselines.

* :class:`AggregatorMethod`: a multi-task aggregator from the registry
  (``gradkit.registry.specs("aggregator")``) with the optimizer that steps on its output
  (``torch.optim.Adam`` in the ``mtl`` suite);
* :class:`WeightingMethod`: a multi-task loss weighting from the registry
  (``gradkit.registry.specs("weighting")``, e.g. GradNorm): the task trains on
  ``Σ w_i L_i`` with weights the weighting updates every step, stepped by an optimizer
  (``torch.optim.Adam`` in the ``mtl`` suite);
* :class:`StrategyMethod`: a federated-learning strategy of :mod:`gradkit.fed` (a method, an
  optional attack on one client and its scale), run by the ``fed`` suite;
* :class:`TaskBaseline`: a reference a task computes itself (``single_task`` on MultiDigits).

All are :class:`~gradkit.bench.methods.BenchMethod` objects, so the engine runs, seeds, times
and records them as it does optimizers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from gradkit.bench.methods import BASELINES, BenchMethod, Method, constructor_keywords

__all__ = ["AggregatorMethod", "StrategyMethod", "TaskBaseline", "WeightingMethod", "as_function"]


def as_function(aggregator: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``jacobian [K, P] → update [P]`` for a callable aggregator or one with an
    ``accumulate(jacobian)`` / ``step()`` pair (GCond's accumulate-then-resolve shape).

    Example:
        >>> as_function(lambda j: j.mean(0))(torch.ones(2, 3)).tolist()
        [1.0, 1.0, 1.0]
    """
    if hasattr(aggregator, "accumulate") and hasattr(aggregator, "step"):

        def resolve(jacobian: torch.Tensor) -> torch.Tensor:
            aggregator.accumulate(jacobian)
            out: torch.Tensor = aggregator.step()
            return out

        return resolve
    if callable(aggregator):
        return aggregator
    raise TypeError(f"{type(aggregator).__name__} is neither callable nor accumulate/step")


class _WithOptimizer(BenchMethod):
    """A method that trains the network with an ordinary optimizer (:attr:`optimizer`) and
    changes what it steps on: its hyper-parameters and its build are the optimizer's."""

    optimizer: Method

    def hyperparams(self, requested: Mapping[str, Any]) -> dict[str, Any]:
        """The optimizer's keyword arguments (see :meth:`Method.hyperparams`)."""
        return self.optimizer.hyperparams(requested)

    def build(
        self, params: Iterable[Any], requested: Mapping[str, Any]
    ) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
        """The optimizer over ``params`` and its keyword arguments."""
        return self.optimizer.build(params, requested)


@dataclass(frozen=True)
class AggregatorMethod(_WithOptimizer):
    """A multi-task aggregator (Jacobian ``[K, P]`` → update ``[P]``) with its optimizer.

    Attributes:
        name: the aggregator's registry name (``"pcgrad"``).
        cls: the aggregator class.
        source: where it comes from (``"gradkit.mtl"``).
        summary: one-line description.
        paper: citation.
        optimizer: the optimizer that steps on the aggregated gradient (Adam by default).

    Example:
        >>> from gradkit.registry import get_aggregator
        >>> m = AggregatorMethod.from_spec(get_aggregator("cagrad"))
        >>> agg, used = m.build_aggregator({"c": 0.4, "not_an_option": 1})
        >>> (m.kind, type(agg).__name__, used, m.hyperparams({"lr": 1e-3, "momentum": 0.9}))
        ('aggregator', 'CAGrad', {'c': 0.4}, {'lr': 0.001})
    """

    name: str
    cls: type
    source: str = "gradkit.mtl"
    summary: str = ""
    paper: str = ""
    optimizer: Method = field(default_factory=lambda: BASELINES["adam"])

    kind: ClassVar[str] = "aggregator"

    @classmethod
    def from_spec(cls, spec: Any, optimizer: Method | None = None) -> AggregatorMethod:
        """The method of a registry :class:`~gradkit.registry.AggregatorSpec`."""
        return cls(
            spec.name,
            spec.cls,
            spec.cls.__module__.rsplit("._", 1)[0],
            spec.summary,
            spec.paper,
            optimizer or BASELINES["adam"],
        )

    def build_aggregator(self, options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """An aggregator instance built with the ``options`` its constructor accepts; returns
        it and the keyword arguments actually passed."""
        accepted = constructor_keywords(self.cls)
        used = {k: v for k, v in options.items() if accepted is None or k in accepted}
        return self.cls(**used), used


@dataclass(frozen=True)
class WeightingMethod(_WithOptimizer):
    """A multi-task loss weighting (``T`` task losses → weights ``w``; the network trains on
    ``Σ w_i L_i``) with the optimizer that steps on the weighted loss's gradient.

    The weighting object is built per run by :meth:`build_weighting` as
    ``cls(num_tasks, **options)``; the task drives it (GradNorm: ``step(losses, W)`` or
    ``update(values, norms)`` every step, ``end_epoch()`` at every epoch boundary).

    Attributes:
        name: the bench name (``"gradnorm"``, or a registry ``bench_variants`` key such as
            ``"gradnorm_libmtl"``).
        cls: the weighting class.
        config: the constructor options that define this method (``{"variant": "libmtl"}``);
            they win over a task's options.
        source: where it comes from (``"gradkit.mtl"``).
        summary: one-line description.
        paper: citation.
        optimizer: the optimizer of the network's parameters (Adam by default).

    Example:
        >>> from gradkit.registry import specs
        >>> spec = next(s for s in specs("weighting") if s.name == "gradnorm")
        >>> m = WeightingMethod.from_spec(spec, "gradnorm_libmtl", {"variant": "libmtl"})
        >>> w, used = m.build_weighting(2, {"lr": 1e-3, "variant": "paper", "nope": 1})
        >>> (m.kind, type(w).__name__, m.hyperparams({"lr": 1e-3, "momentum": 0.9}))
        ('weighting', 'GradNorm', {'lr': 0.001})
        >>> used  # GradNorm's hyperparameters(): the options given, the defaults, the config
        {'alpha': 1.5, 'lr': 0.001, 'optimizer': 'adam', 'variant': 'libmtl', 'min_weight': 1e-06}
    """

    name: str
    cls: type
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = "gradkit.mtl"
    summary: str = ""
    paper: str = ""
    optimizer: Method = field(default_factory=lambda: BASELINES["adam"])

    kind: ClassVar[str] = "weighting"

    @classmethod
    def from_spec(
        cls,
        spec: Any,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        optimizer: Method | None = None,
    ) -> WeightingMethod:
        """The method of a registry :class:`~gradkit.registry.WeightingSpec`, or of one of its
        ``bench_variants`` (``name`` and its ``config``)."""
        suffix = "" if not config else " (" + ", ".join(f"{k}={v!r}" for k, v in config.items())
        return cls(
            name or spec.name,
            spec.cls,
            dict(config or {}),
            spec.cls.__module__.rsplit("._", 1)[0],
            spec.summary + (suffix + ")" if suffix else ""),
            spec.paper,
            optimizer or BASELINES["adam"],
        )

    def build_weighting(
        self, num_tasks: int, options: Mapping[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """A weighting for ``num_tasks`` tasks, built with the ``options`` its constructor
        accepts and :attr:`config` on top; returns it and the options it runs with: its
        ``hyperparameters()`` (defaults included) when it has that method, else the keyword
        arguments passed (``num_tasks`` left out either way)."""
        accepted = constructor_keywords(self.cls)
        used = {k: v for k, v in options.items() if accepted is None or k in accepted}
        used.update(self.config)
        used.pop("num_tasks", None)
        weighting = self.cls(num_tasks, **used)
        if callable(getattr(weighting, "hyperparameters", None)):
            used = dict(weighting.hyperparameters())
            used.pop("num_tasks", None)
        return weighting, used


@dataclass(frozen=True)
class TaskBaseline(BenchMethod):
    """A reference result a task computes itself (no optimizer choice involved).

    Attributes:
        name: the method name (``"single_task"``).
        summary: one-line description.
        source: ``"gradkit.bench"``.
        paper: citation, if any.
        optimizer: the optimizer the task trains the baseline with (for the record).
    """

    name: str
    summary: str = ""
    source: str = "gradkit.bench"
    paper: str = ""
    optimizer: Method = field(default_factory=lambda: BASELINES["adam"])

    kind: ClassVar[str] = "baseline"

    def hyperparams(self, requested: Mapping[str, Any]) -> dict[str, Any]:
        """The baseline optimizer's keyword arguments."""
        return self.optimizer.hyperparams(requested)


@dataclass(frozen=True)
class StrategyMethod(BenchMethod):
    """A federated-learning strategy: a :mod:`gradkit.fed` method, optionally attacked.

    Attributes:
        name: the bench name (``"edgedetect_ef+signflip"``).
        strategy: the :data:`gradkit.fed.experiment.METHODS` key (``"edgedetect_ef"``).
        attack: ``"none"``, ``"signflip"`` or ``"labelflip"`` (one client attacks).
        attack_scale: the attacker's scale (``-10·u`` for a boosted sign flip).
        summary, paper, source: as for every method.

    Example:
        >>> m = StrategyMethod("fedavg+signflip", "fedavg", "signflip")
        >>> (m.kind, m.hyperparams({}), m.attacked)
        ('strategy', {}, True)
    """

    name: str
    strategy: str
    attack: str = "none"
    attack_scale: float = 1.0
    summary: str = ""
    paper: str = ""
    source: str = "gradkit.fed"

    kind: ClassVar[str] = "strategy"

    @property
    def attacked(self) -> bool:
        """Whether one client attacks."""
        return self.attack != "none"

    def hyperparams(self, requested: Mapping[str, Any]) -> dict[str, Any]:
        """A strategy's settings are recorded by its task; nothing is requested."""
        return dict(requested)
