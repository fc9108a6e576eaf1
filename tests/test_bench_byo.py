"""Bring your own task and optimizer: ``gradkit bench --task module:factory``, ``--config``
files, user optimizer classes and factories in ``compare`` (issue 12, item 3)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import gradkit
from gradkit.bench import compare, make_task, user_method
from gradkit.bench.config import load_config
from gradkit.bench.errors import BenchConfigError
from gradkit.bench.userland import comparison_suite, load_method, load_task
from gradkit.cli import _bench, build_parser, main
from gradkit.registry import SearchSpace

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_ids = itertools.count()


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a module into a fresh current directory; returns its (unique) name."""
    monkeypatch.chdir(tmp_path)
    names: list[str] = []

    def write(source: str) -> str:
        name = f"byo_mod_{os.getpid()}_{next(_ids)}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


TASK_SOURCE = """
import torch
from gradkit.bench import make_task

def make():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    def loss(out, target):
        return torch.nn.functional.mse_loss(out.squeeze(-1), target)
    return make_task("lin", lambda: torch.nn.Linear(3, 1), batches, loss, steps=5)
"""


def _quiet(*extra: str) -> list[str]:
    return ["bench", "--no-progress", "--no-plots", "--threads", "1", *extra]


def _env() -> dict[str, str]:
    """The subprocess imports the gradkit these tests import (source tree or installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(gradkit.__file__).resolve().parents[1])
    return env


# -- the documented examples, as a user runs them ----------------------------------------------


def _cli(cwd: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gradkit", *_quiet("--smoke", "--trials", "2", "--seeds", "2")]
    return subprocess.run(
        [*cmd, "--out", str(out), *extra],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_task_example_runs_from_the_command_line(tmp_path: Path) -> None:
    proc = _cli(EXAMPLES, tmp_path / "rep", "--task", "my_task:make_task")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert data["settings"]["suite"] == "custom"
    assert data["settings"]["optimizers"] == ["sgd", "adam", "adamw"]
    assert data["settings"]["trials"] == 2 and data["settings"]["complete"]
    assert data["verdicts"] == []
    assert [(t["method"], t["finished"]) for t in data["tuning"]] == [
        ("sgd", 2), ("adam", 2), ("adamw", 2)
    ]  # fmt: skip
    runs = [(r["task"], r["method"], r["seed"], r["status"]) for r in data["records"]]
    assert runs == [("my_mlp", m, s, "ok") for m in ("sgd", "adam", "adamw") for s in (0, 1)]
    assert all(0.5 < r["accuracy"] <= 1 for r in data["records"])
    assert (tmp_path / "rep" / "report.html").is_file()


def test_config_example_runs_and_flags_win_over_the_file(tmp_path: Path) -> None:
    proc = _cli(EXAMPLES, tmp_path / "rep", "--config", "bench.toml")
    assert proc.returncode == 0, proc.stderr
    assert not (EXAMPLES / "my-report").exists()  # --out won over out = "my-report"
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert data["settings"]["trials"] == 2  # --trials won over trials = 8
    assert data["settings"]["tasks"] == ["my_mlp", "rosenbrock"]  # the file's order
    assert data["settings"]["optimizers"] == ["sgd", "adam", "signsgd"]
    spaces = {(t["task"], t["method"]): t["space"] for t in data["tuning"]}
    assert spaces["my_mlp", "signsgd"] == {
        "lr": ["log-uniform", 1e-4, 1e-1], "beta": ["log-uniform", 0.5, 0.99]
    }  # fmt: skip
    assert spaces["my_mlp", "adam"] == {"lr": ["log-uniform", 1e-4, 1.0]}
    signsgd = [r for r in data["records"] if r["method"] == "signsgd"]
    assert signsgd and all(0.5 <= r["hyperparams"]["beta"] <= 0.99 for r in signsgd)


def test_a_task_module_is_found_in_the_current_directory(
    module: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = module(TASK_SOURCE)
    code = main(_quiet("--task", f"{name}:make", "--trials", "2", "--seeds", "1",
                       "--out", str(tmp_path / "rep")))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert {r["task"] for r in data["records"]} == {"lin"}
    assert all(r["steps"] == 5 for r in data["records"])


# -- task factory errors -------------------------------------------------------------------


def test_task_factory_errors_name_the_factory(module: Callable[[str], str]) -> None:
    with pytest.raises(BenchConfigError, match=r"'nosuchmod_xyz:make'.*no module named"):
        load_task("nosuchmod_xyz:make")
    with pytest.raises(BenchConfigError, match="must have the form module:attribute"):
        load_task("just_a_name")
    ok = module(TASK_SOURCE)
    with pytest.raises(BenchConfigError, match=rf"'{ok}:nope'.*has no attribute 'nope'"):
        load_task(f"{ok}:nope")
    raising = module("def make():\n    raise ValueError('no data here')\n")
    with pytest.raises(
        BenchConfigError, match=rf"task factory '{raising}:make' raised ValueError: no data here"
    ):
        load_task(f"{raising}:make")
    wrong = module("def make():\n    return {'model': None}\n")
    with pytest.raises(
        BenchConfigError, match=rf"'{wrong}:make' returned builtins.dict, not a .*Task.*make_task"
    ):
        load_task(f"{wrong}:make")
    not_callable = module("make = 3\n")
    with pytest.raises(BenchConfigError, match="is a int, not a callable"):
        load_task(f"{not_callable}:make")
    broken = module("raise RuntimeError('broken module')\n")
    with pytest.raises(BenchConfigError, match="raised RuntimeError: broken module"):
        load_task(f"{broken}:make")
    needs = module("import nosuchdependency_xyz\n")
    with pytest.raises(BenchConfigError, match=r"importing .* failed: .*nosuchdependency_xyz"):
        load_task(f"{needs}:make")


def test_a_failing_factory_exits_2_with_one_line(
    module: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raising = module("def make():\n    raise OSError('data file missing')\n")
    assert main(_quiet("--task", f"{raising}:make", "--out", str(tmp_path / "r"))) == 2
    err = capsys.readouterr().err
    assert f"task factory '{raising}:make' raised OSError: data file missing" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()  # checked before --out


# -- the config file -----------------------------------------------------------------------


def _toml(tmp_path: Path, text: str, name: str = "bench.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_config_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'methods = ["adam"]\noptimizers = ["sgd"]\n')
    with pytest.raises(BenchConfigError, match=rf"{path}: unknown key 'optimizers'; valid keys"):
        load_config(path)
    path = _toml(tmp_path, "[search.adam]\nlr = [1e-1, 1e-3]\n")
    with pytest.raises(
        BenchConfigError, match=rf"{path}: search space of 'adam': lr has low > high"
    ):
        load_config(path)
    path = _toml(tmp_path, "[search.adam]\nlr = [1e-4, 1e-1]\nbeta1 = [0.8, 0.9]\n")
    with pytest.raises(BenchConfigError, match=r"unknown key search.adam.beta1; .*log_uniform"):
        load_config(path)
    path = _toml(tmp_path, 'trials = "8"\n')
    with pytest.raises(BenchConfigError, match=rf"{path}: trials must be an int >= 0, got '8'"):
        load_config(path)
    path = _toml(tmp_path, "seeds = [0, -1]\n")
    with pytest.raises(BenchConfigError, match="each seed must be an int >= 0, got -1"):
        load_config(path)
    path = _toml(tmp_path, "trials = \n")
    with pytest.raises(BenchConfigError, match=rf"{path}: not valid TOML"):
        load_config(path)
    with pytest.raises(BenchConfigError, match=r"unknown format \.ini"):
        load_config(_toml(tmp_path, "", "bench.ini"))
    with pytest.raises(BenchConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_yaml_and_toml_say_the_same(tmp_path: Path) -> None:
    toml = _toml(tmp_path, 'tasks = ["f1"]\nseeds = [0, 2]\ntrials = 3\n'
                           '[search.adam]\nlr = [1e-3, 1e-1]\nlog_uniform = { eps = [1e-9, 1e-6] }\n')  # fmt: skip
    yaml = _toml(tmp_path, "tasks: [f1]\nseeds: [0, 2]\ntrials: 3\n"
                           "search:\n  adam:\n    lr: [1.0e-3, 1.0e-1]\n"
                           "    log_uniform: {eps: [1.0e-9, 1.0e-6]}\n", "bench.yaml")  # fmt: skip
    a, b = load_config(toml), load_config(yaml)
    assert (a.tasks, a.seeds, a.trials, a.search) == (b.tasks, b.seeds, b.trials, b.search)
    assert a.search["adam"] == SearchSpace(lr=(1e-3, 1e-1), log_uniform={"eps": (1e-9, 1e-6)})


def test_config_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _toml(tmp_path, "epochs = 3\n")
    assert main(_quiet("--config", str(bad), "--out", str(tmp_path / "r"))) == 2
    assert f"{bad}: unknown key 'epochs'" in capsys.readouterr().err
    config = _toml(tmp_path, 'tasks = ["f1", "f2"]\nmethods = ["sgd", "adam"]\nseeds = 2\n'
                             "[search.sgd]\nlr = [1e-3, 1e-2]\n")  # fmt: skip
    parse = build_parser().parse_args
    _, suite = _bench._comparison(parse(["bench", "--config", str(config)]))
    plan = suite.plan(trials=2, smoke=True, seeds=2)
    assert [(u.task.name, u.method.name) for u in plan.units] == [
        ("f1", "sgd"), ("f1", "adam"), ("f2", "sgd"), ("f2", "adam")
    ]  # fmt: skip
    assert plan.units[0].space == SearchSpace(lr=(1e-3, 1e-2))
    # --optimizers replaces the file's methods; the space of a method it drops is not needed
    _, suite = _bench._comparison(
        parse(["bench", "--config", str(config), "--optimizers", "adam", "--tasks", "f3"])
    )
    plan = suite.plan(trials=2, smoke=True)
    assert [(u.task.name, u.method.name) for u in plan.units] == [("f3", "adam")]
    assert suite.name == "default"  # built-in tasks only: the suite keeps its verdicts


def test_search_space_for_a_method_not_run_is_refused() -> None:
    with pytest.raises(BenchConfigError, match="search space is given for 'sgd', which is not"):
        comparison_suite(tasks=["f1"], methods=["adam"], spaces={"sgd": SearchSpace()})
    with pytest.raises(BenchConfigError, match="lr has low > high"):
        comparison_suite(tasks=["f1"], methods=["adam"], spaces={"adam": SearchSpace(lr=(1, 0.1))})


# -- user methods --------------------------------------------------------------------------


class Halving(torch.optim.SGD):
    """SGD whose constructor also takes ``halve`` (to see the keyword reach it)."""

    def __init__(self, params: Any, lr: float = 0.1, halve: bool = True) -> None:
        super().__init__(params, lr=lr / 2 if halve else lr)


def plain_sgd(params: Any, lr: float = 1e-2, momentum: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def _problem() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Callable[..., torch.Tensor]]:
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([1.0, -2.0, 0.5])

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(out.squeeze(-1), target)

    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)], loss


def test_compare_takes_optimizer_classes_and_factories(module: Callable[[str], str]) -> None:
    batches, loss = _problem()
    spec = module("import torch\nclass Rprop2(torch.optim.Rprop):\n    pass\n")
    res = compare(
        lambda: torch.nn.Linear(3, 1), batches, loss,
        optimizers=["adam", Halving, plain_sgd, f"{spec}:Rprop2"],
        steps=10, seeds=1, lr=0.05, optimizer_kwargs={"halving": {"halve": False}},
        num_threads=1,
    )  # fmt: skip
    assert [r.method for r in res.records] == ["adam", "halving", "plain_sgd", "rprop2"]
    by = {r.method: r for r in res.records}
    assert by["halving"].hyperparams == {"lr": 0.05, "halve": False}
    assert by["plain_sgd"].hyperparams == {"lr": 0.05, "momentum": 0.9}
    assert all(r.status == "ok" and r.final_loss < r.curve[0] for r in res.records)


def test_user_method_names_and_duplicates() -> None:
    batches, loss = _problem()
    run = lambda opts: compare(  # noqa: E731
        lambda: torch.nn.Linear(3, 1),
        batches,
        loss,
        optimizers=opts,
        steps=2,
        num_threads=1,
        trials=0,  # untuned: a factory error propagates instead of being recorded
    )
    with pytest.raises(BenchConfigError, match="'halving' is selected twice"):
        run([Halving, Halving])
    with pytest.raises(BenchConfigError, match=r"'plain_sgd' is selected twice \(.*plain_sgd"):
        run([plain_sgd, user_method(Halving, name="plain_sgd")])
    with pytest.raises(BenchConfigError, match="would be named 'adam', which is the built-in"):
        run(["sgd", torch.optim.Adam])
    assert run([user_method(torch.optim.Adam, name="torch_adam")]).records[0].method == (
        "torch_adam"
    )
    with pytest.raises(BenchConfigError, match="no usable name; define the factory with def"):
        run([lambda params, lr: torch.optim.SGD(params, lr=lr)])
    with pytest.raises(BenchConfigError, match=r"is a class but not a torch\.optim\.Optimizer"):
        run([dict])
    with pytest.raises(TypeError, match=r"returned int, not a torch\.optim\.Optimizer"):
        run([user_method(lambda params, lr: 3, name="three")])
    with pytest.raises(
        BenchConfigError, match="your own optimizers can join optimizer suites only"
    ):
        comparison_suite("mtl", methods=["mean", Halving])


def test_config_method_tables_and_specs(
    module: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = module("import torch\ndef nesterov(params, lr=0.1):\n"
                  "    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)\n")  # fmt: skip
    path = _toml(tmp_path, f'tasks = ["f1"]\nmethods = ["adam", "{name}:nesterov",\n'
                           f'  {{ name = "nag", factory = "{name}:nesterov" }}]\n')  # fmt: skip
    config = load_config(path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the module is found beside the config file
    suite = comparison_suite(tasks=config.tasks, methods=config.methods, paths=config.folder)
    methods = suite.resolve_methods(None)
    assert [m.name for m in methods] == ["adam", "nesterov", "nag"]
    assert methods[2].source == f"user ({name})"
    with pytest.raises(BenchConfigError, match="takes the keys name and factory"):
        comparison_suite(tasks=["f1"], methods=[{"name": "x", "class": f"{name}:nesterov"}])
    with pytest.raises(BenchConfigError, match=rf"optimizer '{name}:missing'.*no attribute"):
        load_method(f"{name}:missing")


# -- the Task contract, without make_task ---------------------------------------------------


def test_a_task_subclass_is_tuned_like_the_built_in_ones() -> None:
    """docs/bench.md's Task example: a class is a factory, ``--task quadratic_task:Quadratic``."""
    task = load_task("quadratic_task:Quadratic", paths=[EXAMPLES])
    suite = comparison_suite(tasks=[task], methods=["sgd", "adam"])
    assert suite.name == "custom"
    res = suite.run(trials=3, seeds=2, smoke=True, num_threads=1)
    assert [(r.method, r.seed) for r in res.records] == [("sgd", 0), ("adam", 0)]  # deterministic
    for summary in res.tuning:
        assert summary.finished == 3
        record = res.select("quadratic", summary.method)[0]
        assert record.hyperparams["lr"] == summary.params["lr"] != 0.1  # the tuner's lr won
    untuned = suite.run(trials=0, seeds=1, smoke=True, num_threads=1)
    assert {r.hyperparams["lr"] for r in untuned.records} == {0.1}


