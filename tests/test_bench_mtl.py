"""The ``mtl`` bench suite: toy formulas, Pareto set, MultiDigits builder, smoke run, verdicts.

The aggregators of ``gradkit.mtl`` are replaced by small local stand-ins (mean, sum, the K=2
closed forms of PCGrad and MGDA) so that these tests check the suite, not the aggregators.
"""

from __future__ import annotations

import json
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gradkit.bench import BenchConfigError, BenchResults, get_suite, load_results, write_report
from gradkit.bench.families import AggregatorMethod
from gradkit.bench.results import Record, RunSettings, TaskInfo
from gradkit.bench.suites.mtl import (
    extreme_verdict,
    higher_verdict,
    mtl_verdicts,
    reach_verdict,
)
from gradkit.bench.tasks.mtl_common import aggregator_methods, mtl_method
from gradkit.bench.tasks.mtl_digits import _shift, build_multidigits, delta_m_pct
from gradkit.bench.tasks.mtl_toy import (
    TOY_SETTINGS,
    ToyTask,
    distance_to_pareto,
    pareto_set,
    toy_jacobian,
    toy_losses,
)
from gradkit.cli import main
from gradkit.registry import AggregatorSpec

# -- stand-ins for gradkit.mtl ------------------------------------------------------------------


class _Mean:
    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(0)


class _Sum:
    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.sum(0)


class _PCGrad:
    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        g1, g2 = jacobian[0], jacobian[1]
        c = g1 @ g2
        if c < 0:
            return g1 + g2 - c * (g2 / (g2 @ g2) + g1 / (g1 @ g1))
        return g1 + g2


class _MGDA:
    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        g1, g2 = jacobian[0], jacobian[1]
        den = (g1 - g2) @ (g1 - g2)
        gamma = 0.5 if den < 1e-20 else float(((g2 - g1) @ g2 / den).clamp(0, 1))
        return gamma * g1 + (1 - gamma) * g2


def _mtl_backward(losses, shared_params, aggregator, *, task_params=None):  # type: ignore[no-untyped-def]
    rows = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, shared_params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
        if task_params is not None:
            for p, g in zip(
                task_params[i],
                torch.autograd.grad(loss, task_params[i], retain_graph=True),
                strict=True,
            ):
                p.grad = g if p.grad is None else p.grad + g
    update = aggregator(torch.stack(rows))
    offset = 0
    for p in shared_params:
        p.grad = update[offset : offset + p.numel()].reshape(p.shape).clone()
        offset += p.numel()
    return update


def _standin_specs(**classes: type) -> dict[str, AggregatorSpec]:
    return {
        name: AggregatorSpec(name=name, cls=cls, paper="", summary=f"stand-in {name}")
        for name, cls in classes.items()
    }


