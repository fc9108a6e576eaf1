"""Registry of benchmark suites.

A suite lives in its own module that defines ``SUITE = Suite(...)`` (see
:class:`gradkit.bench.suites.base.Suite`). Adding one is one line in ``_SUITE_MODULES``::

    "lm": "gradkit.bench.suites.lm",

Modules are imported only when their suite is requested, so a suite's heavy dependencies do
not slow down the others. Code outside gradkit can add suites at run time with
:func:`register_suite`.
"""

from __future__ import annotations

import importlib

from gradkit.bench.errors import unknown_name
from gradkit.bench.suites.base import Suite

__all__ = ["Suite", "get_suite", "register_suite", "suite_names"]

#: Suite name → module that defines ``SUITE``. One line per suite.
_SUITE_MODULES: dict[str, str] = {
    "default": "gradkit.bench.suites.default",
    "mtl": "gradkit.bench.suites.mtl",
    "lm": "gradkit.bench.suites.lm",
    "fed": "gradkit.bench.suites.fed",
}

#: Suites registered at run time with :func:`register_suite`.
_EXTRA_SUITES: dict[str, Suite] = {}


def suite_names() -> list[str]:
    """Names of all known suites (built-in first)."""
    return [*_SUITE_MODULES, *(n for n in _EXTRA_SUITES if n not in _SUITE_MODULES)]


def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        BenchConfigError: unknown name (the message lists the valid ones).
        TypeError: the suite module does not define a ``SUITE`` of type :class:`Suite`.
    """
    if name in _EXTRA_SUITES:
        return _EXTRA_SUITES[name]
    if name not in _SUITE_MODULES:
        raise unknown_name("suite", name, suite_names())
    module = importlib.import_module(_SUITE_MODULES[name])
    suite = getattr(module, "SUITE", None)
    if not isinstance(suite, Suite):
        raise TypeError(f"module {module.__name__} must define SUITE = Suite(...)")
    return suite


def register_suite(suite: Suite) -> Suite:
    """Make ``suite`` available under ``suite.name``; raises ``ValueError`` on a clash."""
    if not isinstance(suite, Suite):
        raise TypeError(f"register_suite expects a Suite, got {type(suite).__name__}")
    if suite.name in _SUITE_MODULES or suite.name in _EXTRA_SUITES:
        raise ValueError(f"suite {suite.name!r} is already registered")
    _EXTRA_SUITES[suite.name] = suite
    return suite
