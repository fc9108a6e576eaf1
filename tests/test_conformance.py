"""The shared conformance suite, run on every registered optimizer.

One test per (optimizer, check), generated from the registry: adding an optimizer to the
registry adds it here with no other change.
"""

from __future__ import annotations

import pytest

from gradkit.registry import get_optimizer, optimizer_names
from gradkit.testing import conformance_checks

CASES = [
    pytest.param(
        name,
        check_name,
        id=f"{name}-{check_name}",
        marks=[pytest.mark.compile] if check_name.startswith("fused") else [],
    )
    for name in optimizer_names()
    for check_name, _ in conformance_checks(get_optimizer(name))
]


@pytest.mark.parametrize(("name", "check_name"), CASES)
def test_conformance(name: str, check_name: str) -> None:
    checks = dict(conformance_checks(get_optimizer(name)))
    checks[check_name]()
