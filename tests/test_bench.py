"""The benchmark engine: methods, tasks, runner, results, report writer and ``compare``."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import gradkit.bench as bench
from gradkit.bench import BenchConfigError, BenchResults, compare, load_results, run_suite
from gradkit.bench.methods import Method, resolve_method, resolve_methods
from gradkit.bench.results import Record
from gradkit.bench.runner import normalize_seeds, run_tasks, subsample
from gradkit.bench.runtime import resolve_threads
from gradkit.bench.suites import Suite, get_suite, register_suite, suite_names
from gradkit.bench.tasks.functions1d import FUNCTIONS, FunctionTask
from gradkit.bench.tasks.rosenbrock import RosenbrockTask

# -- methods ----------------------------------------------------------------------------------


def test_baselines_and_registry_resolve() -> None:
    sgd = resolve_method("SGD")
    assert sgd.cls is torch.optim.SGD and sgd.fixed == {"momentum": 0.9}
    assert resolve_method("adamw").cls is torch.optim.AdamW
    for name in ("diffgrad", "adabelief", "adamp", "sgdp"):
        method = resolve_method(name)
        assert method.source == "gradkit"
        assert method.cls.__module__.startswith("gradkit.")


def test_hyperparams_go_only_where_accepted() -> None:
    requested = {"lr": 0.1, "betas": (0.95, 0.999), "momentum": 0.5, "weight_decay": 0.0}
    assert resolve_method("adam").hyperparams(requested) == {
        "lr": 0.1,
        "betas": (0.95, 0.999),
        "weight_decay": 0.0,
    }
    # sgd's momentum is part of the method and overrides the request
    assert resolve_method("sgd").hyperparams(requested) == {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
    }
    sgdp = resolve_method("sgdp").hyperparams(requested)
    assert "betas" not in sgdp and sgdp["momentum"] == 0.5
    assert resolve_method("sgdp").family == "momentum"
    assert resolve_method("diffgrad").family == "adaptive"
    with pytest.raises(ValueError, match="'lr'"):
        resolve_method("adam").hyperparams({})


def test_unknown_and_duplicate_methods() -> None:
    with pytest.raises(BenchConfigError, match=r"unknown optimizer 'nope'; valid .*sgd.*diffgrad"):
        resolve_method("nope")
    with pytest.raises(BenchConfigError, match="twice"):
        resolve_methods(["adam", "ADAM"])
    with pytest.raises(BenchConfigError, match="no optimizers"):
        resolve_methods([])
    with pytest.raises(TypeError):
        resolve_method(3)  # type: ignore[arg-type]


# -- tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["f1", "f2", "f3"])
def test_1d_functions_are_continuous_antiderivatives(key: str) -> None:
    fn = FUNCTIONS[key]
    h = 1e-6
    for i in range(-150, 151):
        x = i / 100 + 0.00377  # stay off the kinks
        numeric = (fn.value(x + h) - fn.value(x - h)) / (2 * h)
        assert numeric == pytest.approx(fn.grad(x), abs=1e-4), x
    for kink in (-0.9, -0.5, -0.4, 0.0, 0.4, 0.5):  # no jumps anywhere
        assert abs(fn.value(kink + 1e-9) - fn.value(kink - 1e-9)) < 1e-6


def test_1d_known_results_of_the_diffgrad_notebook() -> None:
    """Adam ends in F1's local minimum 0.2 and F2's x = 0; diffGrad in the global basins."""
    adam, diffgrad = resolve_method("adam"), resolve_method("diffgrad")
    final = {}
    for key in ("f1", "f2"):
        task = FunctionTask(key)
        for m in (adam, diffgrad):
            outcome, used = task.run(m, 0, 300, False)
            final[key, m.name] = outcome.metrics["final_x"]
            assert used["betas"] == (0.95, 0.999) and used["lr"] == 0.1
    assert final["f1", "adam"] == pytest.approx(0.2, abs=2e-3)
    assert final["f1", "diffgrad"] == pytest.approx(-0.3, abs=2e-3)
    assert final["f2", "adam"] == pytest.approx(0.0, abs=2e-3)
    assert final["f2", "diffgrad"] == pytest.approx(-0.812, abs=5e-3)


def test_divergence_and_errors_become_record_status() -> None:
    class Exploding(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("boom")

    boom = Method("boom", Exploding, "torch")
    big = Method("big", torch.optim.SGD, "torch", fixed={"lr": 1.0})  # diverges on Rosenbrock
    records, infos = run_tasks("t", [RosenbrockTask()], [boom, big], [0], steps=30)
    by_method = {r.method: r for r in records}
    assert by_method["boom"].status == "error" and "boom" in (by_method["boom"].error or "")
    assert by_method["big"].status == "diverged"
    assert infos["rosenbrock"].steps == 30
    json.dumps([r.to_dict() for r in records], allow_nan=False)  # strict JSON, no NaN


# -- runner helpers -----------------------------------------------------------------------------


def test_normalize_seeds() -> None:
    assert normalize_seeds(3, 1) == (0, 1, 2)
    assert normalize_seeds([4, 2], 1) == (4, 2)
    assert normalize_seeds(None, 2) == (0, 1)
    for bad in (0, [], [1, 1], [-1], True):
        with pytest.raises(BenchConfigError):
            normalize_seeds(bad, 1)


def test_thread_count_is_set_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import gradkit.bench.tuning as tuning

    before = torch.get_num_threads()
    seen: list[int] = []
    real = tuning.run_trial

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "run_trial", spy)
    res = run_suite(optimizers="adam", tasks="f3", steps=2, num_threads=3, trials=2)
    assert seen == [3, 3, 3] and res.settings.num_threads == 3  # 2 tuning trials + 1 run
    assert torch.get_num_threads() == before
    assert resolve_threads("auto", smoke=False) == 2 and resolve_threads("auto", smoke=True) == 1
    assert resolve_threads(None, smoke=False) is None
    with pytest.raises(BenchConfigError):
        resolve_threads(0, smoke=False)


def test_subsample() -> None:
    values, stride = subsample(list(range(1001)), max_points=500)
    assert stride == 3 and values[:3] == [0, 3, 6] and len(values) <= 500
    assert subsample([1.0, 2.0]) == ([1.0, 2.0], 1)


# -- suites -------------------------------------------------------------------------------------


def test_suite_registry() -> None:
    assert "default" in suite_names()
    default = get_suite("default")
    assert list(default.tasks) == ["f1", "f2", "f3", "rosenbrock", "digits_cnn"]
    assert default.default_optimizers()[:3] == ["sgd", "adam", "adamw"]
    assert default.default_optimizers()[3:] == ["diffgrad", "adabelief", "adamp", "sgdp"]
    with pytest.raises(BenchConfigError, match="unknown suite 'x'; valid suites: default"):
        get_suite("x")
    tiny = Suite("tiny-test", "one task", {"f3": FunctionTask("f3")}, lambda: ["adam"])
    register_suite(tiny)
    assert get_suite("tiny-test") is tiny
    with pytest.raises(ValueError, match="already registered"):
        register_suite(tiny)
    res = run_suite("tiny-test", steps=5)
    assert [(r.task, r.method) for r in res.records] == [("f3", "adam")]


# -- determinism and the results object ---------------------------------------------------------


def test_seeded_run_is_reproducible() -> None:
    kwargs: dict[str, Any] = {
        "optimizers": "sgd,adamp",
        "tasks": "f2,digits_cnn",
        "seeds": [0, 1],
        "smoke": True,
    }
    first, second = run_suite(**kwargs), run_suite(**kwargs)
    assert first.numbers() == second.numbers()
    cnn = first.select(task="digits_cnn")
    assert len(cnn) == 4  # 2 methods × 2 seeds; f2 is deterministic: 1 run per method
    assert cnn[0].final_loss != cnn[1].final_loss  # the seed matters
    assert len(first.select(task="f2")) == 2


def test_results_json_round_trip(tmp_path: Path) -> None:
    res = run_suite(optimizers="adam", tasks="f1,rosenbrock", smoke=True)
    text = res.to_json()
    back = BenchResults.from_json(text)
    assert back.numbers() == res.numbers()
    assert back.settings == res.settings
    assert back.tasks["rosenbrock"].optimum == 0.0
    data = json.loads(text)
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99"):
        BenchResults.from_dict(data)
    nan_record = Record("s", "t", "m", 0, math.nan, (1.0, math.inf), 0.0, 1)
    assert nan_record.to_dict()["final_loss"] is None
    assert nan_record.to_dict()["curve"] == [1.0, None]


# -- report writer -------------------------------------------------------------------------------


def test_report_written_atomically_and_loadable(tmp_path: Path) -> None:
    res = run_suite(optimizers="sgd,adam", tasks="f1", smoke=True, out=tmp_path / "r")
    assert load_results(tmp_path / "r").numbers() == res.numbers()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "curves_f1.png",
        "report.html",
        "report.md",
        "results.json",
    ]


def test_crash_while_writing_leaves_old_report_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r"
    run_suite(optimizers="sgd", tasks="f1", smoke=True, out=out)
    before = (out / "results.json").read_text()

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("gradkit.bench.plots.plot_task", crash)
    res = run_suite(optimizers="adam", tasks="f1", smoke=True)
    (out / "mine.txt").write_text("a user's file")
    with pytest.raises(RuntimeError, match="disk on fire"):
        bench.write_report(res, out)
    assert (out / "results.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    # no temporary file is left behind, and the user's file is untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["curves_f1.png", "mine.txt", "report.html", "report.md", "results.json"]
    )
    # a crash into a fresh target leaves nothing at all
    with pytest.raises(RuntimeError):
        bench.write_report(res, tmp_path / "fresh")
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


# -- Python API on a user's model ----------------------------------------------------------------


def _user_problem() -> tuple[DataLoader, TensorDataset]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=16, shuffle=True), data


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )


def test_compare_on_a_user_model(tmp_path: Path) -> None:
    loader, data = _user_problem()

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        x, y = data.tensors
        logits = model(x)
        return {
            "loss": float(torch.nn.functional.cross_entropy(logits, y)),
            "accuracy": float((logits.argmax(1) == y).float().mean()),
            "logit_norm": float(logits.norm()),
        }

    kwargs: dict[str, Any] = {
        "optimizers": ["sgd", "adamp"],
        "steps": 40,
        "seeds": 2,
        "lr": {"sgd": 0.05},
        "optimizer_kwargs": {"adamp": {"weight_decay": 1e-4}},
        "eval_fn": evaluate,
        "task": "toy",
        "num_threads": 1,  # two threads crawl when the test runs beside other jobs
    }
    res = compare(_model, loader, torch.nn.functional.cross_entropy, out=tmp_path / "rep", **kwargs)
    assert [(r.task, r.method, r.seed) for r in res.records] == [
        ("toy", "sgd", 0),
        ("toy", "sgd", 1),
        ("toy", "adamp", 0),
        ("toy", "adamp", 1),
    ]
    for r in res.records:
        assert r.status == "ok" and len(r.curve) == 40
        assert r.accuracy is not None and 0.5 < r.accuracy <= 1.0
        first_loss = r.curve[0]
        assert r.final_loss is not None and first_loss is not None
        assert r.final_loss < first_loss
        assert "logit_norm" in r.metrics
    assert res.records[0].hyperparams == {"lr": 0.05, "momentum": 0.9}
    assert res.records[2].hyperparams["weight_decay"] == 1e-4
    assert res.records[2].hyperparams["lr"] == 1e-3  # adaptive default
    assert "| sgd | 2 |" in (tmp_path / "rep" / "report.md").read_text()
    again = compare(_model, loader, torch.nn.functional.cross_entropy, **kwargs)
    assert again.numbers() == res.numbers()


def test_compare_rejects_bad_arguments() -> None:
    loader, _ = _user_problem()
    loss = torch.nn.functional.cross_entropy
    with pytest.raises(BenchConfigError, match="unknown optimizer 'adamx'"):
        compare(_model, loader, loss, optimizers=["adamx"])
    with pytest.raises(BenchConfigError, match="does not accept argument"):
        compare(_model, loader, loss, optimizers=["adam"], optimizer_kwargs={"adam": {"nest": 1}})
    with pytest.raises(BenchConfigError, match="not among the selected"):
        compare(_model, loader, loss, optimizers=["adam"], optimizer_kwargs={"sgd": {}})
    with pytest.raises(BenchConfigError, match="steps"):
        compare(_model, loader, loss, steps=0)
    with pytest.raises(TypeError, match="model_fn"):
        compare(None, loader, loss)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "module",
    ["gradkit.bench", "gradkit.bench.api", "gradkit.bench.stats", "gradkit.bench.verdicts"],
)
def test_docstring_examples_run(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
