"""Loss weightings (GradNorm) in the ``mtl`` bench suite: resolution, smoke runs on every task,
the weights' invariants read back from the records, and that the weighting is really applied.

These tests use the real :class:`gradkit.mtl.GradNorm` and :class:`gradkit.mtl.Sum` (the
comparisons need the real plain sum), on the suite's smoke data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from gradkit.bench import BenchConfigError, get_suite, load_results, write_report
from gradkit.bench.families import AggregatorMethod, WeightingMethod
from gradkit.bench.results import Record
from gradkit.bench.tasks.mtl_common import mtl_method, weighting_methods
from gradkit.bench.tasks.mtl_digits import MultiDigitsTask
from gradkit.bench.tasks.mtl_toy import LOSS_FLOOR, TOY_SETTINGS, ToyTask, toy_losses
from gradkit.mtl import GradNorm, Sum

TASKS = ("toy_cagrad", "toy_nash", "multidigits", "multidigits_imb100")


def _gradnorm(name: str = "gradnorm", **config: object) -> WeightingMethod:
    method = mtl_method(name)
    assert isinstance(method, WeightingMethod)
    return dataclasses.replace(method, config={**method.config, **config})


SUM = AggregatorMethod("sum", Sum)


def _weights(record: Record) -> np.ndarray:
    """The weights used per step, ``[steps][T]`` (toy: ``[points][starts][T]``)."""
    return np.asarray(record.artifacts["weights"], dtype=float)


# -- resolution ---------------------------------------------------------------------------------


def test_gradnorm_resolves_by_name_and_runs_by_default() -> None:
    suite = get_suite("mtl")
    defaults = suite.default_optimizers()
    assert "gradnorm" in defaults and "gradnorm_libmtl" not in defaults  # the variant: by name
    methods = suite.resolve_methods("GradNorm, gradnorm_libmtl, mean")
    assert [m.kind for m in methods] == ["weighting", "weighting", "aggregator"]
    paper, libmtl = methods[0], methods[1]
    assert isinstance(paper, WeightingMethod) and isinstance(libmtl, WeightingMethod)
    assert paper.cls is GradNorm and libmtl.cls is GradNorm
    assert paper.config == {} and libmtl.config == {"variant": "libmtl"}
    assert list(weighting_methods("mtl")) == ["gradnorm", "gradnorm_libmtl"]
    with pytest.raises(BenchConfigError, match=r"unknown method 'gradnrom'.*gradnorm_libmtl"):
        suite.resolve_methods("gradnrom")
    with pytest.raises(BenchConfigError, match="selected twice"):
        suite.resolve_methods("gradnorm,GRADNORM")
    weighting, used = libmtl.build_weighting(2, {"lr": 1e-3, "variant": "paper", "c": 0.4})
    assert weighting.variant == "libmtl" and weighting.lr == 1e-3  # config wins; c dropped
    assert used == {  # what the record shows: every option, defaults included
        "alpha": 1.5,
        "lr": 1e-3,
        "optimizer": "adam",
        "variant": "libmtl",
        "min_weight": 1e-6,
    }


def test_a_name_in_both_families_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradkit import registry
    from gradkit.registry import AggregatorSpec

    specs = dict(registry._REGISTRY["aggregator"])
    specs["gradnorm"] = AggregatorSpec(name="gradnorm", cls=Sum, paper="", summary="clash")
    monkeypatch.setitem(registry._REGISTRY, "aggregator", specs)
    with pytest.raises(BenchConfigError, match=r"\['gradnorm'\].*both"):
        mtl_method("gradnorm")


# -- smoke runs on every task -------------------------------------------------------------------


def test_gradnorm_smoke_runs_on_every_task(tmp_path: Path) -> None:
    results = get_suite("mtl").run(smoke=True, optimizers="gradnorm,gradnorm_libmtl")
    by = {(r.task, r.method): r for r in results.records}
    assert set(by) == {(t, m) for t in TASKS for m in ("gradnorm", "gradnorm_libmtl")}
    assert {r.status for r in results.records} == {"ok"}
    for task in ("toy_cagrad", "toy_nash"):
        n = len(TOY_SETTINGS[task].starts)
        rec = by[task, "gradnorm"]
        w = _weights(rec)  # [points][starts][2]
        assert w.shape[1:] == (n, 2)
        np.testing.assert_allclose(w.sum(-1), 2.0, rtol=0, atol=1e-12)  # Σw = T at every step
        assert np.abs(w[-1] - 1).max() > 0.1  # the weights moved
        for i in range(n):
            assert rec.metrics[f"w1_s{i}"] + rec.metrics[f"w2_s{i}"] == pytest.approx(2, abs=1e-12)
        assert rec.hyperparams["lr"] == 3e-3 and rec.hyperparams["weighting.alpha"] == 1.5
        assert rec.hyperparams["weighting.lr"] == 0.025  # GradNorm's default weight lr
        # LibMTL's variant: one step is one epoch, so step 0 is the plain sum
        w = _weights(by[task, "gradnorm_libmtl"])
        np.testing.assert_array_equal(w[0], 1.0)
        np.testing.assert_allclose(w.sum(-1), 2.0, rtol=0, atol=1e-12)
        assert np.abs(w[-1] - 1).max() > 1e-3
        assert by[task, "gradnorm_libmtl"].hyperparams["weighting.lr"] == 3e-3
    for task in ("multidigits", "multidigits_imb100"):
        rec = by[task, "gradnorm"]
        w = _weights(rec)
        assert w.shape == (rec.steps, 2)
        np.testing.assert_array_equal(w[0], 1.0)  # w(0) = 1
        np.testing.assert_allclose(w.sum(-1), 2.0, rtol=0, atol=1e-12)
        assert np.abs(w[1:] - 1).min() > 0  # every later step uses moved weights
        assert rec.metrics["w_task1"] + rec.metrics["w_task2"] == pytest.approx(2, abs=1e-12)
        for key in ("acc_task1", "acc_task2", "delta_m_pct"):
            assert rec.metrics[key] is not None
        # smoke: 4 steps = one epoch of 4 batches, all of it LibMTL's epoch 0 (plain sum)
        np.testing.assert_array_equal(_weights(by[task, "gradnorm_libmtl"]), 1.0)
    # GradNorm is in the report's tables and verdicts, and the weights survive results.json
    out = write_report(results, tmp_path / "report")
    report = (out / "report.md").read_text()
    assert "| gradnorm |" in report and "| gradnorm_libmtl |" in report
    claims = [v.claim for v in results.verdicts if "GradNorm" in v.claim]
    assert len(claims) == 2
    loaded = {(r.task, r.method): r for r in load_results(out).records}
    np.testing.assert_array_equal(
        _weights(loaded["toy_nash", "gradnorm"]), _weights(by["toy_nash", "gradnorm"])
    )


def test_libmtl_epochs_follow_the_batch_order_on_multidigits() -> None:
    """Past the smoke epoch of 4 batches, LibMTL's GradNorm starts moving the weights."""
    torch.manual_seed(0)
    outcome, used = MultiDigitsTask("multidigits", 1.0).run(
        _gradnorm("gradnorm_libmtl"), 0, 9, True
    )
    w = np.asarray(outcome.artifacts["weights"])
    np.testing.assert_array_equal(w[:5], 1.0)  # epoch 0 (steps 0-3); step 4's update is after
    assert np.abs(w[5:] - 1).min() > 0
    np.testing.assert_allclose(w.sum(-1), 2.0, rtol=0, atol=1e-12)
    assert used["weighting.variant"] == "libmtl" and used["weighting.lr"] == 1e-3


