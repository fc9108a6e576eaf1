"""What the ``mtl`` suite's tasks share: its methods, read from the registry.

A method of the ``mtl`` suite is an :class:`~gradkit.bench.families.AggregatorMethod`: "Adam on
the gradient aggregated by aggregator X", for every aggregator registered with
``"mtl"`` in its :attr:`~gradkit.registry.AggregatorSpec.bench_suites`
(``gradkit.registry.specs("aggregator")``); there is no list of aggregator names here.

``single_task`` (:data:`SINGLE_TASK`) is not an aggregator but a
:class:`~gradkit.bench.families.TaskBaseline`: on the MultiDigits tasks it trains one model per
task (same encoder, one head), the baseline of Δm%.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradkit.bench.errors import BenchConfigError, unknown_name
from gradkit.bench.families import AggregatorMethod, TaskBaseline
from gradkit.bench.methods import BenchMethod

__all__ = [
    "SINGLE_TASK",
    "SINGLE_TASK_METHOD",
    "aggregator_methods",
    "mtl_method",
    "resolve_mtl_methods",
]

#: The single-task baseline's method name (MultiDigits only).
SINGLE_TASK = "single_task"

#: The single-task baseline as a bench method.
SINGLE_TASK_METHOD = TaskBaseline(
    SINGLE_TASK, "each task trained alone (same encoder, one head): the Δm% baseline"
)


def aggregator_methods(suite: str | None = None) -> dict[str, AggregatorMethod]:
    """Every registered aggregator as a bench method (name → method), in registration order;
    with ``suite``, only those tagged for it.

    Example:
        >>> list(aggregator_methods("mtl"))[:3]
        ['mean', 'sum', 'pcgrad']
    """
    from gradkit.registry import specs

    return {
        spec.name: AggregatorMethod.from_spec(spec)
        for spec in specs("aggregator")
        if suite is None or suite in getattr(spec, "bench_suites", ())
    }


def mtl_method(name: str) -> BenchMethod:
    """The bench method for aggregator ``name`` (or :data:`SINGLE_TASK`).

    Raises:
        BenchConfigError: ``name`` is no registered aggregator (the message lists them).
    """
    key = name.strip().lower()
    if key == SINGLE_TASK:
        return SINGLE_TASK_METHOD
    methods = aggregator_methods()
    if key not in methods:
        raise unknown_name("aggregator", name, [*methods, SINGLE_TASK])
    return methods[key]


def resolve_mtl_methods(names: Sequence[str]) -> list[BenchMethod]:
    """The ``mtl`` suite's ``resolve`` hook: :func:`mtl_method` of each name, no repeats."""
    methods: dict[str, BenchMethod] = {}
    for name in names:
        method = mtl_method(name)
        if method.name in methods:
            raise BenchConfigError(f"method {name!r} is selected twice")
        methods[method.name] = method
    return list(methods.values())
