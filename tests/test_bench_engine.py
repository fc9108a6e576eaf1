"""The bench engine and the hooks suites plug into (``Suite``: resolve, applies, plot;
``Task``: prepare, run, info), the single ``BenchResults.assemble``, the re-render from
``results.json`` and the registry-driven suites."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from gradkit.bench import BenchConfigError, BenchResults, load_results, write_report
from gradkit.bench.families import AggregatorMethod, StrategyMethod, TaskBaseline
from gradkit.bench.methods import BASELINES, BenchMethod, Method, suite_optimizers
from gradkit.bench.results import Verdict
from gradkit.bench.runner import Trial, plan_trials, run_trial
from gradkit.bench.suites import Suite, get_suite
from gradkit.bench.tasks import FunctionTask
from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.writer import render_report


class _Log(Task[BenchMethod]):
    """A task that logs the engine's calls and returns what its trials ask for."""

    name = "logged"
    description = "logs the hooks"
    metrics = ("double",)
    higher_is_better: ClassVar[Mapping[str, bool]] = {"double": True}

    def __init__(self, calls: list[str], name: str = "logged") -> None:
        self.calls = calls
        self.name = name

    def default_steps(self, smoke: bool) -> int:
        return 3 if smoke else 5

    def hyperparams(self, method: BenchMethod) -> dict[str, Any]:
        return {"lr": 0.5}

    def variants(self, method: BenchMethod, smoke: bool = False) -> list[tuple[str, dict]]:
        if isinstance(method, Method):
            return [("lr=1", {"lr": 1.0}), ("lr=2", {"lr": 2.0})]
        return [("", {})]

    def prepare(self, trials: Sequence[Trial], note: Callable[[str], None]) -> None:
        self.calls.append(f"prepare {self.name} {len(trials)}")
        note("prepared")

    def run(self, method: BenchMethod, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        self.calls.append(f"run {self.name} {method.name} {seed}")
        used = method.hyperparams(self.hyperparams(method))
        value = float(torch.rand(()).item())  # the engine seeded the global generator
        if method.name == "broken":
            return Outcome(None, [], status="error", error="told to fail", steps=1), used
        outcome = Outcome(
            value,
            [1.0, value],
            metrics={"double": 2 * value},
            artifacts={"points": [[seed, steps]]},
            wall_time_s=42.0,
        )
        return outcome, used

    def info(self, steps: int) -> Any:
        self.calls.append(f"info {self.name}")
        return super().info(steps)


def _hook_suite(calls: list[str], plotted: list[str]) -> Suite:
    methods: dict[str, BenchMethod] = {
        "adam": BASELINES["adam"],
        "base": TaskBaseline("base", "a reference"),
        "broken": StrategyMethod("broken", "fedavg"),
    }

    def resolve(names: Sequence[str]) -> list[BenchMethod]:
        calls.append(f"resolve {','.join(names)}")
        unknown = [n for n in names if n not in methods]
        if unknown:
            raise BenchConfigError(f"unknown method(s) {unknown}")
        return [methods[n] for n in names]

    def applies(task: Task[Any], method: BenchMethod) -> bool:
        return not (task.name == "only_base" and method.name != "base")

    def plot(results: BenchResults, task: str, path: Path) -> bool:
        plotted.append(task)
        if task != "logged":
            return False
        points = [r.artifacts["points"] for r in results.select(task) if r.artifacts]
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + json.dumps(points).encode())
        return True

    def verdicts(results: BenchResults) -> list[Verdict]:
        n = len(results.records)
        return [Verdict("runs happened", "none", "holds" if n else "inconclusive", f"{n} runs")]

    return Suite(
        name="hooks",
        description="a suite made of hooks",
        tasks={
            "logged": _Log(calls),
            "only_base": _Log(calls, "only_base"),
            "nothing": _Log(calls, "nothing"),
        },
        default_optimizers=lambda: ["adam", "base"],
        verdicts=verdicts,
        default_seeds=2,
        resolve=resolve,
        applies=applies,
        plot=plot,
    )


