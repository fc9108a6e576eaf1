"""Sophia is never run in the bench without its curvature refresh (issue 11 item 5).

Before: ``compare`` and ``gradkit bench --optimizers sophiag`` built SophiaG/SophiaH with no
refresh, so they ran as clipped sign-momentum under Sophia's name.
"""

from __future__ import annotations

import pytest
import torch

from gradkit.bench import compare
from gradkit.bench.errors import BenchConfigError
from gradkit.cli import main


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    return [(x, y)]


@pytest.mark.parametrize("name", ["sophiag", "sophiah"])
def test_compare_refuses_sophia_without_a_refresh(name):
    with pytest.raises(BenchConfigError, match=rf"{name} needs a curvature refresh"):
        compare(
            lambda: torch.nn.Linear(4, 3),
            _data(),
            torch.nn.functional.cross_entropy,
            [name, "adam"],
            steps=3,
            plots=False,
        )


def test_bench_refuses_sophia_on_a_task_without_refresh(capsys):
    code = main(["bench", "--smoke", "--no-progress", "--optimizers", "sophiag", "--tasks", "f1"])
    assert code != 0
    err = capsys.readouterr().err
    assert "sophiag needs a curvature refresh" in err
    assert "task 'f1' does not call a curvature refresh" in err


def test_other_methods_still_run_in_compare():
    results = compare(
        lambda: torch.nn.Linear(4, 3),
        _data(),
        torch.nn.functional.cross_entropy,
        ["adam"],
        steps=3,
        plots=False,
    )
    assert [r.method for r in results.records] == ["adam"]