@pytest.fixture
def standin_mtl(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A registry whose aggregator family holds stand-ins for Mean, Sum, PCGrad and MGDA only,
    and a fake ``gradkit.mtl`` with the stand-in ``mtl_backward``. The loss-weighting family
    keeps the real GradNorm (tested in ``tests/test_bench_mtl_weighting.py``)."""
    from gradkit import registry

    specs = _standin_specs(mean=_Mean, sum=_Sum, pcgrad=_PCGrad, mgda=_MGDA)
    monkeypatch.setitem(registry._REGISTRY, "aggregator", specs)
    module = types.ModuleType("gradkit.mtl")
    module.mtl_backward = _mtl_backward  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gradkit.mtl", module)
    yield module


# -- the toy ------------------------------------------------------------------------------------


def _hand_losses(x1: float, x2: float, scale: float) -> tuple[float, float]:
    """The spec's formulas, written again with math (no torch)."""
    lower = 5e-6
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), lower)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), lower)) + 6
    c1 = max(math.tanh(0.5 * x2), 0.0)
    c2 = max(math.tanh(-0.5 * x2), 0.0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return scale * (f1 * c1 + f1_sq * c2), f2 * c1 + f2_sq * c2


def test_toy_losses_at_hand_computed_points() -> None:
    # (0, −8): c1 = 0, c2 = tanh(4); f1_sq = 49/10 − 20 = −15.1 = f2_sq.
    l1, l2 = toy_losses(torch.tensor([0.0, -8.0], dtype=torch.float64))
    assert float(l1) == pytest.approx(-15.1 * math.tanh(4.0), rel=1e-12)
    assert float(l2) == pytest.approx(-15.1 * math.tanh(4.0), rel=1e-12)
    # (0, 0): c1 = c2 = 0, both losses vanish.
    l1, l2 = toy_losses(torch.zeros(2, dtype=torch.float64), scale=0.1)
    assert float(l1) == 0.0 and float(l2) == 0.0
    # (−7, 0+): |0.5·0 − tanh(−x2)| ≈ 0 → f1 = log(LOWER) + 6 in the limit.
    x2 = 1e-7
    l1, _ = toy_losses(torch.tensor([-7.0, x2], dtype=torch.float64))
    assert float(l1) == pytest.approx((math.log(5e-6) + 6) * math.tanh(0.5 * x2), rel=1e-9)
    # (7, 8): c1 = tanh(4), c2 = 0; f1 = log|−7 − tanh(−8)| + 6, f2 = log|−2 + tanh(−8) + 2| + 6.
    l1, l2 = toy_losses(torch.tensor([7.0, 8.0], dtype=torch.float64), scale=0.1)
    t = math.tanh(4.0)
    assert float(l1) == pytest.approx(0.1 * (math.log(7 - math.tanh(8)) + 6) * t, rel=1e-12)
    assert float(l2) == pytest.approx((math.log(math.tanh(8)) + 6) * t, rel=1e-12)
    for x1, x2, scale in [(-8.5, 7.5, 1.0), (9.0, -1.0, 0.1), (3.0, -5.0, 0.1), (-2.0, 2.0, 1.0)]:
        got = toy_losses(torch.tensor([x1, x2], dtype=torch.float64), scale)
        want = _hand_losses(x1, x2, scale)
        assert float(got[0]) == pytest.approx(want[0], rel=1e-12)
        assert float(got[1]) == pytest.approx(want[1], rel=1e-12)


def test_toy_jacobian_matches_autograd() -> None:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-10, 10, (64, 2)), [[0, 0], [-7, 0], [9, 9]]])
    theta = torch.tensor(points, requires_grad=True)
    for scale in (1.0, 0.1):
        l1, l2 = toy_losses(theta, scale)
        (g1,) = torch.autograd.grad(l1.sum(), theta, retain_graph=True)
        (g2,) = torch.autograd.grad(l2.sum(), theta)
        want = np.stack([g1.numpy(), g2.numpy()], axis=1)
        np.testing.assert_allclose(toy_jacobian(points, scale), want, rtol=1e-10, atol=1e-12)


