"""The README's code examples are safe to copy (checked on what they claim)."""

from __future__ import annotations

import pathlib
import re

import torch

from gradkit.mtl import SAMGS

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _equal_norm_tasks(seed: int) -> torch.Tensor:
    g = torch.randn(2, 100, generator=torch.Generator().manual_seed(seed)) * 0.1
    g[1] = g[1] / g[1].norm() * g[0].norm()
    return g


def test_readme_samgs_example_clips_the_update():
    text = README.read_text(encoding="utf-8")
    calls = re.findall(r"SAMGS\([^)]*\)", text)
    assert calls, "the README shows SAMGS"
    assert all("max_norm=1.0" in call for call in calls), calls
    aggregator = SAMGS(gamma=0.1, max_norm=1.0)
    for seed in range(4):
        assert float(aggregator(_equal_norm_tasks(seed)).norm()) <= 1.0 + 1e-6


def test_why_the_readme_clips_samgs():
    # the README's explanation: without clipping, equal task-gradient norms (Ψ ≈ 1) give an
    # update of hundreds of times the mean gradient
    aggregator = SAMGS(gamma=0.1)
    ratios = []
    for seed in range(4):
        g = _equal_norm_tasks(seed)
        ratios.append(float(aggregator(g).norm() / g.mean(0).norm()))
    assert min(ratios) > 100, ratios
