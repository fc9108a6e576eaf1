"""``gradkit list``: every registered family (optimizers, aggregators, compressors...), the
torch baselines and task baselines ``gradkit bench`` knows, and the bench suites."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

__all__ = [
    "MethodInfo",
    "MethodListing",
    "SuiteInfo",
    "add_parser",
    "gather_methods",
    "render_methods",
]


@dataclass(frozen=True)
class MethodInfo:
    """One line of ``gradkit list``.

    Attributes:
        name: the registry (and ``--optimizers``) name.
        source: ``"gradkit"``, ``"torch"``...
        cls: the implementing class, ``module.QualName`` (empty for non-class entries).
        summary: one-line description.
        paper: citation.
        suites: the ``gradkit bench`` suites that run it by default.
    """

    name: str
    source: str
    cls: str
    summary: str
    paper: str
    suites: tuple[str, ...] = ()


@dataclass(frozen=True)
class SuiteInfo:
    """A ``gradkit bench`` suite: its name, description, task names and default methods."""

    name: str
    description: str
    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodListing:
    """Everything ``gradkit list`` shows.

    Attributes:
        methods: the optimizer registry's entries, in registration order.
        baselines: the torch optimizers and task baselines ``gradkit bench`` also accepts.
        registry_error: why the registry could not be read (``None`` when it could).
        families: every other registry family (``"aggregator"``, ``"compressor"``...) → its
            entries, in registration order.
        suites: the ``gradkit bench`` suites.
    """

    methods: list[MethodInfo]
    baselines: list[MethodInfo] = field(default_factory=list)
    registry_error: str | None = None
    families: dict[str, list[MethodInfo]] = field(default_factory=dict)
    suites: list[SuiteInfo] = field(default_factory=list)


def _qualname(obj: object) -> str:
    if obj is None:
        return ""
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


def _info(method: object) -> MethodInfo:
    from gradkit.bench.methods import BenchMethod

    if not isinstance(method, BenchMethod):
        raise TypeError(f"expected a BenchMethod, got {type(method).__name__}")
    cls = getattr(method, "cls", None)
    return MethodInfo(method.name, method.source, _qualname(cls), method.summary, method.paper)


def _spec_info(spec: object) -> MethodInfo:
    cls = getattr(spec, "cls", None)
    module = getattr(cls, "__module__", "gradkit") or "gradkit"
    return MethodInfo(
        str(getattr(spec, "name", "")),
        module.split(".")[0],
        _qualname(cls),
        str(getattr(spec, "summary", "")),
        str(getattr(spec, "paper", "")),
        tuple(getattr(spec, "bench_suites", ())),
    )


def _suites() -> list[SuiteInfo]:
    from gradkit.bench.suites import get_suite, suite_names

    out = []
    for name in suite_names():
        try:
            suite = get_suite(name)
        except ImportError as exc:  # a suite whose optional dependency is missing
            out.append(SuiteInfo(name, f"unavailable: {exc}"))
            continue
        methods = tuple(suite.default_optimizers())
        out.append(SuiteInfo(name, suite.description, tuple(suite.tasks), methods))
    return out


def gather_methods() -> MethodListing:
    """Every registry family, the bench baselines and the suites (pure data, nothing printed)."""
    from gradkit.bench.methods import BASELINES, registry_methods
    from gradkit.bench.tasks.mtl_common import SINGLE_TASK_METHOD

    registry, error = registry_methods()
    families: dict[str, list[MethodInfo]] = {}
    tags: dict[str, tuple[str, ...]] = {}
    if error is None:
        from gradkit import registry as reg

        tags = {s.name: _spec_info(s).suites for s in reg.specs("optimizer")}
        for family in reg.families():
            if family != "optimizer":
                families[family] = [_spec_info(s) for s in reg.specs(family)]
    methods = [
        MethodInfo(**{**asdict(_info(m)), "suites": tags.get(m.name, ())})
        for m in registry.values()
    ]
    return MethodListing(
        methods=methods,
        baselines=[_info(m) for m in [*BASELINES.values(), SINGLE_TASK_METHOD]],
        registry_error=error,
        families=families,
        suites=_suites(),
    )


def _block(lines: list[str], title: str, entries: list[MethodInfo], width: int) -> None:
    lines.append(f"{title} ({len(entries)}):")
    for m in entries:
        suites = f"  [bench: {', '.join(m.suites)}]" if m.suites else ""
        lines.append(f"  {m.name:<{width}}  {m.summary}{suites}")
        if m.paper:
            lines.append(f"  {'':<{width}}  paper: {m.paper}")
    lines.append("")


def render_methods(listing: MethodListing) -> str:
    """Human-readable text: one block per family (each entry with its summary, paper and the
    bench suites that run it), the bench baselines, then the suites."""
    lines: list[str] = []
    if listing.registry_error:
        lines += [f"warning: {listing.registry_error}", ""]
    everything = [
        *listing.methods,
        *listing.baselines,
        *(m for ms in listing.families.values() for m in ms),
    ]
    width = max((len(m.name) for m in everything), default=0)
    _block(lines, "gradkit optimizers", listing.methods, width)
    for family, entries in listing.families.items():
        _block(lines, f"gradkit {family}s", entries, width)
    lines.append("bench baselines (usable in gradkit bench):")
    for m in listing.baselines:
        lines.append(f"  {m.name:<{width}}  {m.summary}")
    if listing.suites:
        lines += ["", "bench suites (gradkit bench --suite NAME):"]
        swidth = max(len(s.name) for s in listing.suites)
        for s in listing.suites:
            lines.append(f"  {s.name:<{swidth}}  {s.description}")
            if s.tasks:
                lines.append(f"  {'':<{swidth}}  tasks: {', '.join(s.tasks)}")
            if s.methods:
                lines.append(f"  {'':<{swidth}}  methods: {', '.join(s.methods)}")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    listing = gather_methods()
    if args.json:
        sys.stdout.write(json.dumps(asdict(listing), indent=1) + "\n")
    else:
        sys.stdout.write(render_methods(listing))
    return 1 if listing.registry_error else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``list`` subcommand."""
    p = sub.add_parser(
        "list",
        help="list every registered method family, the bench baselines and the suites",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_run)