def test_pareto_set_is_pareto_stationary() -> None:
    pts = pareto_set()
    assert pts[0, 0] == -7 and pts[-1, 0] == 7
    mid = pts[len(pts) // 2]
    assert mid[0] == 0 and mid[1] == pytest.approx(-8.3552, abs=2e-4)  # spec: (0, −8.3552)
    np.testing.assert_allclose(pts[:, 1], pts[::-1, 1])  # symmetric in x1
    # On the set the two gradients are anti-parallel (Pareto stationarity).
    for x in pts[::350]:
        if abs(x[0]) == 7:
            continue
        g = toy_jacobian(x, 1.0)
        cos = g[0] @ g[1] / np.linalg.norm(g[0]) / np.linalg.norm(g[1])
        assert cos == pytest.approx(-1.0, abs=1e-6)
    d = distance_to_pareto(np.array([[0.0, -8.3552], [0.0, 0.0], [10.0, pts[-1, 1]]]))
    assert d[0] < 1e-3 and d[1] == pytest.approx(-pts[len(pts) // 2, 1], abs=1e-6)
    assert d[2] == pytest.approx(3.0, abs=1e-9)


# -- MultiDigits --------------------------------------------------------------------------------


def test_multidigits_builder_pastes_the_labelled_digits() -> None:
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (20, 8, 8)).astype(np.float32)
    labels = np.arange(20) % 10
    pool = np.arange(20)
    data = build_multidigits(images, labels, pool, 50, np.random.default_rng(0), jitter=False)
    assert data.x.shape == (50, 1, 12, 12) and data.x.dtype == torch.float32
    assert data.y1.shape == data.y2.shape == (50,) and data.y1.dtype == torch.long
    for i in range(50):
        a, b = images[data.src_a[i]], images[data.src_b[i]]
        canvas = data.x[i, 0].numpy()
        assert int(data.y1[i]) == labels[data.src_a[i]]
        assert int(data.y2[i]) == labels[data.src_b[i]]
        np.testing.assert_array_equal(canvas[0:4, 0:8], a[0:4])  # a alone
        np.testing.assert_array_equal(canvas[8:12, 4:12], b[4:8])  # b alone
        np.testing.assert_array_equal(canvas[4:8, 4:8], np.maximum(a[4:8, 4:8], b[0:4, 0:4]))
        assert canvas[8:, :4].sum() == 0 and canvas[:4, 8:].sum() == 0
    jittered = build_multidigits(images, labels, pool, 50, np.random.default_rng(0))
    assert set(np.unique(jittered.shift_a)) <= {-1, 0, 1}
    i = 0
    a = _shift(images[jittered.src_a[i]], *jittered.shift_a[i])
    np.testing.assert_array_equal(jittered.x[i, 0, 0:4, 0:8].numpy(), a[0:4])


def test_shift_and_delta_m() -> None:
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    s = _shift(img, 1, -1)
    assert s[0].sum() == 0 and s[:, 7].sum() == 0 and s[1, 0] == img[0, 1]
    assert delta_m_pct((0.9, 0.8), (0.9, 0.8)) == 0.0
    assert delta_m_pct((0.99, 0.72), (0.9, 0.8)) == pytest.approx(0.0)
    assert delta_m_pct((0.99, 0.8), (0.9, 0.8)) == pytest.approx(5.0)


# -- the suite ----------------------------------------------------------------------------------


def test_methods_come_from_the_aggregator_registry(standin_mtl: types.ModuleType) -> None:
    assert list(aggregator_methods()) == ["mean", "sum", "pcgrad", "mgda"]
    suite = get_suite("mtl")
    # the loss weightings (the real registry's GradNorm) follow the aggregators
    assert suite.default_optimizers() == [
        "single_task",
        "mean",
        "sum",
        "pcgrad",
        "mgda",
        "gradnorm",
    ]
    assert mtl_method(" Single_Task ").kind == "baseline"
    methods = suite.resolve_methods("single_task,pcgrad")
    assert [m.kind for m in methods] == ["baseline", "aggregator"]
    assert isinstance(methods[1], AggregatorMethod) and methods[1].cls is _PCGrad
    with pytest.raises(BenchConfigError, match="unknown method 'cagrad'"):
        suite.run(optimizers="mean,cagrad", smoke=True)
    with pytest.raises(BenchConfigError, match=r"unknown method 'nope'.*mgda.*gradnorm"):
        suite.run(optimizers="nope", smoke=True)
    with pytest.raises(BenchConfigError, match="selected twice"):
        suite.run(optimizers="mean,MEAN", smoke=True)


def test_registering_an_aggregator_adds_it_to_the_suite(
    standin_mtl: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One registry entry is all a new aggregator needs; ``bench_suites`` opts it out."""
    from dataclasses import replace

    from gradkit import registry

    specs = dict(registry._REGISTRY["aggregator"])
    specs["newagg"] = AggregatorSpec(name="newagg", cls=_Sum, paper="", summary="new")
    specs["other"] = replace(specs["newagg"], name="other", bench_suites=("elsewhere",))
    monkeypatch.setitem(registry._REGISTRY, "aggregator", specs)
    assert get_suite("mtl").default_optimizers()[-2:] == ["newagg", "gradnorm"]
    res = get_suite("mtl").run(smoke=True, optimizers="newagg", tasks="toy_nash")
    assert [(r.method, r.status) for r in res.records] == [("newagg", "ok")]
    assert "other" in aggregator_methods() and "other" not in aggregator_methods("mtl")


def _smoke(tmp_path: Path | None = None) -> BenchResults:
    return get_suite("mtl").run(smoke=True, optimizers="single_task,mean,pcgrad,mgda")


def test_smoke_run_writes_report_with_plots(standin_mtl: types.ModuleType, tmp_path: Path) -> None:
    results = _smoke()
    out = write_report(results, tmp_path / "report")
    files = sorted(p.name for p in out.iterdir())
    assert "report.md" in files and "results.json" in files
    for task in ("toy_cagrad", "toy_nash", "multidigits", "multidigits_imb100"):
        png = out / f"curves_{task}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["suite"] == "mtl"
    loaded = load_results(out)
    by = {(r.task, r.method): r for r in loaded.records}
    assert ("toy_cagrad", "single_task") not in by  # the baseline is MultiDigits-only
    assert {r.status for r in loaded.records} == {"ok"}
    for task in ("toy_cagrad", "toy_nash"):
        r = by[task, "mean"]
        n = len(TOY_SETTINGS[task].starts)
        assert r.metrics["pareto_distance"] == pytest.approx(
            max(r.metrics[f"dist_s{i}"] for i in range(n))
        )
        assert len(r.curve) == r.steps + 1 and r.final_loss == r.metrics["pareto_distance"]
    for task in ("multidigits", "multidigits_imb100"):
        for m in ("single_task", "mean", "pcgrad", "mgda"):
            r = by[task, m]
            for key in ("acc_task1", "acc_task2", "delta_m_pct"):
                assert r.metrics[key] is not None, (task, m, key)
            assert 0 <= r.metrics["acc_task1"] <= 1 and r.accuracy is not None
        assert by[task, "single_task"].metrics["delta_m_pct"] == 0.0
    report = (out / "report.md").read_text()
    assert "SAM-GS" in report and "not measured" in report and "method samgs" in report
    assert len(loaded.verdicts) == len(results.verdicts) >= 10
    # the toy trajectories are stored with the records, so the plot re-renders from JSON
    traj = np.asarray(by["toy_nash", "mean"].artifacts["trajectory"])
    assert traj.shape[1:] == (len(TOY_SETTINGS["toy_nash"].starts), 2) and traj.shape[0] >= 2
    assert traj[-1, 0, 0] == by["toy_nash", "mean"].metrics["x1_s0"]
    again = write_report(loaded, tmp_path / "again")
    assert (again / "report.md").read_text() == report
    for task in ("toy_cagrad", "toy_nash"):
        png = f"curves_{task}.png"
        assert (again / png).read_bytes() == (out / png).read_bytes()


def test_cli_smoke(
    standin_mtl: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    code = main(["bench", "--suite", "mtl", "--smoke", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "[inconclusive] SAM-GS reaches" in printed and str(out) in printed
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["optimizers"] == [
        "single_task",
        *("mean", "sum", "pcgrad", "mgda", "gradnorm"),
    ]
    assert (out / "curves_toy_cagrad.png").is_file()
    assert main(["bench", "--suite", "mtl", "--smoke", "--optimizers", "gcond"]) == 2
    assert "unknown method 'gcond'" in capsys.readouterr().err


def test_diverging_aggregator_is_reported(standin_mtl: types.ModuleType) -> None:
    class _Nan:
        def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
            return jacobian.sum(0) * math.nan

    method = AggregatorMethod("mean", _Nan)
    outcome, _ = ToyTask(TOY_SETTINGS["toy_nash"]).run(method, 0, 5, True)
    assert outcome.status == "diverged" and outcome.metrics["reached"] == 0
    assert outcome.final_loss is not None and math.isnan(outcome.final_loss)
    assert math.isnan(outcome.metrics["dist_s0"] or 0.0)


def test_seeded_smoke_run_is_deterministic(standin_mtl: types.ModuleType) -> None:
    a = get_suite("mtl").run(smoke=True, optimizers="mean,mgda", tasks="toy_nash,multidigits")
    b = get_suite("mtl").run(smoke=True, optimizers="mean,mgda", tasks="toy_nash,multidigits")
    assert a.numbers() == b.numbers()
    assert [v.to_dict() for v in a.verdicts] == [v.to_dict() for v in b.verdicts]


# -- verdicts -----------------------------------------------------------------------------------


def test_reach_verdict_flips() -> None:
    good, bad = [0.01, 0.02, 0.0], [0.01, 5.0, 9.0]
    assert reach_verdict("c", "p", "t", "cagrad", good, "mean", bad).verdict == "holds"
    assert reach_verdict("c", "p", "t", "cagrad", bad, "mean", good).verdict == "does not hold"
    assert reach_verdict("c", "p", "t", "cagrad", good, "mean", good).verdict == "does not hold"
    # a diverged start does not reach the set; a diverged baseline decides nothing
    assert reach_verdict("c", "p", "t", "cagrad", [None, 0, 0], "mean", bad).verdict == (
        "does not hold"
    )
    assert reach_verdict("c", "p", "t", "cagrad", good, "mean", [None, 0, 0]).verdict == (
        "inconclusive"
    )


def test_extreme_and_higher_verdicts_flip() -> None:
    d = [0.0] * 5
    assert extreme_verdict("c", "p", "t", "mgda", d, [6, -7, 6.5, 0, 7]).verdict == "holds"
    assert extreme_verdict("c", "p", "t", "mgda", d, [0, 1, -1, 0, 7]).verdict == "does not hold"
    failed = [None, 0.0, 0.0, 0.0, 0.0]
    x1 = [None, -7, 6.5, 6, 7]
    assert extreme_verdict("c", "p", "t", "mgda", failed, x1).verdict == "does not hold"
    hi, lo = [0.9, 0.91, 0.92], [0.5, 0.52, 0.51]
    kw = {"quantity": "acc", "atol": 0.005}
    assert higher_verdict("c", "p", "a", hi, "b", lo, **kw).verdict == "holds"  # type: ignore[arg-type]
    assert higher_verdict("c", "p", "a", lo, "b", hi, **kw).verdict == "does not hold"  # type: ignore[arg-type]
    assert higher_verdict("c", "p", "a", hi, "b", hi, **kw).verdict == (  # type: ignore[arg-type]
        "no significant difference"
    )


def _fake_results(numbers: dict[tuple[str, str], list[dict[str, float]]]) -> BenchResults:
    """Results with the given metrics per (task, method) (one dict per seed)."""
    records = []
    for (task, method), per_seed in numbers.items():
        for seed, metrics in enumerate(per_seed):
            records.append(Record("mtl", task, method, seed, 0.0, (0.0,), 0.0, 1, metrics=metrics))
    tasks = tuple(dict.fromkeys(t for t, _ in numbers))
    methods = tuple(dict.fromkeys(m for _, m in numbers))
    return BenchResults(
        RunSettings("mtl", methods, tasks, (0, 1, 2)),
        {},
        {t: TaskInfo(t) for t in tasks},
        records,
    )


def _toy_metrics(dists: list[float], x1: list[float]) -> dict[str, float]:
    out = {f"dist_s{i}": d for i, d in enumerate(dists)}
    out.update({f"x1_s{i}": v for i, v in enumerate(x1)})
    return out


def test_suite_verdicts_flip_with_opposite_numbers(standin_mtl: types.ModuleType) -> None:
    def md(acc2: list[float], dm: list[float]) -> list[dict[str, float]]:
        return [{"acc_task2": a, "delta_m_pct": d} for a, d in zip(acc2, dm, strict=True)]

    good3, bad3 = [0.0, 0.01, 0.02], [0.0, 8.0, 9.0]
    good5, bad5 = [0.0] * 5, [0.0, 3.0, 4.0, 0.0, 0.0]
    high, low = [0.95, 0.96, 0.955], [0.80, 0.82, 0.81]

    def build(flip: bool) -> BenchResults:
        a, b = (bad3, good3) if flip else (good3, bad3)
        a5, b5 = (bad5, good5) if flip else (good5, bad5)
        hi, lo = (low, high) if flip else (high, low)
        ext = [0, 1, 0, -1, 2] if flip else [6, 7, 6.5, -5, 7]
        nums: dict[tuple[str, str], list[dict[str, float]]] = {
            ("toy_cagrad", "cagrad"): [_toy_metrics(a, [0, 0, 0])],
            ("toy_cagrad", "mean"): [_toy_metrics(b, [0, 0, 0])],
            ("toy_nash", "samgs"): [_toy_metrics(a5, [0] * 5)],
            ("toy_nash", "cagrad"): [_toy_metrics(a5, [0] * 5)],
            ("toy_nash", "mean"): [_toy_metrics(b5, [0] * 5)],
            ("toy_nash", "mgda"): [_toy_metrics(bad5 if flip else good5, ext)],
        }
        for m in ("pcgrad", "cagrad", "mgda", "gradnorm"):
            nums["multidigits", m] = md(high, [3.0, 3.1, 3.2] if not flip else [-3, -3.1, -3.2])
        nums["multidigits", "mean"] = md(hi, [0.0, 0.1, -0.1])
        nums["multidigits_imb100", "mean"] = md(lo, [-5, -5, -5])
        for m in ("samgs", "mgda", "gcond", "gradnorm"):
            nums["multidigits_imb100", m] = md(hi, [0.0, 0.0, 0.0])
        nums["multidigits_imb100", "pcgrad"] = md(lo, [-5, -5, -5])
        if flip:
            nums["multidigits_imb100", "pcgrad"] = md(high, [0, 0, 0])
            nums["multidigits_imb100", "mean"] = md([0.9, 0.91, 0.92], [-5, -5, -5])
            for m in ("samgs", "mgda", "gcond", "gradnorm"):
                nums["multidigits_imb100", m] = md([0.5, 0.51, 0.52], [0, 0, 0])
        return _fake_results(nums)

    holds = [v.verdict for v in mtl_verdicts(build(False))]
    flipped = [v.verdict for v in mtl_verdicts(build(True))]
    # PCGrad "no better than Mean" is an equivalence claim: equal numbers give overlapping
    # intervals, "no significant difference"; every other claim holds
    assert holds == ["holds"] * 12 + ["no significant difference", "holds"], holds
    assert flipped == ["does not hold"] * len(flipped), flipped


def test_verdicts_name_missing_methods(standin_mtl: types.ModuleType) -> None:
    results = _fake_results({("toy_nash", "mean"): [_toy_metrics([0.0] * 5, [0.0] * 5)]})
    verdicts = mtl_verdicts(results)
    samgs = next(v for v in verdicts if v.claim.startswith("SAM-GS reaches"))
    assert samgs.verdict == "inconclusive"
    assert "not measured: this run did not include method samgs" in samgs.evidence


def test_accumulate_step_aggregators_are_driven_once_per_step(
    standin_mtl: types.ModuleType,
) -> None:
    calls: list[str] = []

    class _Conductor:
        def __init__(self, momentum_beta: float = 0.85) -> None:
            self.jac: torch.Tensor | None = None

        def accumulate(self, jacobian: torch.Tensor) -> None:
            calls.append("accumulate")
            self.jac = jacobian

        def step(self) -> torch.Tensor:
            calls.append("step")
            assert self.jac is not None
            return self.jac.sum(0)

    method = AggregatorMethod("gcond", _Conductor)
    outcome, used = ToyTask(TOY_SETTINGS["toy_cagrad"]).run(method, 0, 4, True)
    assert outcome.status == "ok" and calls == ["accumulate", "step"] * 3 * 4
    assert used == {"lr": 3e-3}