def test_make_task_checks_its_arguments() -> None:
    batches, loss = _problem()
    model = lambda: torch.nn.Linear(3, 1)  # noqa: E731
    with pytest.raises(BenchConfigError, match="without ':'"):
        make_task("a:b", model, batches, loss)
    with pytest.raises(BenchConfigError, match="steps must be a positive int"):
        make_task("t", model, batches, loss, steps=0)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        make_task("t", model, batches, None)  # type: ignore[arg-type]
    task = make_task("t", model, batches, loss, objective="accuracy")
    assert task.higher_is_better["accuracy"] and task.objective == "accuracy"
    task = make_task("t", model, batches, loss, objective="f1", higher_is_better={"f1": True})
    assert task.metrics == ("f1",) and task.info(3).higher_is_better["f1"]
    with pytest.raises(BenchConfigError, match="two tasks are named 't'"):
        comparison_suite(tasks=[task, make_task("t", model, batches, loss)])


@pytest.mark.parametrize(
    ("doc", "files"),
    [
        ("docs/bench.md", ["my_task.py", "my_optimizer.py", "quadratic_task.py", "bench.toml"]),
        ("README.md", ["my_task.py"]),
    ],
)
def test_the_docs_show_the_tested_examples(doc: str, files: list[str]) -> None:
    """The examples in the docs are the files the tests above run, verbatim."""
    text = (EXAMPLES.parent / doc).read_text(encoding="utf-8")
    for name in files:
        code = (EXAMPLES / name).read_text(encoding="utf-8").strip()
        assert f"\n{code}\n```" in text, f"{doc} does not show examples/{name} as it is"
