"""The equal-budget tuning protocol, the study database, resume and the report folder's safety.

The protocol runs in-process on the deterministic 1-D functions (milliseconds per run); the
resume-after-SIGTERM and two-worker checks run real ``python -m gradkit bench`` processes on
the smoke form of the digits CNN, with the study in a real SQLite file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradkit.bench import runner as runner_module
from gradkit.bench.errors import BenchConfigError
from gradkit.bench.results import BenchResults
from gradkit.bench.search import DEFAULT_SPACE, check_space
from gradkit.bench.study import open_store
from gradkit.bench.suites import get_suite
from gradkit.bench.tuning import TUNING_SEED, BenchInterrupted
from gradkit.cli import main
from gradkit.registry import SearchSpace

SUITE = get_suite("default")


def _run(tmp: Path, **kw: object) -> BenchResults:
    tmp.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{tmp / 'study.db'}")
    kw.setdefault("optimizers", "adam,diffgrad")
    kw.setdefault("tasks", "f1,f2")
    kw.setdefault("trials", 3)
    kw.setdefault("smoke", True)
    return SUITE.run(store=store, **kw)  # type: ignore[arg-type]


# -- the protocol ---------------------------------------------------------------------------


def test_every_method_gets_the_same_budget_and_the_winner_is_evaluated(tmp_path: Path) -> None:
    res = _run(tmp_path, trials=4, seeds=[0, 1])
    assert res.settings.trials == 4 and res.settings.complete
    assert {(t.task, t.method) for t in res.tuning} == {
        (task, m) for task in ("f1", "f2") for m in ("adam", "diffgrad")
    }
    for summary in res.tuning:
        assert summary.budget == 4 and summary.finished == 4
        trials = [r for r in res.trials if r.task == summary.task and r.method == summary.method]
        assert len(trials) == 4
        assert all(r.seed == TUNING_SEED for r in trials)  # never an evaluation seed
        lo, hi = DEFAULT_SPACE.lr  # type: ignore[misc]
        assert all(lo <= r.hyperparams["lr"] <= hi for r in trials)
        # the chosen params are those of the best trial, and the evaluation used them
        best = min(trials, key=lambda r: r.final_loss if r.final_loss is not None else math.inf)
        assert summary.params["lr"] == best.hyperparams["lr"]
        assert summary.best_value == pytest.approx(best.final_loss)
        evals = res.select(summary.task, summary.method)
        assert [r.seed for r in evals] == [0]  # a deterministic task runs its first seed
        assert evals[0].hyperparams["lr"] == summary.params["lr"]


def test_trials_zero_runs_the_task_settings_untuned(tmp_path: Path) -> None:
    res = _run(tmp_path, trials=0)
    assert not res.trials
    assert all(t.budget == 0 and "not tuned" in t.note for t in res.tuning)
    assert {r.hyperparams["lr"] for r in res.records} == {0.1}  # the notebook's lr


def test_tuned_choice_beats_or_matches_the_untuned_setting(tmp_path: Path) -> None:
    """A budget of 8 finds an lr at least as good as the fixed one on the tuning seed (the
    functions are deterministic, so tuning and evaluation agree)."""
    tuned = _run(tmp_path / "a", trials=8, optimizers="adam", smoke=False, tasks="f2")
    fixed = _run(tmp_path / "b", trials=0, optimizers="adam", smoke=False, tasks="f2")
    assert tuned.records[0].final_loss <= fixed.records[0].final_loss + 1e-12


def test_bad_search_space_and_trials_are_refused() -> None:
    with pytest.raises(BenchConfigError, match=r"'m'.*lr has low > high \(1.0 > 0.1\)"):
        check_space("m", SearchSpace(lr=(1.0, 0.1)))
    with pytest.raises(BenchConfigError, match=r"rho .* positive"):
        check_space("m", SearchSpace(log_uniform={"rho": (0.0, 1.0)}))
    with pytest.raises(BenchConfigError, match="trials must be a non-negative int, got -1"):
        SUITE.plan(trials=-1, smoke=True)


def test_unknown_storage_url_is_refused() -> None:
    with pytest.raises(BenchConfigError, match="not a usable SQLAlchemy database URL"):
        open_store("nosuchdb://x")
    with pytest.raises(BenchConfigError, match="does not exist"):
        open_store("sqlite:////no/such/folder/study.db")


def test_a_study_from_another_configuration_is_refused(tmp_path: Path) -> None:
    _run(tmp_path, trials=2)
    with pytest.raises(BenchConfigError, match=r"budget: stored 2, now 3.*refusing to mix"):
        _run(tmp_path, trials=3)
    with pytest.raises(BenchConfigError, match=r"steps: stored 20, now 25"):
        _run(tmp_path, trials=2, steps=25)


def test_resume_repeats_nothing_and_matches_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _run(tmp_path / "full")
    calls = {"n": 0}
    real = runner_module.run_trial

    def interrupt_at_five(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kw)  # type: ignore[arg-type]

    import gradkit.bench.tuning as tuning

    monkeypatch.setattr(tuning, "run_trial", interrupt_at_five)
    with pytest.raises(BenchInterrupted) as info:
        _run(tmp_path / "cut")
    partial = info.value.results
    assert not partial.settings.complete
    assert len(partial.trials) == 4  # four finished before the interrupt
    monkeypatch.setattr(tuning, "run_trial", real)
    counted = {"n": 0}

    def counting(*args: object, **kw: object) -> object:
        counted["n"] += 1
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tuning, "run_trial", counting)
    resumed = _run(tmp_path / "cut")
    assert counted["n"] == 12 + 4 - 4  # 12 tuning trials + 4 evaluations, 4 already done
    assert resumed.settings.complete
    assert resumed.numbers() == full.numbers()
    assert [t.to_dict() | {"tuning_wall_s": 0} for t in resumed.tuning] == [
        t.to_dict() | {"tuning_wall_s": 0} for t in full.tuning
    ]
    again = {"n": 0}

    def never(*args: object, **kw: object) -> object:
        again["n"] += 1
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tuning, "run_trial", never)
    _run(tmp_path / "cut")
    assert again["n"] == 0


# -- the report folder ----------------------------------------------------------------------


def _bench(out: Path, *extra: str) -> int:
    return main(
        ["bench", "--smoke", "--no-progress", "--no-plots", "--tasks", "f1",
         "--optimizers", "adam", "--trials", "2", "--out", str(out), *extra]
    )  # fmt: skip


def test_unwritable_out_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits: make the probe fail the way a read-only folder does
        import gradkit.bench.writer as writer

        def denied(*a: object, **k: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(writer.tempfile, "mkstemp", denied)
    else:
        tmp_path.chmod(0o500)
    ran = {"n": 0}
    import gradkit.bench.tuning as tuning

    monkeypatch.setattr(tuning, "run_trial", lambda *a, **k: ran.__setitem__("n", 1))
    assert _bench(tmp_path / "report") == 2
    assert "cannot write the report" in capsys.readouterr().err and ran["n"] == 0


def test_rerun_resumes_and_keeps_the_users_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert _bench(out) == 0
    (out / "my_notes.txt").write_text("mine")
    first = json.loads((out / "results.json").read_text())
    assert _bench(out) == 0  # resumes: nothing to run, same numbers
    second = json.loads((out / "results.json").read_text())
    assert [r["final_loss"] for r in first["records"]] == [
        r["final_loss"] for r in second["records"]
    ]
    assert (out / "my_notes.txt").read_text() == "mine"
    assert _bench(out, "--trials", "3") == 2
    assert "refusing to mix" in capsys.readouterr().err
    assert _bench(out, "--trials", "3", "--overwrite") == 0
    assert (out / "my_notes.txt").read_text() == "mine"
    assert json.loads((out / "results.json").read_text())["settings"]["trials"] == 3


def test_a_report_without_a_study_is_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "old"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "mine.txt").write_text("keep")
    assert _bench(out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}"
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    assert _bench(other) == 2
    assert (other / "data.csv").read_text() == "1,2"


# -- real processes: SIGTERM and resume, two workers ----------------------------------------

DIGITS = [
    "--tasks",
    "digits_cnn",
    "--optimizers",
    "adam,sgd",
    "--trials",
    "4",
    "--seeds",
    "2",
    "--steps",
    "6",
]


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gradkit", "bench", "--smoke", "--no-progress", "--no-plots",
            "--out", str(out), *extra]  # fmt: skip


def _finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as con:
            row = con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def _numbers(out: Path) -> tuple[list[dict], list[dict]]:
    data = json.loads((out / "results.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in data["records"]]
    tuning = [{k: v for k, v in t.items() if k != "tuning_wall_s"} for t in data["tuning"]]
    return strip, tuning


def test_sigterm_leaves_a_partial_report_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    full = tmp_path / "full"
    subprocess.run(_cli(full, *DIGITS), check=True, capture_output=True, timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cli(cut, *DIGITS), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _finished(cut / "study.db") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    partial = json.loads((cut / "results.json").read_text())
    assert partial["settings"]["complete"] is False
    assert 3 <= len(partial["trials"]) < 8
    subprocess.run(_cli(cut, *DIGITS), check=True, capture_output=True, timeout=600)
    assert json.loads((cut / "results.json").read_text())["settings"]["complete"] is True
    assert _numbers(cut) == _numbers(full)


def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    procs = [
        subprocess.Popen(
            _cli(tmp_path / f"w{i}", *DIGITS, "--storage", url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select s.study_name, t.state, a.value_json from trials t "
            "join studies s on s.study_id = t.study_id "
            "join trial_user_attributes a on a.trial_id = t.trial_id and a.key = 'slot_key'"
        ).fetchall()
        workers = {
            r[0]
            for r in con.execute(
                "select value_json from trial_user_attributes where key = 'worker'"
            )
        }
    complete = [(name, key) for name, state, key in rows if state == "COMPLETE"]
    assert len(complete) == len(set(complete))  # nothing duplicated
    tune = [c for c in complete if c[0].endswith(":tune")]
    evals = [c for c in complete if ":eval" in c[0]]
    assert len(tune) == 2 * 4 and len(evals) == 2 * 2  # nothing lost
    assert len(workers) == 2  # both workers ran slots
    assert _numbers(tmp_path / "w0") == _numbers(tmp_path / "w1")
    for i in range(2):
        data = json.loads((tmp_path / f"w{i}" / "results.json").read_text())
        assert data["settings"]["complete"] is True and len(data["records"]) == 4


def test_compare_tunes_unless_given_a_learning_rate() -> None:
    import torch

    from gradkit.bench import compare

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(out.squeeze(-1), target)

    def run(**kw: object) -> BenchResults:
        return compare(lambda: torch.nn.Linear(3, 1), batches, mse, optimizers=["sgd", "adam"],
                       steps=30, seeds=2, num_threads=1, **kw)  # type: ignore[arg-type]  # fmt: skip

    tuned = run(trials=3)
    assert [(t.method, t.finished) for t in tuned.tuning] == [("sgd", 3), ("adam", 3)]
    for t in tuned.tuning:
        evals = tuned.select("custom", t.method)
        assert [r.seed for r in evals] == [0, 1]
        assert all(r.hyperparams["lr"] == t.params["lr"] for r in evals)
    fixed = run(lr=0.05)  # an explicit lr means: these settings, untuned
    assert not fixed.tuning and {r.hyperparams["lr"] for r in fixed.records} == {0.05}
    with pytest.raises(BenchConfigError, match="trials must be a non-negative int"):
        run(trials=-2)
