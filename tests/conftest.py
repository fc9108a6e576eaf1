"""Test-session policy.

* No test may be skipped because a dependency is missing: every extra is installed in CI, so
  such a skip means a broken install. The session fails if one happens.
* A skipped ``browser`` test (no Chromium to drive) gets a warning banner at the end of the
  summary, so that a run without the browser test of ``report.html`` cannot pass unnoticed.
* With ``GRADKIT_REQUIRE_INSTALLED=<repo>`` (set by ``scripts/test.sh``), the tests must import
  gradkit from the installed wheel, not from ``<repo>/src``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

# Tiny tensors gain nothing from threads, and parallel test jobs on 2 cores oversubscribe.
torch.set_num_threads(1)

_MISSING_DEP = re.compile(
    r"could not import|No module named|not installed|missing (dependency|module)", re.I
)
_dependency_skips: list[str] = []
_browser_skips: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    repo = os.environ.get("GRADKIT_REQUIRE_INSTALLED")
    if repo:
        import gradkit

        location = Path(gradkit.__file__).resolve()
        if Path(repo).resolve() / "src" in location.parents:
            raise pytest.UsageError(
                f"gradkit was imported from the source tree ({location}), not the installed wheel"
            )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and _MISSING_DEP.search(str(report.longrepr)):
        _dependency_skips.append(f"{report.nodeid}: {report.longrepr}")
    if report.skipped and "browser" in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        _browser_skips.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _browser_skips:
        terminalreporter.section("BROWSER TESTS SKIPPED", sep="!", red=True, bold=True)
        for line in _browser_skips:
            terminalreporter.line(line, red=True)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and _MISSING_DEP.search(str(report.longrepr)):
        _dependency_skips.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _dependency_skips:
        print("\nTests skipped for a missing dependency (not allowed):")
        for line in _dependency_skips:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
