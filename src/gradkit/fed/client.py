"""The Flower ``ClientApp``: local training on the client's partition, then compression.

``app`` is a module-level ``ClientApp`` so that Ray actors import it by reference. Everything
a client needs arrives in the train message: the global model (``"arrays"``), the data and
training settings (``"config"``: the :class:`~gradkit.fed.experiment.FedConfig` as JSON plus the
experiment fields, and the Paillier public key for the secure method).

Reply (one message per round)::

    RecordDict({
        "arrays":  ArrayRecord({"payload": uint8 Array}) for 1-bit methods (the gradkit.comm
                   frame, plaintext or encrypted), or {"u0": float32, "u1": ...} for fedavg,
        "metrics": MetricRecord({"num-examples", "train-loss", "plaintext-bytes",
                   "float32-bytes", "encode-seconds", "sign-disagreement", "ef-rounds",
                   "partition-id"}),
        "meta":    ConfigRecord({"experiment", "method"}),
    })

The error-feedback residual lives in ``context.state`` (persisted per node by Flower across
rounds) under ``"ef:<experiment>"``, with the number of rounds it has been carried in
``"ef-count:<experiment>"``.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from gradkit.comm import ErrorFeedback, client_payload, load_public_key
from gradkit.fed.experiment import METHODS, config_from_json, federated_data
from gradkit.fed.model import build_mlp, local_update, set_weights

__all__ = ["app", "train"]


def _seed(*parts: Any) -> int:
    return zlib.crc32(json.dumps(parts).encode()) & 0x7FFFFFFF


def _malform(kind: str, data: bytes, spec_payload: str, rng: np.random.Generator) -> Any:
    """The arrays a faulty client sends instead of its real payload."""
    if kind == "garbage":
        return {"payload": Array(rng.integers(0, 256, size=max(len(data), 64), dtype=np.uint8))}
    if kind == "truncated":
        return {"payload": Array(np.frombuffer(data[: max(1, len(data) - 7)], dtype=np.uint8))}
    if kind == "shape":
        wrong = client_payload([torch.randn(17), torch.randn(3, 5)])
        return {"payload": Array(np.frombuffer(wrong.data, dtype=np.uint8).copy())}
    # "method": the other method's payload
    if spec_payload == "binary":
        return {"u0": Array(rng.standard_normal(16).astype(np.float32))}
    frame = client_payload([torch.randn(16)]).data
    return {"payload": Array(np.frombuffer(frame, dtype=np.uint8).copy())}


app = ClientApp()


@app.train()
def train(msg: Message, context: Any) -> Message:
    """The ``@app.train()`` handler: local training, then the method's payload.

    Behaviour: read the configuration from the message, rebuild this node's data from the
    seed (:func:`gradkit.fed.experiment.federated_data`), run
    :func:`gradkit.fed.model.local_update` from the received global weights, apply the
    experiment's attack if this node is an attacker, and encode the update: float32 arrays for
    FedAvg, or a gradkit.comm 1-bit frame (:func:`gradkit.comm.client_payload`, with the
    node's error-feedback residual kept in ``context.state``), Paillier-encrypted for the
    secure method. Injected faults (a raised error, a malformed reply, a delay) come from the
    experiment. The reply layout is in the module docstring.

    Args:
        msg: Flower's train message (``"arrays"``: the global model; ``"config"``).
        context: the node's Flower ``Context`` (``node_config["partition-id"]``, ``state``).

    Returns:
        The reply ``Message``.

    Raises:
        RuntimeError: an injected failure for this node and round.

    Example:
        Flower calls it inside a simulation; run one with
        :func:`gradkit.fed.simulation.run_federated`. The handler is registered on ``app``:

        >>> from gradkit.fed.client import app
        >>> type(app).__name__
        'ClientApp'
    """
    torch.set_num_threads(1)
    conf: Any = msg.content["config"]
    cfg = config_from_json(str(conf["fed-config"]))
    exp_name = str(conf["experiment"])
    method = str(conf["method"])
    spec = METHODS[method]
    server_round = int(conf["server-round"])
    pid = int(context.node_config["partition-id"])
    if pid in json.loads(str(conf["fail-partitions"])):
        rounds = json.loads(str(conf["fail-rounds"]))
        if not rounds or server_round in rounds:
            raise RuntimeError(f"injected client failure (partition {pid}, round {server_round})")

    delay = json.loads(str(conf["slow"])).get(str(pid))
    if delay:
        time.sleep(float(delay))
    clients, n_features, n_classes = federated_data(cfg)
    data = clients[pid]
    model = build_mlp(n_features, n_classes, cfg.hidden, cfg.model_seed)
    arrays: Any = msg.content["arrays"]
    set_weights(model, [arrays[k].numpy() for k in arrays])

    attacker = pid in json.loads(str(conf["attackers"]))
    attack = str(conf["attack"]) if attacker else "none"
    y = (data.y_train + 1) % n_classes if attack == "labelflip" else data.y_train
    update, loss = local_update(
        model,
        data.X_train,
        y,
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        lr=float(conf["client-lr"]) if float(conf["client-lr"]) > 0 else cfg.client_lr,
        seed=_seed(
            server_round, pid, cfg.data_seed, int(conf["seed"])
        ),  # same batches for every method
    )
    if attack == "signflip":
        scale = float(conf["attack-scale"])
        update = [-scale * u for u in update]

    metrics: dict[str, Any] = {"num-examples": len(y), "train-loss": loss, "partition-id": pid}
    numel = sum(u.numel() for u in update)
    if spec.payload == "float32":
        payload: dict[str, Any] = {
            f"u{i}": Array(u.numpy().astype(np.float32)) for i, u in enumerate(update)
        }
        data_bytes = b""
        metrics.update(
            {
                "plaintext-bytes": 4 * numel,
                "float32-bytes": 4 * numel,
                "encode-seconds": 0.0,
                "sign-disagreement": 0.0,
                "ef-rounds": 0,
            }
        )
    else:
        ef = None
        ef_key, count_key = f"ef:{exp_name}", f"ef-count:{exp_name}"
        carried = 0
        if spec.error_feedback:
            ef = ErrorFeedback()
            if ef_key in context.state:
                stored: Any = context.state[ef_key]
                ef.load_state_dict(
                    {"residual": [torch.from_numpy(stored[k].numpy().copy()) for k in stored]}
                )
                carried = int(context.state[count_key]["count"])
        public_key = None
        if spec.secure:
            public_key = load_public_key(bytes(conf["public-key"]))
        pay = client_payload(
            update,
            threshold=spec.threshold,  # type: ignore[arg-type]
            error_feedback=ef,
            public_key=public_key,
            num_clients=cfg.num_clients if spec.secure else None,
        )
        if ef is not None and ef.residual is not None:
            context.state[ef_key] = ArrayRecord(
                {f"e{i}": Array(e.numpy()) for i, e in enumerate(ef.residual)}
            )
            context.state[count_key] = ConfigRecord({"count": carried + 1})
        data_bytes = pay.data
        payload = {"payload": Array(np.frombuffer(pay.data, dtype=np.uint8).copy())}
        metrics.update(
            {
                "plaintext-bytes": pay.plaintext_bytes,
                "float32-bytes": pay.float32_bytes,
                "encode-seconds": pay.encode_seconds,
                "sign-disagreement": pay.sign_disagreement,
                "ef-rounds": carried,
            }
        )
    kind = json.loads(str(conf["malformed"])).get(str(pid))
    if kind:
        rng = np.random.default_rng(_seed("malformed", exp_name, server_round, pid))
        if spec.payload == "float32" and kind != "method":
            frame = client_payload([u.float() for u in update]).data
            payload = _malform(kind, frame, spec.payload, rng)
        else:
            payload = _malform(kind, data_bytes, spec.payload, rng)
    content = RecordDict(
        {
            "arrays": ArrayRecord(payload),
            "metrics": MetricRecord(metrics),
            "meta": ConfigRecord({"experiment": exp_name, "method": method}),
        }
    )
    return Message(content=content, reply_to=msg)
