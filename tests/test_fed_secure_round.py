"""EdgeDetectStrategy's policy for an out-of-range secure aggregate (issue 11 item 8).

A client that encrypts a vote outside 0/1 is invisible to the server (every ciphertext is valid
on its own); the key holder finds a slot holding more votes than clients. The strategy then
discards the round and keeps the model (default) or raises, saying which round and slot and why.
Tested on ``aggregate_train`` directly with real 2048-bit Paillier ciphertexts (a Flower
simulation cannot place a deterministic out-of-range vote: the other clients' votes are unknown).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from gradkit.comm import KeyHolder, PackingPlan, binarize, encrypt_update
from gradkit.fed.experiment import Experiment, FedConfig
from gradkit.fed.strategy import EdgeDetectStrategy, FedRoundError

N = 10
SHAPE = (8,)


@pytest.fixture(scope="module")
def holder() -> KeyHolder:
    return KeyHolder(2048, min_clients=2)


@pytest.fixture(scope="module")
def honest_frames(holder: KeyHolder) -> list[bytes]:
    updates = [binarize([torch.linspace(-1.0, 1.0, 8) + 0.01 * k]) for k in range(N - 1)]
    assert not any(bool(u.bits[0]) for u in updates)  # every honest vote in slot 0 is 0
    return [encrypt_update(u, holder.public_key, num_clients=N) for u in updates]


def _evil_frame(holder: KeyHolder, value: int, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A client frame whose vote slot 0 holds ``value`` (no range check on the client)."""

    def pack(self: PackingPlan, values: object) -> list[int]:
        ints = [int(v) for v in np.asarray(values).reshape(-1)]
        if self.max_value == 1:  # the vote plan, not the scales
            ints[0] = value
        w, k = self.slot_bits, self.slots_per_ciphertext
        return [
            sum(v << (j * w) for j, v in enumerate(ints[c : c + k])) for c in range(0, len(ints), k)
        ]

    with monkeypatch.context() as patch:
        patch.setattr(PackingPlan, "pack", pack)
        return encrypt_update(
            binarize([torch.linspace(-1.0, 1.0, 8)]), holder.public_key, num_clients=N
        )


def _reply(node: int, data: bytes, experiment: str) -> Any:
    metrics = {
        "num-examples": 10,
        "train-loss": 0.5,
        "partition-id": node,
        "plaintext-bytes": 60,
        "float32-bytes": 32,
        "encode-seconds": 0.0,
        "sign-disagreement": 0.0,
        "ef-rounds": 0,
    }
    content = RecordDict(
        {
            "arrays": ArrayRecord({"payload": Array(np.frombuffer(data, dtype=np.uint8).copy())}),
            "metrics": MetricRecord(metrics),
            "meta": ConfigRecord({"experiment": experiment, "method": "edgedetect_ef_he"}),
        }
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(src_node_id=node), has_error=lambda: False, content=content
    )


def _strategy(holder: KeyHolder, **options: Any) -> EdgeDetectStrategy:
    exp = Experiment("he", "edgedetect_ef_he", rounds=1, **options)
    strategy = EdgeDetectStrategy(exp, FedConfig(num_clients=N), [SHAPE], key_holder=holder)
    strategy._weights = [np.linspace(0.0, 1.0, 8, dtype=np.float32)]  # what configure_train sets
    strategy._sent = N
    return strategy


def _replies(frames: list[bytes]) -> list[Any]:
    return [_reply(k, f, "he") for k, f in enumerate(frames)]


def test_an_out_of_range_aggregate_discards_the_round_and_keeps_the_model(
    holder: KeyHolder,
    honest_frames: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = _strategy(holder)
    replies = _replies([*honest_frames, _evil_frame(holder, 15, monkeypatch)])
    with caplog.at_level(logging.WARNING, logger="gradkit.fed.strategy"):
        arrays, metrics = strategy.aggregate_train(3, replies)
    # The model is kept, the round is recorded as discarded with the reason.
    np.testing.assert_array_equal(arrays["w0"].numpy(), strategy._weights[0])
    assert metrics["discarded"] == 1
    entry = strategy.history[-1]
    assert entry["round"] == 3 and entry["ok"] == N and entry["discarded"] is True
    reason = entry["discard_reason"]
    for part in ("round 3", "coordinate 0", "slot 0 holds 15 > 10", "malicious", "range proofs"):
        assert part in reason, (part, reason)
    assert entry["payload_bytes"] > 0  # the round's traffic is still accounted
    assert any("Round discarded, model kept" in r.getMessage() for r in caplog.records)
    # The next round aggregates normally.
    arrays, metrics = strategy.aggregate_train(4, _replies(honest_frames))
    assert metrics["discarded"] == 0 and strategy.history[-1]["discarded"] is False
    assert not np.array_equal(arrays["w0"].numpy(), strategy._weights[0])


def test_the_raise_policy_stops_with_the_same_message(
    holder: KeyHolder, honest_frames: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = _strategy(holder, on_invalid_aggregate="raise")
    replies = _replies([*honest_frames, _evil_frame(holder, 15, monkeypatch)])
    with pytest.raises(FedRoundError, match=r"round 2: .*slot 0 holds 15 > 10 .*'raise'"):
        strategy.aggregate_train(2, replies)
    assert strategy.history[-1]["discarded"] is True


def test_an_in_range_lie_is_not_detected(
    holder: KeyHolder, honest_frames: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented limit of the threat model: a lie that keeps the slot within N is accepted.
    strategy = _strategy(holder)
    replies = _replies([*honest_frames, _evil_frame(holder, 5, monkeypatch)])
    _, metrics = strategy.aggregate_train(1, replies)
    assert metrics["discarded"] == 0


def test_the_policy_is_validated_and_travels_with_the_experiment() -> None:
    with pytest.raises(ValueError, match="Invalid on_invalid_aggregate: 'skip'"):
        Experiment("he", "edgedetect_ef_he", rounds=1, on_invalid_aggregate="skip")
    exp = Experiment("he", "edgedetect_ef_he", rounds=1, on_invalid_aggregate="raise")
    assert Experiment.from_dict(exp.to_dict()) == exp
    assert Experiment("he", "edgedetect_ef_he", rounds=1).on_invalid_aggregate == "discard_round"