def test_engine_calls_the_hooks_and_assembles_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradkit.bench import suites

    calls: list[str] = []
    plotted: list[str] = []
    suite = _hook_suite(calls, plotted)
    monkeypatch.setitem(suites._EXTRA_SUITES, "hooks", suite)
    assembled: list[str] = []
    real = BenchResults.assemble.__func__  # type: ignore[attr-defined]

    def spy(cls: type[BenchResults], **kwargs: Any) -> BenchResults:
        assembled.append(kwargs["suite"])
        return real(cls, **kwargs)

    monkeypatch.setattr(BenchResults, "assemble", classmethod(spy))
    res = suite.run(
        optimizers="adam,base,broken",
        tasks="logged,only_base",
        smoke=True,
        seeds=[3, 4],
        trials=0,  # the task's own variants (tuning is tested in test_bench_tuning.py)
    )
    assert assembled == ["hooks"]
    assert calls[0] == "resolve adam,base,broken"
    # prepare once per task with all its trials, before its first run; info after its last
    logged = [c for c in calls if "only_base" not in c][1:]
    assert logged[0] == "prepare logged 8" and logged[-1] == "info logged"
    assert [c for c in calls if "only_base" in c] == [
        "prepare only_base 2",
        "run only_base base 3",
        "run only_base base 4",
        "info only_base",
    ]
    by = {(r.task, r.method, r.variant, r.seed): r for r in res.records}
    assert len(res.records) == 10
    adam = by["logged", "adam", "lr=2", 4]
    assert adam.hyperparams["lr"] == 2.0 and adam.steps == 3 and adam.wall_time_s == 42.0
    assert adam.artifacts == {"points": [[4, 3]]} and adam.metrics["double"] == 2 * adam.final_loss
    # the same seed gives the same draw, whatever the method
    assert by["logged", "base", "", 4].final_loss == adam.final_loss
    broken = by["logged", "broken", "", 3]
    assert (broken.status, broken.error, broken.steps) == ("error", "told to fail", 1)
    assert res.settings.optimizers == ("adam", "base", "broken")
    assert res.settings.tasks == ("logged", "only_base") and res.settings.seeds == (3, 4)
    assert [v.evidence for v in res.verdicts] == ["10 runs"]

    # the suite's plot hook draws its own figure, from the stored records
    out = write_report(res, tmp_path / "report")
    assert plotted == ["logged", "only_base"]
    assert (out / "curves_logged.png").read_bytes().endswith(b"[[3, 3]], [[4, 3]]]")
    assert (out / "curves_only_base.png").stat().st_size > 1000  # the standard curves
    again = render_report(out, tmp_path / "again")
    assert (again / "report.md").read_text() == (out / "report.md").read_text()
    assert (again / "curves_logged.png").read_bytes() == (out / "curves_logged.png").read_bytes()
    assert load_results(again).records[0].artifacts == res.records[0].artifacts


def test_a_task_no_method_applies_to_is_not_run() -> None:
    calls: list[str] = []
    res = _hook_suite(calls, []).run(
        optimizers="adam", tasks="only_base,nothing", smoke=True, trials=0
    )
    assert [r.task for r in res.records] == ["nothing", "nothing"]  # 2 variants, 1 seed
    assert res.tasks["only_base"].description.endswith(
        "Not run: no selected method applies to this task"
    )
    assert [c for c in calls if "only_base" in c] == ["info only_base"]  # no prepare, no run


def test_run_trial_is_the_unit_of_a_tuner() -> None:
    """One (method, hyper-parameters, task, seed) → one record, reproducibly."""
    task = FunctionTask("f1")
    trial = Trial(task, BASELINES["adam"], 0, 40, variant="lr=0.05", overrides={"lr": 0.05})
    a, b = run_trial("tune", trial), run_trial("tune", trial)
    assert a.numbers() == b.numbers() and a.hyperparams["lr"] == 0.05 and a.variant == "lr=0.05"
    assert a.suite == "tune" and len(a.curve) == 41
    default = run_trial("tune", dataclasses.replace(trial, variant="", overrides={}))
    assert default.final_loss != a.final_loss and default.hyperparams["lr"] == 0.1
    trials = plan_trials(task, [BASELINES["sgd"], BASELINES["adam"]], [0, 1], 10)
    assert [(t.method.name, t.seed) for t in trials] == [("sgd", 0), ("adam", 0)]  # deterministic


