"""What the ``mtl`` suite's tasks share: aggregator names, lazy lookup in :mod:`gradkit.mtl`.

A *method* of the ``mtl`` suite is "Adam on the gradient aggregated by aggregator X". The
suite reuses the bench runner, so each method is a :class:`gradkit.bench.methods.Method` whose
``cls`` is ``torch.optim.Adam`` and whose ``name`` is the aggregator's name; the tasks look the
aggregator up by that name.

Aggregators are resolved lazily, every time, from ``gradkit.mtl`` (by class name), so this
module imports even when ``gradkit.mtl`` or some of its classes do not exist yet; such names are
reported as *not available* instead of failing.

``single_task`` is not an aggregator: on the MultiDigits tasks it trains one model per task
(same encoder, one head), the baseline of Δm%.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from gradkit.bench.errors import BenchConfigError, unknown_name
from gradkit.bench.methods import Method

__all__ = [
    "AGGREGATORS",
    "SINGLE_TASK",
    "aggregator_class",
    "as_function",
    "available_aggregators",
    "build_aggregator",
    "mtl_backward_function",
    "mtl_method",
    "unavailable_aggregators",
]

#: Aggregator name (as on the command line) → (class name in ``gradkit.mtl``, summary, paper).
AGGREGATORS: dict[str, tuple[str, str, str]] = {
    "mean": ("Mean", "mean of the task gradients (linear scalarisation)", ""),
    "sum": ("Sum", "sum of the task gradients (linear scalarisation)", ""),
    "pcgrad": (
        "PCGrad",
        "projecting conflicting gradients",
        "Yu et al., Gradient Surgery for Multi-Task Learning, NeurIPS 2020",
    ),
    "cagrad": (
        "CAGrad",
        "conflict-averse gradient descent",
        "Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021",
    ),
    "mgda": (
        "MGDA",
        "min-norm point of the convex hull of the task gradients",
        "Désidéri 2012; Sener & Koltun, Multi-Task Learning as Multi-Objective "
        "Optimization, NeurIPS 2018",
    ),
    "samgs": (
        "SAMGS",
        "similarity-aware momentum gradient surgery",
        "Borsani et al., Gradient Similarity Surgery in Multi-Task Deep Learning, ECML-PKDD 2025",
    ),
    "gcond": (
        "GCond",
        "gradient conductor (accumulate-then-resolve)",
        "Limarenko & Studenikina, GCond, arXiv 2509.07252",
    ),
}

#: The single-task baseline's method name (MultiDigits only).
SINGLE_TASK = "single_task"

_MODULE = "gradkit.mtl"


def _mtl_module() -> Any | None:
    """``gradkit.mtl`` or ``None`` when it cannot be imported."""
    try:
        return importlib.import_module(_MODULE)
    except ImportError:
        return None


def aggregator_class(name: str) -> Any | None:
    """The ``gradkit.mtl`` class behind aggregator ``name``, ``None`` if it does not exist."""
    if name not in AGGREGATORS:
        raise unknown_name("aggregator", name, [*AGGREGATORS, SINGLE_TASK])
    module = _mtl_module()
    if module is None:
        return None
    return getattr(module, AGGREGATORS[name][0], None)


def available_aggregators() -> list[str]:
    """Aggregator names whose class exists in ``gradkit.mtl``, in :data:`AGGREGATORS` order."""
    return [n for n in AGGREGATORS if aggregator_class(n) is not None]


def unavailable_aggregators() -> list[str]:
    """Aggregator names whose class is missing from ``gradkit.mtl`` (or the module is)."""
    return [n for n in AGGREGATORS if aggregator_class(n) is None]


def mtl_method(name: str) -> Method:
    """The bench :class:`Method` for aggregator ``name`` (or :data:`SINGLE_TASK`).

    Raises:
        BenchConfigError: unknown name, or an aggregator that ``gradkit.mtl`` does not provide.
    """
    key = name.strip().lower()
    if key == SINGLE_TASK:
        return Method(
            SINGLE_TASK,
            torch.optim.Adam,
            "gradkit.bench",
            "each task trained alone (same encoder, one head): the Δm% baseline",
        )
    if key not in AGGREGATORS:
        raise unknown_name("aggregator", name, [*AGGREGATORS, SINGLE_TASK])
    if aggregator_class(key) is None:
        raise BenchConfigError(
            f"aggregator {key!r} is not available: {_MODULE}.{AGGREGATORS[key][0]} does not "
            f"exist in this gradkit (available: {', '.join(available_aggregators()) or 'none'})"
        )
    _, summary, paper = AGGREGATORS[key]
    return Method(key, torch.optim.Adam, _MODULE, f"Adam on the {summary}", paper)


def build_aggregator(name: str, options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Instantiate aggregator ``name`` with the ``options`` its constructor accepts.

    Returns the aggregator and the keyword arguments actually passed.
    """
    cls = aggregator_class(name)
    if cls is None:
        raise BenchConfigError(f"aggregator {name!r} is not available")
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    used = {k: v for k, v in options.items() if takes_any or k in params}
    return cls(**used), used


def as_function(aggregator: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``jacobian [K, P] → update [P]`` for a callable aggregator or one with an
    ``accumulate(jacobian)`` / ``step()`` pair (GCond's accumulate-then-resolve shape)."""
    if hasattr(aggregator, "accumulate") and hasattr(aggregator, "step"):

        def resolve(jacobian: torch.Tensor) -> torch.Tensor:
            aggregator.accumulate(jacobian)
            out: torch.Tensor = aggregator.step()
            return out

        return resolve
    if callable(aggregator):
        return aggregator
    raise TypeError(f"{type(aggregator).__name__} is neither callable nor accumulate/step")


def mtl_backward_function() -> Callable[..., Any]:
    """``gradkit.mtl.mtl_backward`` (raises ``BenchConfigError`` when it does not exist)."""
    module = _mtl_module()
    fn = getattr(module, "mtl_backward", None) if module is not None else None
    if fn is None:
        raise BenchConfigError(f"{_MODULE}.mtl_backward is not available")
    return fn
