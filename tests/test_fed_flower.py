"""gradkit.fed on a real Flower 1.42 simulation (Ray backend): one run_simulation for all checks.

The module fixture starts one simulation with 4 SuperNodes that runs seven experiments in turn
(fp32 FedAvg, EdgeDetect + EF, the same under Paillier, and four fault scenarios).
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from gradkit.comm import plain_frame_size
from gradkit.fed.experiment import Experiment, FedConfig
from gradkit.fed.simulation import FedRunError, run_federated
from gradkit.fed.strategy import tree_bytes

CFG = FedConfig(
    num_clients=4, n_samples=5000, min_size=40, hidden=512, client_lr=0.3, round_timeout=60
)
ROUNDS = 4
EXPERIMENTS = [
    Experiment("fp32", "fedavg", rounds=ROUNDS),
    Experiment("ef", "edgedetect_ef", rounds=ROUNDS),
    Experiment("he", "edgedetect_ef_he", rounds=2),
    Experiment("mean_a", "signsgd_ef", rounds=ROUNDS),
    Experiment("mean_b", "signsgd_ef", rounds=ROUNDS),
    Experiment("raise", "edgedetect_ef", rounds=2, fail_partitions=(1,), fail_rounds=(2,)),
    Experiment("below", "fedavg", rounds=2, fail_partitions=(0, 1, 2), min_replies=2),
    Experiment(
        "malformed",
        "edgedetect",
        rounds=1,
        malformed={0: "garbage", 1: "truncated", 2: "shape"},
        min_replies=1,
    ),
    Experiment("wrong_method", "fedavg", rounds=1, malformed={3: "method"}),
    # last, so that the late reply cannot delay another experiment's round
    Experiment("slow", "fedavg", rounds=1, slow={3: 6.0}, round_timeout=2.0),
]


@pytest.fixture(scope="module")
def run() -> dict:
    seen: list[tuple[str, int, int]] = []
    out = run_federated(CFG, EXPERIMENTS, timeout=300, on_round=lambda *a: seen.append(a))
    out["progress"] = seen
    return out


def _exp(run: dict, name: str) -> dict:
    return run["experiments"][name]


def test_rounds_complete_and_accuracy_improves(run: dict) -> None:
    for name in ("fp32", "ef"):
        e = _exp(run, name)
        assert e["error"] is None
        assert [r["round"] for r in e["rounds"]] == list(range(1, ROUNDS + 1))
        assert all(r["ok"] == 4 and r["failed"] == 0 for r in e["rounds"])
        assert e["rounds"][-1]["accuracy"] > e["initial"]["accuracy"] + 0.05, name
    assert ("ef", ROUNDS, ROUNDS) in run["progress"] and ("fp32", 0, ROUNDS) in run["progress"]


def _array_overhead(length: int) -> int:
    """count_bytes() of an ArrayRecord holding one uint8 payload of ``length`` bytes, minus it."""
    rec = ArrayRecord({"payload": Array(np.zeros(length, dtype=np.uint8))})
    return rec.count_bytes() - length


def test_uplink_bytes_from_real_messages(run: dict) -> None:
    d = run["num_params"]
    frame = plain_frame_size([(512, run["num_features"]), (512,), (8, 512), (8,)])
    for r in _exp(run, "ef")["rounds"]:
        assert r["payload_bytes"] == r["plaintext_bytes"] == 4 * frame
        assert r["array_bytes"] == 4 * (frame + _array_overhead(frame))
        assert r["wire_bytes"] > r["array_bytes"]  # plus metrics, meta and the record tree
    fp32 = _exp(run, "fp32")["rounds"][0]
    assert fp32["payload_bytes"] == fp32["float32_bytes"] == 4 * 4 * d
    assert fp32["payload_bytes"] / _exp(run, "ef")["rounds"][0]["array_bytes"] >= 30
    # encrypted: the wire carries the ciphertexts, the plaintext frame is what it encodes
    he = _exp(run, "he")["rounds"][0]
    assert he["plaintext_bytes"] == 4 * frame < he["payload_bytes"]
    assert he["encode_seconds"] > 0


def test_wire_bytes_helper_counts_the_tree() -> None:
    content = RecordDict(
        {
            "arrays": ArrayRecord({"payload": Array(np.arange(1000, dtype=np.uint8))}),
            "metrics": MetricRecord({"num-examples": 3}),
        }
    )
    total = tree_bytes(content)
    assert total > content["arrays"].count_bytes() >= 1000  # type: ignore[union-attr]
    assert total > len(content.deflate())


def test_error_feedback_state_persists_across_rounds(run: dict) -> None:
    # ef-rounds is the number of earlier rounds whose residual the client carried in
    # context.state: 0 in round 1, then 1, 2, 3 — for every client
    assert [r["ef_rounds"] for r in _exp(run, "ef")["rounds"]] == [[k] for k in range(ROUNDS)]
    assert all(r["ef_rounds"] == [0] for r in _exp(run, "fp32")["rounds"])


def test_paillier_run_equals_plaintext_run(run: dict) -> None:
    he, ef = _exp(run, "he")["rounds"], _exp(run, "ef")["rounds"]
    for a, b in zip(he, ef[:2], strict=False):
        assert a["accuracy"] == b["accuracy"] and a["per_class_f1"] == b["per_class_f1"]


def test_mean_rule_is_deterministic_whatever_the_reply_order(run: dict) -> None:
    # replies arrive in Ray completion order; the strategy sums them in partition order
    a, b = _exp(run, "mean_a")["rounds"], _exp(run, "mean_b")["rounds"]
    assert [r["per_class_f1"] for r in a] == [r["per_class_f1"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def test_raising_client_is_recorded_and_round_proceeds(run: dict) -> None:
    e = _exp(run, "raise")
    assert e["error"] is None
    r1, r2 = e["rounds"]
    assert r1["ok"] == 4 and r1["failed"] == 0
    assert r2["ok"] == 3 and r2["failed"] == 1 and 1 not in r2["partitions"]
    assert "injected client failure (partition 1, round 2)" in r2["failures"][0]
    assert r2["accuracy"] is not None


def test_below_minimum_fails_clearly(run: dict) -> None:
    e = _exp(run, "below")
    assert e["error"].startswith("FedRoundError: experiment 'below', round 1: 1 valid replies")
    assert "need 2" in e["error"] and "injected client failure" in e["error"]
    assert len(e["rounds"]) == 1 and e["rounds"][0]["failed"] == 3


def test_malformed_payloads_rejected(run: dict) -> None:
    e = _exp(run, "malformed")
    assert e["error"] is None
    (r,) = e["rounds"]
    assert r["ok"] == 1 and r["failed"] == 3 and r["partitions"] == [3]
    reasons = " | ".join(r["failures"])
    assert reasons.count("rejected: bad frame") == 3, reasons
    assert "shape" in reasons.lower() or "coordinates" in reasons
    w = _exp(run, "wrong_method")["rounds"][0]
    assert w["ok"] == 3 and w["failed"] == 1
    assert "float32 payload keys ['payload']" in w["failures"][0]


def test_round_timeout_counts_missing_replies(run: dict) -> None:
    e = _exp(run, "slow")
    assert e["error"] is None
    (r,) = e["rounds"]
    assert r["sent"] == 4 and r["ok"] == 3 and r["failed"] == 1 and 3 not in r["partitions"]
    assert r["failures"] == ["no reply within 2 s"]
    assert e["seconds"] < 6.0  # the server did not wait for the slow client


def test_run_federated_argument_errors() -> None:
    with pytest.raises(ValueError, match="at least one experiment"):
        run_federated(CFG, [])
    with pytest.raises(ValueError, match="unique"):
        run_federated(CFG, [Experiment("a", "fedavg", 1), Experiment("a", "fedavg", 1)])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        Experiment("x", "nope", 1)
    with pytest.raises(ValueError, match="unknown malformed"):
        Experiment("x", "fedavg", 1, malformed={0: "bits"})
    with pytest.raises(ValueError, match="num_clients must be >= 2"):
        FedConfig(num_clients=1)


def test_overall_timeout_kills_the_simulation() -> None:
    with pytest.raises(FedRunError, match="exceeded its timeout of 2 s"):
        run_federated(CFG, [Experiment("t", "fedavg", 1)], timeout=2)


def test_flower_telemetry_off_by_default() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "RAY_USAGE"))}
    code = (
        "import gradkit.fed.client, flwr.supercore.telemetry as t, os;"
        "print(t.FLWR_TELEMETRY_ENABLED, os.environ['RAY_USAGE_STATS_ENABLED'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split() == ["0", "0"], out.stderr