def test_failing_run_becomes_an_error_record_or_raises() -> None:
    class _Boom(TaskBaseline):
        pass

    task = _Log([])
    method = AggregatorMethod("mean", object)  # no optimizer variants: one trial

    def explode(*args: Any) -> Any:
        raise RuntimeError("kaputt")

    task.run = explode  # type: ignore[method-assign]
    record = run_trial("s", Trial(task, method, 0, 2))
    assert (record.status, record.error) == ("error", "RuntimeError: kaputt")
    assert record.hyperparams == {"lr": 0.5}  # Adam's part of the task's request
    with pytest.raises(RuntimeError, match="kaputt"):
        run_trial("s", Trial(task, _Boom("b"), 0, 2), catch_errors=False)


def test_method_kinds() -> None:
    adam = BASELINES["adam"]
    assert adam.kind == "optimizer" and adam.with_overrides({}) is adam
    assert adam.with_overrides({"lr": 3.0}).fixed == {"lr": 3.0}
    agg = AggregatorMethod("x", object)
    assert agg.kind == "aggregator" and agg.with_overrides({}) is agg
    with pytest.raises(TypeError, match="aggregator method 'x' takes no hyper-parameter"):
        agg.with_overrides({"lr": 1.0})
    assert StrategyMethod("a+signflip", "a", "signflip").attacked
    assert not StrategyMethod("a", "a").attacked and TaskBaseline("b").kind == "baseline"


# -- suites driven from the registry ------------------------------------------------------------


def _with_optimizers(monkeypatch: pytest.MonkeyPatch, *extra: Any) -> None:
    from gradkit import registry

    specs = dict(registry._REGISTRY["optimizer"])
    specs.update({s.name: s for s in extra})
    monkeypatch.setitem(registry._REGISTRY, "optimizer", specs)


def test_default_suite_methods_come_from_bench_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradkit.registry import get_optimizer

    assert get_suite("default").default_optimizers() == [
        "sgd",
        "adam",
        "adamw",
        "diffgrad",
        "adabelief",
        "adamp",
        "sgdp",
    ]
    newcomer = dataclasses.replace(get_optimizer("diffgrad"), name="newcomer")
    _with_optimizers(monkeypatch, newcomer)
    assert suite_optimizers("default")[-1] == "newcomer"
    assert get_suite("default").default_optimizers()[-1] == "newcomer"


def test_adding_an_optimizer_to_the_lm_suite_is_one_registry_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradkit.bench.suites.lm as lm
    from gradkit.registry import get_optimizer

    before = lm.default_methods()
    assert before == ["adamw", "sophiag", "swan", "sinkgd", "aro", "muon"][: len(before)]
    plain = dataclasses.replace(get_optimizer("adabelief"), name="plain", bench_suites=("lm",))
    matrix = dataclasses.replace(get_optimizer("sinkgd"), name="matrixy")  # tagged "lm", matrix
    _with_optimizers(monkeypatch, plain, matrix)
    methods = lm.lm_methods()
    assert list(methods) == ["adamw", "sophiag", "plain", "swan", "sinkgd", "aro", "matrixy"] + (
        ["muon"] if "muon" in before else []
    )
    assert methods["plain"].routing is None and methods["matrixy"].routing == "groups"
    assert methods["sophiag"].refresh is not None and methods["plain"].refresh is None
    assert list(lm.lm_grid(methods["plain"])) == list(lm.BASE_GRID)
    hp = lm.lm_hyperparams(methods["matrixy"], 0.01)
    assert hp["lr"] == 0.01 and hp["aux"]["lr"] == 0.01 and hp["weight_decay"] == 0.0
    assert lm.lm_hyperparams(methods["plain"], 0.03)["betas"] == lm.ADAMW_BETAS
    assert lm.lm_hyperparams(methods["sinkgd"], 0.01)["lr"] == pytest.approx(0.002)
