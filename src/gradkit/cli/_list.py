"""``gradkit list``: the registered methods (and the torch baselines ``gradkit bench`` knows)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

__all__ = ["MethodInfo", "MethodListing", "add_parser", "gather_methods", "render_methods"]


@dataclass(frozen=True)
class MethodInfo:
    """One line of ``gradkit list``."""

    name: str
    source: str
    cls: str
    summary: str
    paper: str


@dataclass(frozen=True)
class MethodListing:
    """Everything ``gradkit list`` shows.

    Attributes:
        methods: gradkit registry entries, in registration order.
        baselines: the torch optimizers ``gradkit bench`` also accepts.
        registry_error: why the registry could not be read (``None`` when it could).
    """

    methods: list[MethodInfo]
    baselines: list[MethodInfo] = field(default_factory=list)
    registry_error: str | None = None


def _info(method: object) -> MethodInfo:
    from gradkit.bench.methods import Method

    if not isinstance(method, Method):
        raise TypeError(f"expected a Method, got {type(method).__name__}")
    cls = f"{method.cls.__module__}.{method.cls.__qualname__}"
    return MethodInfo(method.name, method.source, cls, method.summary, method.paper)


def gather_methods() -> MethodListing:
    """The registry's methods and the torch baselines (pure data, nothing printed)."""
    from gradkit.bench.methods import BASELINES, registry_methods

    registry, error = registry_methods()
    return MethodListing(
        methods=[_info(m) for m in registry.values()],
        baselines=[_info(m) for m in BASELINES.values()],
        registry_error=error,
    )


def render_methods(listing: MethodListing) -> str:
    """Human-readable text: one block per method with its summary and paper."""
    lines: list[str] = []
    if listing.registry_error:
        lines += [f"warning: {listing.registry_error}", ""]
    lines.append(f"gradkit methods ({len(listing.methods)}):")
    width = max((len(m.name) for m in [*listing.methods, *listing.baselines]), default=0)
    for m in listing.methods:
        lines.append(f"  {m.name:<{width}}  {m.summary}")
        lines.append(f"  {'':<{width}}  paper: {m.paper}")
    lines += ["", "torch baselines (usable in gradkit bench):"]
    for m in listing.baselines:
        lines.append(f"  {m.name:<{width}}  {m.summary}")
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
    p = sub.add_parser("list", help="list the registered methods with their papers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_run)