def test_toy_losses_shifted_by_the_floor_are_positive() -> None:
    """GradNorm's ratio needs losses >= 0: L_i - LOSS_FLOOR·scale_i > 0 on the whole plane."""
    rng = np.random.default_rng(0)
    pts = np.concatenate(
        [rng.uniform(-30, 30, (20000, 2)), [[7, -8], [-7, -8], [7, -8.4345], [0, -8.3551]]]
    )
    for scale in (1.0, 0.1):
        with torch.no_grad():
            l1, l2 = toy_losses(torch.tensor(pts), scale)
        assert float(l1.min()) > LOSS_FLOOR * scale and float(l2.min()) > LOSS_FLOOR
        assert float(l2.min()) < LOSS_FLOOR + 1  # the floor is tight, not arbitrary


# -- the weighting is applied -------------------------------------------------------------------


@pytest.mark.parametrize("task", ["toy_cagrad", "toy_nash"])
def test_toy_weighting_is_applied(task: str) -> None:
    """Weights frozen at 1 (a weight lr of 1e-300) give Sum's run exactly; the real rate not."""
    toy = ToyTask(TOY_SETTINGS[task])
    steps = 60
    ref, _ = toy.run(SUM, 0, steps, True)
    frozen, _ = toy.run(_gradnorm(lr=1e-300), 0, steps, True)
    real, _ = toy.run(_gradnorm(), 0, steps, True)
    np.testing.assert_array_equal(np.asarray(frozen.artifacts["weights"]), 1.0)
    assert frozen.artifacts["trajectory"] == ref.artifacts["trajectory"]
    assert frozen.curve == ref.curve
    diff = np.abs(
        np.asarray(real.artifacts["trajectory"]) - np.asarray(ref.artifacts["trajectory"])
    )
    assert diff.max() > 1e-3


@pytest.mark.parametrize("task", ["multidigits", "multidigits_imb100"])
def test_multidigits_weighting_is_applied(task: str) -> None:
    """On MultiDigits, weights frozen at 1 reproduce Sum's run (bit for bit here: ``1·L1 + 1·L2``
    back-propagated at once and ``mtl_backward``'s per-task sum agree); the real rate not."""
    md = MultiDigitsTask(task, 100.0 if task.endswith("imb100") else 1.0)
    runs = {}
    for label, method in (("sum", SUM), ("frozen", _gradnorm(lr=1e-300)), ("real", _gradnorm())):
        torch.manual_seed(0)
        runs[label] = md.run(method, 0, 8, True)[0]
    ref, frozen, real = runs["sum"], runs["frozen"], runs["real"]
    np.testing.assert_array_equal(np.asarray(frozen.artifacts["weights"]), 1.0)
    np.testing.assert_allclose(frozen.curve, ref.curve, rtol=1e-6)
    for key in ("loss_task1", "loss_task2"):
        assert frozen.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-5)
    # the real weights move by a few % in 8 steps: the losses after step 1 follow them
    assert np.abs(np.asarray(real.curve[2:]) - np.asarray(ref.curve[2:])).max() > 5e-4
    assert all(real.metrics[k] != ref.metrics[k] for k in ("loss_task1", "loss_task2"))
