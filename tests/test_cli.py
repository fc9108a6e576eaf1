"""The ``gradkit`` command line, run in-process through ``gradkit.cli.main``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from gradkit.cli import main
from gradkit.cli._bench import parse_seeds
from gradkit.cli._env import gather_env, render_env
from gradkit.cli._list import MethodInfo, MethodListing, gather_methods, render_methods

GRADKIT_METHODS = ("diffgrad", "adabelief", "adamp", "sgdp")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- top level ------------------------------------------------------------------------------


def test_no_subcommand_prints_help_and_returns_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "usage: gradkit" in err
    for command in ("list", "env", "bench"):
        assert command in err


def test_help_and_version_return_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("gradkit ")


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# -- list -----------------------------------------------------------------------------------


def test_gather_methods_reads_the_registry() -> None:
    listing = gather_methods()
    assert listing.registry_error is None
    names = [m.name for m in listing.methods]
    for name in GRADKIT_METHODS:
        assert name in names
    assert [m.name for m in listing.baselines] == ["sgd", "adam", "adamw", "single_task"]
    for m in listing.methods:
        assert m.source == "gradkit"
        assert m.summary and m.paper
        assert m.cls.startswith("gradkit.")
    by_name = {m.name: m for m in listing.methods}
    assert by_name["diffgrad"].suites == ("default",) and by_name["swan"].suites == ("lm",)


def test_gather_methods_lists_every_family_and_suite() -> None:
    from gradkit import registry
    from gradkit.bench.suites import suite_names

    listing = gather_methods()
    assert set(listing.families) == set(registry.families()) - {"optimizer"}
    for family, entries in listing.families.items():
        assert [m.name for m in entries] == registry.names(family)
    assert [m.name for m in listing.families["aggregator"]][:3] == ["mean", "sum", "pcgrad"]
    assert [s.name for s in listing.suites] == suite_names()
    suites = {s.name: s for s in listing.suites}
    assert suites["mtl"].methods[0] == "single_task" and "pcgrad" in suites["mtl"].methods
    assert "fedavg+signflip" in suites["fed"].methods and "char_gpt" in suites["lm"].tasks


def test_render_methods_shows_summary_paper_and_warning() -> None:
    listing = MethodListing(
        methods=[MethodInfo("foo", "gradkit", "pkg.Foo", "the foo update", "Doe 2099")],
        baselines=[MethodInfo("sgd", "torch", "torch.optim.SGD", "plain sgd", "")],
        registry_error="registry broke",
    )
    text = render_methods(listing)
    assert "warning: registry broke" in text
    assert "foo" in text and "the foo update" in text and "paper: Doe 2099" in text
    assert "plain sgd" in text


def test_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in GRADKIT_METHODS:
        assert name in out
    assert "paper:" in out
    for title in ("gradkit optimizers", "gradkit aggregators", "gradkit compressors"):
        assert title in out
    assert "bench baselines" in out and "bench suites" in out and "cagrad" in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in data["methods"]} >= set(GRADKIT_METHODS)
    assert data["registry_error"] is None


# -- env ------------------------------------------------------------------------------------


def test_gather_env_numbers() -> None:
    import numpy
    import torch

    env = gather_env()
    assert env["torch"] == torch.__version__
    assert env["numpy"] == numpy.__version__
    assert isinstance(env["cpu_count"], int) and env["cpu_count"] >= 1
    assert isinstance(env["torch_threads"], int) and env["torch_threads"] >= 1
    assert isinstance(env["cuda_available"], bool)
    # the bench, he, fed and docs extras (phe, gmpy2 and flwr were missing: issue 11 item 9)
    assert {"tqdm", "matplotlib", "scikit-learn", "phe", "gmpy2", "flwr"} <= set(env["optional"])
    assert env["optional"]["phe"] is not None and env["optional"]["flwr"] is not None
    assert env["gradkit"] != ""


def test_render_env_formats_nested_and_missing() -> None:
    text = render_env(
        {"gradkit": "9.9", "optional": {"tqdm": None, "matplotlib": "3.0"}, "cuda_devices": []}
    )
    assert "gradkit" in text and "9.9" in text
    assert "tqdm" in text and "not installed" in text
    assert "cuda_devices" in text


def test_env_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cuda_available" in out
    assert main(["env", "--json"]) == 0
    assert "python" in json.loads(capsys.readouterr().out)


# -- bench: a smoke run with the default optimizers (what CI runs) ------------------------


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """One ``gradkit bench --smoke`` run shared by the checks below."""
    out = tmp_path_factory.mktemp("smoke") / "report"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", "--smoke", "--out", str(out), "--no-progress"])
    return out, code, buf.getvalue()


def test_smoke_exit_code_and_summary(smoke_report: tuple[Path, int, str]) -> None:
    out, code, stdout = smoke_report
    assert code == 0
    assert f"report written to {out}" in stdout
    assert "[holds]" in stdout or "[inconclusive]" in stdout or "[does not hold]" in stdout


def test_smoke_writes_report_files_and_no_temp_dirs(smoke_report: tuple[Path, int, str]) -> None:
    out, _, _ = smoke_report
    assert sorted(p.name for p in out.parent.iterdir()) == ["report"]  # no leftovers
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "results.json"} <= names
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {
        f"curves_{t}.png" for t in ("f1", "f2", "f3", "rosenbrock", "digits_cnn")
    }
    for png in pngs:
        data = png.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Verdicts" in md and "## Versions" in md and "| method |" in md
    assert "![f1 loss curves](curves_f1.png)" in md


def test_smoke_results_json_schema(smoke_report: tuple[Path, int, str]) -> None:
    out, _, _ = smoke_report
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == 3
    assert set(data) == {
        "schema_version",
        "created_utc",
        "settings",
        "versions",
        "tasks",
        "records",
        "verdicts",
        "tuning",
        "trials",
    }
    settings = data["settings"]
    assert set(settings) == {
        "suite",
        "optimizers",
        "tasks",
        "seeds",
        "steps",
        "smoke",
        "num_threads",
        "trials",
        "storage",
        "complete",
    }
    assert settings["suite"] == "default" and settings["smoke"] is True
    assert settings["trials"] == 1 and settings["complete"] is True  # smoke: 1 trial
    assert settings["storage"].startswith("sqlite:///") and settings["storage"].endswith("study.db")
    assert len(data["tuning"]) == len(data["records"]) == len(data["trials"])
    assert settings["seeds"] == [0]
    assert settings["num_threads"] == 1  # smoke mode's default
    # the default path runs every registry optimizer next to the torch baselines
    assert settings["optimizers"][:3] == ["sgd", "adam", "adamw"]
    assert set(GRADKIT_METHODS) <= set(settings["optimizers"])
    assert set(data["versions"]) == {"gradkit", "torch", "numpy", "python", "platform"}
    assert len(data["records"]) == len(settings["optimizers"]) * len(settings["tasks"])
    record_keys = {
        "suite",
        "task",
        "method",
        "seed",
        "status",
        "error",
        "final_loss",
        "accuracy",
        "wall_time_s",
        "steps",
        "curve",
        "curve_stride",
        "metrics",
        "hyperparams",
    }
    for r in data["records"]:
        assert set(r) == record_keys
        assert r["status"] in ("ok", "diverged", "error")
        assert isinstance(r["curve"], list) and r["curve"]
        assert isinstance(r["metrics"], dict)
        assert r["wall_time_s"] >= 0
    cnn = [r for r in data["records"] if r["task"] == "digits_cnn"]
    assert all(0 <= r["accuracy"] <= 1 and "w_norm_ratio" in r["metrics"] for r in cnn)
    assert data["verdicts"]
    for v in data["verdicts"]:
        assert set(v) == {"claim", "paper", "tasks", "verdict", "evidence", "numbers"}
        assert v["verdict"] in ("holds", "does not hold", "inconclusive")


# -- report: re-render from results.json --------------------------------------------------------


def test_report_rerenders_the_same_report(
    smoke_report: tuple[Path, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = smoke_report
    again = tmp_path / "again"
    assert main(["report", str(out), "--out", str(again)]) == 0
    assert f"re-rendered to {again}" in capsys.readouterr().out
    assert (again / "report.md").read_text() == (out / "report.md").read_text()
    assert (again / "report.html").read_text() == (out / "report.html").read_text()
    assert (again / "results.json").read_text() == (out / "results.json").read_text()
    for png in out.glob("*.png"):
        assert (again / png.name).read_bytes() == png.read_bytes(), png.name
    # in place, from the results.json path: the same report again
    assert main(["report", str(again / "results.json")]) == 0
    assert (again / "report.md").read_text() == (out / "report.md").read_text()


def test_report_reads_schema_version_1(smoke_report: tuple[Path, int, str], tmp_path: Path) -> None:
    out, _, _ = smoke_report
    data = json.loads((out / "results.json").read_text())
    data["schema_version"] = 1  # a report written before records had artifacts
    for r in data["records"]:
        r.pop("artifacts", None)
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps(data))
    assert main(["report", str(old), "--no-plots"]) == 0
    assert main(["report", str(out), "--no-plots", "--out", str(tmp_path / "new")]) == 0
    md = (old / "report.md").read_text()
    assert md == (tmp_path / "new" / "report.md").read_text() and "## Verdicts" in md
    assert json.loads((old / "results.json").read_text())["schema_version"] == 1


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    (tmp_path / "results.json").write_text('{"schema_version": 99}')
    assert main(["report", str(tmp_path)]) == 2
    assert "schema_version 99" in capsys.readouterr().err


# -- bench: errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "bad", "valid"),
    [
        (["--optimizers", "sgd,nosuch"], "'nosuch'", "adam"),
        (["--tasks", "f1,nosuch"], "'nosuch'", "rosenbrock"),
        (["--suite", "nosuch"], "'nosuch'", "default"),
        (["--seeds", "a,b"], "'a,b'", "comma-separated"),
        (["--seeds", "0"], "at least 1", "seeds"),
        (["--steps", "0"], "steps", "positive"),
        (["--threads", "-1"], "-1", "num_threads"),
    ],
)
def test_bench_bad_values_give_clear_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    bad: str,
    valid: str,
) -> None:
    out = tmp_path / "rep"
    code = main(["bench", "--smoke", "--no-progress", "--out", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradkit bench: error:")
    assert bad in err and valid in err
    assert "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bench_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bench_refuses_to_replace_a_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "precious.txt"
    keep.write_text("do not delete")
    code = main(
        ["bench", "--smoke", "--no-progress", "--no-plots", "--tasks", "f1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "refusing to write into" in capsys.readouterr().err
    assert keep.read_text() == "do not delete"


def test_bench_replaces_a_previous_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    base = ["bench", "--smoke", "--no-progress", "--no-plots", "--tasks", "f1", "--out", str(out)]
    assert main([*base, "--optimizers", "sgd"]) == 0
    assert main([*base, "--optimizers", "adam"]) == 0
    capsys.readouterr()
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["optimizers"] == ["adam"]
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]
    assert not list(out.glob("*.png"))  # --no-plots


def test_parse_seeds() -> None:
    assert parse_seeds("3") == 3
    assert parse_seeds("0,5,7") == [0, 5, 7]
    assert parse_seeds("7,") == [7]


def test_bench_help_points_to_what_the_installed_package_has(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # it used to say only "See docs/bench.md", a file the wheel does not ship
    assert main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "gradkit list" in text
    assert "source repository" in text
