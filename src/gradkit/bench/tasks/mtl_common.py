"""What the ``mtl`` suite's tasks share: its methods, read from the registry.

A method of the ``mtl`` suite is one of:

* an :class:`~gradkit.bench.families.AggregatorMethod`: "Adam on the gradient aggregated by
  aggregator X", for every aggregator registered with ``"mtl"`` in its
  :attr:`~gradkit.registry.AggregatorSpec.bench_suites` (``gradkit.registry.specs("aggregator")``);
* a :class:`~gradkit.bench.families.WeightingMethod`: "Adam on ``Σ w_i L_i`` with the weights
  of loss weighting X", for every loss weighting registered with ``"mtl"`` in its
  :attr:`~gradkit.registry.WeightingSpec.bench_suites` (``gradkit.registry.specs("weighting")``:
  ``gradnorm``), plus the entry's named ``bench_variants`` (``gradnorm_libmtl``), which run
  only when named.

There is no list of method names here. ``single_task`` (:data:`SINGLE_TASK`) is a
:class:`~gradkit.bench.families.TaskBaseline`: on the MultiDigits tasks it trains one model per
task (same encoder, one head), the baseline of Δm%.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradkit.bench.errors import BenchConfigError, unknown_name
from gradkit.bench.families import AggregatorMethod, TaskBaseline, WeightingMethod
from gradkit.bench.methods import BenchMethod

__all__ = [
    "SINGLE_TASK",
    "SINGLE_TASK_METHOD",
    "aggregator_methods",
    "mtl_method",
    "resolve_mtl_methods",
    "weighting_methods",
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


def weighting_methods(
    suite: str | None = None, *, variants: bool = True
) -> dict[str, WeightingMethod]:
    """Every registered loss weighting as a bench method (name → method), in registration
    order, each followed by its ``bench_variants`` (unless ``variants=False``); with
    ``suite``, only the entries tagged for it.

    Example:
        >>> list(weighting_methods("mtl"))
        ['gradnorm', 'gradnorm_libmtl']
        >>> list(weighting_methods("mtl", variants=False))
        ['gradnorm']
    """
    from gradkit.registry import specs

    out: dict[str, WeightingMethod] = {}
    for spec in specs("weighting"):
        if suite is not None and suite not in getattr(spec, "bench_suites", ()):
            continue
        out[spec.name] = WeightingMethod.from_spec(spec)
        if variants:
            for name, config in getattr(spec, "bench_variants", {}).items():
                out[name] = WeightingMethod.from_spec(spec, name, config)
    return out


def _all_methods() -> dict[str, BenchMethod]:
    aggregators = aggregator_methods()
    weightings = weighting_methods()
    clash = sorted(set(aggregators) & set(weightings))
    if clash:
        raise BenchConfigError(
            f"name(s) {clash} are registered both as an aggregator and as a loss weighting; "
            "the mtl suite cannot tell which to run"
        )
    return {**aggregators, **weightings}


def mtl_method(name: str) -> BenchMethod:
    """The bench method for aggregator or loss weighting ``name`` (or :data:`SINGLE_TASK`).

    Raises:
        BenchConfigError: ``name`` is no registered aggregator or weighting (the message
            lists them), or a name is registered in both families.
    """
    key = name.strip().lower()
    if key == SINGLE_TASK:
        return SINGLE_TASK_METHOD
    methods = _all_methods()
    if key not in methods:
        raise unknown_name("method", name, [*methods, SINGLE_TASK])
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
