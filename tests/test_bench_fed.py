"""The ``fed`` bench suite: verdicts flip with the numbers (pure), and a CLI smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradkit.bench.results import BenchResults, Record, RunSettings
from gradkit.bench.suites import get_suite
from gradkit.bench.suites.fed import (
    SCENARIOS,
    TASK,
    attack_cost_verdict,
    fed_verdicts,
    margin_verdict,
    ratio_verdict,
)
from gradkit.cli import main


def _rec(method: str, acc: float, curve: tuple[float, ...] = (), **metrics: float) -> Record:
    return Record(
        suite="fed",
        task=TASK,
        method=method,
        seed=0,
        final_loss=1 - acc,
        curve=curve or (0.5, 1 - acc),
        wall_time_s=1.0,
        steps=1,
        accuracy=acc,
        metrics=metrics,
    )


def _results(records: list[Record]) -> BenchResults:
    settings = RunSettings("fed", tuple(r.method for r in records), (TASK,), (0,))
    return BenchResults(settings, {}, {}, records)


def _by_claim(results: BenchResults, word: str) -> str:
    (v,) = [v for v in fed_verdicts(results) if word in v.claim]
    return v.verdict


def _base(ef_acc: float, ratio: float, he_bytes: float, flip_mv: float, flip_avg: float):
    fp32 = 4000.0
    return [
        _rec("fedavg", 0.90, uplink_payload_B=fp32, uplink_wire_B=fp32 + 500),
        _rec(
            "edgedetect_ef",
            ef_acc,
            curve=(0.5, 0.2, 1 - ef_acc),
            fp32_over_payload=ratio,
            uplink_plaintext_B=fp32 / ratio,
            uplink_wire_B=fp32 / ratio + 500,
        ),
        _rec("edgedetect_ef_he", ef_acc, curve=(0.5, 0.2), uplink_payload_B=he_bytes),
        _rec("signsgd", 0.88),
        _rec("signsgd+signflip", 0.88 - flip_mv),
        _rec("fedavg+signflip", 0.90 - flip_avg),
        _rec("fedavg+signflip_x10", 0.90 - 3 * flip_avg),
        _rec("signsgd+signflip_x10", 0.88 - flip_mv),
    ]


def test_verdicts_flip_with_the_numbers() -> None:
    good = _results(_base(ef_acc=0.88, ratio=31.0, he_bytes=120.0, flip_mv=0.0, flip_avg=0.02))
    bad = _results(_base(ef_acc=0.86, ratio=20.0, he_bytes=1000.0, flip_mv=0.05, flip_avg=0.01))
    for word, expected_good in (
        ("within 3 points", "holds"),
        ("before encryption", "holds"),
        ("with Paillier", "holds"),
        ("robust to a 5 % sign-flip attacker", "holds"),
        ("A 5 % sign-flip attacker costs FedAvg", "holds"),
        ("boosted (×10) sign-flip", "holds"),
    ):
        assert _by_claim(good, word) == expected_good, word
        assert _by_claim(bad, word) == "does not hold", word
    assert _by_claim(good, "changes the bytes, not the model") == "holds"
    changed = _base(0.88, 31.0, 120.0, 0.0, 0.02)
    changed[2] = _rec("edgedetect_ef_he", 0.88, curve=(0.5, 0.21))
    assert _by_claim(_results(changed), "changes the bytes") == "does not hold"
    real = [v for v in fed_verdicts(good) if "98.0 %" in v.claim]
    assert real[0].verdict == "inconclusive" and "not tested" in real[0].evidence


def test_attack_cost_verdict_three_outcomes() -> None:
    def v(avg_loss: float, mv_loss: float) -> str:
        return attack_cost_verdict(
            "c", clean_avg=0.9, attacked_avg=0.9 - avg_loss, clean_mv=0.9, attacked_mv=0.9 - mv_loss
        ).verdict

    assert v(0.02, 0.0) == "holds"
    assert v(0.005, 0.0) == "inconclusive"
    assert v(0.0, 0.001) == "does not hold"
    assert (
        attack_cost_verdict(
            "c", clean_avg=None, attacked_avg=0.9, clean_mv=0.9, attacked_mv=0.9
        ).verdict
        == "inconclusive"
    )


def test_verdict_helpers_boundaries() -> None:
    assert margin_verdict("c", "a", [0.87], "b", [0.90], margin=0.03).verdict == "holds"
    assert margin_verdict("c", "a", [0.8699], "b", [0.90], margin=0.03).verdict == "does not hold"
    assert margin_verdict("c", "a", [None], "b", [0.9], margin=0.03).verdict == "inconclusive"
    assert ratio_verdict("c", 30.0, at_least=30.0, evidence="").verdict == "holds"
    assert ratio_verdict("c", 29.9, at_least=30.0, evidence="").verdict == "does not hold"
    assert ratio_verdict("c", None, at_least=30.0, evidence="").verdict == "inconclusive"


def test_missing_methods_give_no_verdict() -> None:
    results = _results([_rec("fedavg", 0.9)])
    claims = [v.claim for v in fed_verdicts(results)]
    assert not any("within 3 points" in c for c in claims)


def test_unknown_method_is_a_config_error() -> None:
    from gradkit.bench.errors import BenchConfigError

    with pytest.raises(BenchConfigError, match="unknown fed method"):
        get_suite("fed").run(optimizers="fedavg,adam", smoke=True)


def test_cli_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    methods = "fedavg,edgedetect_ef,edgedetect_ef_he,signsgd,signsgd+signflip,fedavg+labelflip"
    code = main(["bench", "--suite", "fed", "--smoke", "--optimizers", methods, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in data["records"]] == methods.split(",")
    assert all(r["status"] == "ok" for r in data["records"])
    by = {r["method"]: r for r in data["records"]}
    assert by["edgedetect_ef"]["metrics"]["fp32_over_payload"] > 10
    assert by["edgedetect_ef_he"]["steps"] == 1 and by["fedavg"]["steps"] == 2
    assert (out / f"curves_{TASK}.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "## Verdicts" in report and "fedavg+labelflip" in report
    assert set(SCENARIOS) >= set(methods.split(","))


def test_missing_flower_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the ``fed`` extra the suite stops before starting a simulation, exit code 1."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name in ("flwr", "gmpy2") else real_find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code = main(
        ["bench", "--suite", "fed", "--smoke", "--no-progress", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "flwr" in err and "gmpy2" in err and "pip install 'gradkit[fed]'" in err
    assert not (tmp_path / "r").exists()
