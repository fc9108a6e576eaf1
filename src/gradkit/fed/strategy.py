"""``EdgeDetectStrategy``: a Flower ``FedAvg`` whose ``aggregate_train`` understands gradkit.comm
payloads (FedAvg's default would average the packed bytes), validates every reply on its own,
counts bytes from the real messages, and bounds every wait.

Per round:

1. ``configure_train`` waits (at most ``FedConfig.node_timeout`` s) for enough connected nodes,
   then sends the model, the experiment's config and — for the secure method — the Paillier
   public key. It remembers how many messages went out and their size (downlink bytes).
2. ``aggregate_train`` splits the replies into *valid* and *failures*:

   * a reply carrying an error (the client raised; Flower turns it into an error message),
   * a reply that does not validate: wrong experiment or method tag, wrong array keys or
     dtype, a frame that does not decode (bad magic/CRC/truncated), a frame for another model
     (shapes), a plaintext frame for the secure method or the reverse, a wrong threshold mode,
     non-finite float32 values,
   * a message that never came back within ``round_timeout`` (counted as ``sent − received``).

   Each failure is recorded with its node id and reason (``history``). If fewer than
   ``Experiment.min_replies`` valid replies remain, :class:`FedRoundError` is raised: the
   round is rejected, never padded.
3. The valid payloads are aggregated (float32 weighted mean; majority vote or mean of
   reconstructions via :func:`gradkit.comm.majority_vote` / :func:`~gradkit.comm.mean_reconstruction`;
   for the secure method :class:`gradkit.comm.SecureAggregator` multiplies the ciphertexts and
   the :class:`gradkit.comm.KeyHolder` decrypts only the aggregate) and the server applies
   ``w ← w − server_lr · d``.
4. Secure method only: a decrypted aggregate that honest clients cannot produce (a slot holding
   more votes than clients, :class:`gradkit.comm.InvalidAggregateError`) cannot be traced to a
   client, since every payload is valid on its own (the ciphertexts hide the votes, and range
   proofs are not implemented). With ``Experiment.on_invalid_aggregate="discard_round"``
   (default) the round is discarded: the model is kept, the round's ``history`` entry has
   ``discarded=True`` and a ``discard_reason`` naming the round, the slot and the cause, and a
   warning is logged (logger ``gradkit.fed.strategy``). ``"raise"`` stops the experiment with
   :class:`FedRoundError` carrying the same message.

Byte counts per round (sums over the valid replies): ``payload_bytes`` (the update's bytes:
the frame, or ``4d`` for float32), ``plaintext_bytes`` (the plaintext frame size; ``4d`` for
float32), ``array_bytes`` (``ArrayRecord.count_bytes()``: payload + ``.npy`` headers + keys),
``wire_bytes`` (the whole reply ``RecordDict`` as Flower transfers it: the sum of
``len(obj.deflate())`` over its tree of inflatable objects).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy import FedAvg

from gradkit.comm import (
    InvalidAggregateError,
    SecureAggregator,
    decode_frame,
    majority_vote,
    mean_reconstruction,
)
from gradkit.fed.experiment import Experiment, FedConfig, config_to_dict

__all__ = ["EdgeDetectStrategy", "FedRoundError", "tree_bytes"]

logger = logging.getLogger(__name__)


class FedRoundError(RuntimeError):
    """A round could not be aggregated (too few valid replies, or no nodes in time).

    The message lists every failure with its node id and reason; the round is rejected, never
    padded with missing replies.
    """


def tree_bytes(obj: Any) -> int:
    """Bytes Flower transfers for an inflatable object (a ``RecordDict``, ``ArrayRecord``, ...).

    Behaviour: ``len(obj.deflate())`` summed over the object and all its descendants
    (``children``), which is how Flower 1.42 serialises a message's content for transfer.

    Args:
        obj: a Flower inflatable object.

    Returns:
        The byte count.

    Example:
        >>> import numpy as np
        >>> from flwr.app import Array, ArrayRecord
        >>> from gradkit.fed.strategy import tree_bytes
        >>> record = ArrayRecord({"payload": Array(np.zeros(1000, dtype=np.uint8))})
        >>> tree_bytes(record) > 1000
        True
    """
    total = len(obj.deflate())
    for child in (obj.children or {}).values():
        total += tree_bytes(child)
    return total


def _short(reason: str, limit: int = 300) -> str:
    """The client's own exception message out of Flower/Ray's traceback text."""
    text = str(reason)
    if "Message: " in text:
        text = text.rsplit("Message: ", 1)[1]
    text = text.strip().rstrip("'>").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Rejected(ValueError):
    pass


class EdgeDetectStrategy(FedAvg):
    r"""Flower ``FedAvg`` for gradkit.comm payloads: EdgeDetect, signSGD and FedAvg rounds.

    Math: client :math:`k` sends its pseudo-gradient :math:`u_k = w - w_k^{local}` (float32 for
    FedAvg), or the 1-bit code :math:`b_k = [u_k + e_k > \tau_k]` with per-tensor scales (the
    median threshold of EdgeDetect or zero for signSGD; :math:`e_k` is the error-feedback
    residual, :func:`gradkit.comm.client_payload`). The server aggregates the valid replies
    into :math:`d`: the example-weighted mean of :math:`u_k` (FedAvg); the majority vote per
    coordinate, :math:`d = \operatorname{median}_k(\alpha_k)\,\operatorname{sign}(\sum_k (2b_k - 1))`, ties to 0
    (:func:`gradkit.comm.majority_vote`); or the mean of the reconstructions
    (:func:`gradkit.comm.mean_reconstruction`); for the secure method the vote counts are
    summed under Paillier encryption and only the aggregate is decrypted. Then
    :math:`w \leftarrow w - \eta_s d` with :math:`\eta_s` = ``server_lr``.

    Papers: EdgeDetect, N. I. S. Mohammad, arXiv:2604.14663 (2026); signSGD with majority
    vote, Bernstein et al., arXiv:1810.05291; error feedback, Karimireddy et al.,
    arXiv:1901.09847; FedAvg, McMahan et al., arXiv:1602.05629. Reference implementation:
    Flower 1.42's ``FedAvg`` (the parent class: sampling, configuration, the server loop);
    EdgeDetect has no public code, so its rules follow the paper's abstract (see
    ``docs/comm.md``). Deviations from ``FedAvg``: ``aggregate_train`` decodes and validates
    every reply on its own (FedAvg would average the packed bytes), a reply that fails
    validation or a client error is recorded as a failure rather than aborting the run,
    fewer than ``Experiment.min_replies`` valid replies raise :class:`FedRoundError`, the
    wait for nodes is bounded by ``FedConfig.node_timeout``, and bytes are counted from the
    real messages. ``history`` holds one dict per round (byte counts, failures, timings).

    Args:
        experiment: the run: method, attack, injected faults, ``min_replies``.
        cfg: the shared data, model and training settings.
        shapes: the model's parameter shapes (replies for another model are rejected).
        key_holder: the :class:`gradkit.comm.KeyHolder` of the secure method (required for
            it, ignored otherwise).

    Raises:
        ValueError: a secure method without ``key_holder``.

    An out-of-range secure aggregate (a malicious or faulty client; see step 4 of the module
    docstring) discards the round and keeps the model (``Experiment.on_invalid_aggregate``).

    Example:
        >>> from gradkit.fed.experiment import Experiment, FedConfig
        >>> from gradkit.fed.strategy import EdgeDetectStrategy
        >>> strategy = EdgeDetectStrategy(Experiment("ed", "edgedetect_ef", rounds=3),
        ...                               FedConfig(num_clients=4), shapes=[(8, 4), (8,)])
        >>> strategy.numel, strategy.spec.rule, strategy.history
        (40, 'majority', [])
    """

    def __init__(
        self,
        experiment: Experiment,
        cfg: FedConfig,
        shapes: Sequence[tuple[int, ...]],
        *,
        key_holder: Any = None,
    ) -> None:
        n = cfg.num_clients
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=n,
            min_evaluate_nodes=0,
            min_available_nodes=n,
        )
        self.experiment = experiment
        self.cfg = cfg
        self.spec = experiment.spec
        self.shapes = [tuple(s) for s in shapes]
        self.numel = int(sum(int(np.prod(s)) for s in self.shapes))
        if self.spec.secure and key_holder is None:
            raise ValueError(f"method {experiment.method!r} needs a key_holder")
        self.key_holder = key_holder
        self.history: list[dict[str, Any]] = []
        self.round_timeout = experiment.round_timeout or cfg.round_timeout
        self._weights: list[np.ndarray] = []
        self._sent = 0
        self._downlink = 0

    # -- configure ----------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: Any, config: Any, grid: Any
    ) -> Iterable[Any]:
        """Wait (bounded) for every node, then send the model, the config and any public key.

        Raises:
            FedRoundError: fewer than ``num_clients`` nodes connected within
                ``FedConfig.node_timeout`` seconds.
        """
        deadline = time.monotonic() + self.cfg.node_timeout
        while len(list(grid.get_node_ids())) < self.min_available_nodes:
            if time.monotonic() > deadline:
                raise FedRoundError(
                    f"round {server_round}: only {len(list(grid.get_node_ids()))} nodes "
                    f"connected after {self.cfg.node_timeout:g} s, need "
                    f"{self.min_available_nodes}"
                )
            time.sleep(0.2)
        self._weights = [arrays[k].numpy() for k in arrays]
        conf = dict(self.experiment.to_config())
        conf["fed-config"] = json.dumps(config_to_dict(self.cfg))
        if self.spec.secure:
            conf["public-key"] = self.key_holder.public_key_bytes()
        config = ConfigRecord({**dict(config), **conf})
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent = len(messages)
        self._downlink = sum(tree_bytes(m.content) for m in messages)
        return messages

    # -- validation ---------------------------------------------------------------------
    def _payload(self, content: Any) -> tuple[Any, dict[str, float], int]:
        """Validate one reply; returns (decoded payload, metrics, payload bytes)."""
        for key in ("arrays", "metrics", "meta"):
            if key not in content:
                raise _Rejected(f"reply has no {key!r} record")
        meta = content["meta"]
        if meta.get("experiment") != self.experiment.name:
            raise _Rejected(
                f"reply for experiment {meta.get('experiment')!r}, expected "
                f"{self.experiment.name!r}"
            )
        if meta.get("method") != self.experiment.method:
            raise _Rejected(
                f"reply for method {meta.get('method')!r}, expected {self.experiment.method!r}"
            )
        metrics = {k: float(v) for k, v in content["metrics"].items()}
        if not metrics.get("num-examples", 0) > 0:
            raise _Rejected("metric 'num-examples' missing or not positive")
        arrays = content["arrays"]
        keys = list(arrays)
        if self.spec.payload == "float32":
            expected = [f"u{i}" for i in range(len(self.shapes))]
            if keys != expected:
                raise _Rejected(f"float32 payload keys {keys}, expected {expected}")
            out = []
            for k, shape in zip(keys, self.shapes, strict=True):
                a = arrays[k].numpy()
                if a.dtype != np.float32 or tuple(a.shape) != shape:
                    raise _Rejected(
                        f"array {k!r} is {a.dtype}{list(a.shape)}, expected float32{list(shape)}"
                    )
                if not np.isfinite(a).all():
                    raise _Rejected(f"array {k!r} has non-finite values")
                out.append(a)
            return out, metrics, 4 * self.numel
        if keys != ["payload"]:
            raise _Rejected(f"1-bit payload keys {keys}, expected ['payload']")
        a = arrays["payload"].numpy()
        if a.dtype != np.uint8 or a.ndim != 1:
            raise _Rejected(f"payload is {a.dtype}{list(a.shape)}, expected 1-D uint8")
        data = a.tobytes()
        try:
            if self.spec.secure:
                SecureAggregator(self.key_holder.public_key).aggregate(
                    [data], expected_shapes=self.shapes
                )
                return data, metrics, len(data)
            update = decode_frame(data, expected_shapes=self.shapes)
        except ValueError as err:
            raise _Rejected(f"bad frame: {err}") from err
        if update.threshold != self.spec.threshold:
            raise _Rejected(
                f"frame threshold {update.threshold!r}, method uses {self.spec.threshold!r}"
            )
        return update, metrics, len(data)

    # -- aggregation --------------------------------------------------------------------
    def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
        """Validate each reply, aggregate the valid ones and apply the server step.

        Returns:
            ``(arrays, metrics)``: the new global weights and the round's metrics.

        Raises:
            FedRoundError: fewer than ``Experiment.min_replies`` valid replies (the message
                lists every failure and its reason), or an out-of-range secure aggregate under
                ``on_invalid_aggregate="raise"`` (otherwise that round is discarded and the
                current weights are returned unchanged).
        """
        replies = list(replies)
        failures: list[str] = []
        valid: list[tuple[Any, dict[str, float], int, int, int]] = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                failures.append(f"node {node}: client error: {_short(msg.error.reason)}")
                continue
            try:
                payload, metrics, nbytes = self._payload(msg.content)
            except _Rejected as err:
                failures.append(f"node {node}: rejected: {err}")
                continue
            valid.append(
                (
                    payload,
                    metrics,
                    nbytes,
                    int(msg.content["arrays"].count_bytes()),
                    tree_bytes(msg.content),
                )
            )
        # Aggregate in partition order: Ray returns replies in completion order, and the
        # float32 sums of the "mean" rule depend on the order (majority vote does not).
        valid.sort(key=lambda v: v[1].get("partition-id", 0.0))
        missing = self._sent - len(replies)
        failures += [f"no reply within {self.round_timeout:g} s"] * max(missing, 0)
        entry: dict[str, Any] = {
            "round": server_round,
            "sent": self._sent,
            "ok": len(valid),
            "failed": len(failures),
            "failures": failures,
            "downlink_bytes": self._downlink,
        }
        self.history.append(entry)
        if len(valid) < self.experiment.min_replies:
            raise FedRoundError(
                f"experiment {self.experiment.name!r}, round {server_round}: {len(valid)} "
                f"valid replies of {self._sent} sent, need {self.experiment.min_replies}; "
                f"failures: {'; '.join(failures) or 'none'}"
            )
        start = time.perf_counter()
        discard_reason = None
        try:
            direction = self._aggregate([v[0] for v in valid], [v[1] for v in valid])
        except InvalidAggregateError as err:
            where = "" if err.slot is None else f" (coordinate {err.slot})"
            discard_reason = (
                f"experiment {self.experiment.name!r}, round {server_round}: the decrypted "
                f"secure-vote aggregate of {len(valid)} valid replies is out of range{where}, "
                "so at least one client encrypted a value outside 0/1 (a malicious or faulty "
                "client: every payload was valid on its own, the votes are hidden by the "
                f"encryption and range proofs are not implemented). {err}"
            )
            if self.experiment.on_invalid_aggregate == "raise":
                entry.update({"discarded": True, "discard_reason": discard_reason})
                raise FedRoundError(f"{discard_reason} (on_invalid_aggregate='raise')") from err
            logger.warning(
                "%s Round discarded, model kept (on_invalid_aggregate='discard_round').",
                discard_reason,
            )
        agg_seconds = time.perf_counter() - start
        lr = self.cfg.server_lr
        if discard_reason is None:
            new = [
                (w - lr * d).astype(np.float32)
                for w, d in zip(self._weights, direction, strict=True)
            ]
        else:
            new = [w.astype(np.float32) for w in self._weights]
        ms = [v[1] for v in valid]
        n_ex = np.array([m["num-examples"] for m in ms])
        entry.update(
            {
                "discarded": discard_reason is not None,
                **({} if discard_reason is None else {"discard_reason": discard_reason}),
                "payload_bytes": int(sum(v[2] for v in valid)),
                "plaintext_bytes": int(sum(m["plaintext-bytes"] for m in ms)),
                "float32_bytes": int(sum(m["float32-bytes"] for m in ms)),
                "array_bytes": int(sum(v[3] for v in valid)),
                "wire_bytes": int(sum(v[4] for v in valid)),
                "encode_seconds": float(sum(m["encode-seconds"] for m in ms)),
                "aggregate_seconds": agg_seconds,
                "train_loss": float(np.average([m["train-loss"] for m in ms], weights=n_ex)),
                "sign_disagreement": float(np.mean([m["sign-disagreement"] for m in ms])),
                "ef_rounds": sorted({int(m["ef-rounds"]) for m in ms}),
                "partitions": sorted(int(m["partition-id"]) for m in ms),
            }
        )
        arrays = ArrayRecord({f"w{i}": Array(w) for i, w in enumerate(new)})
        return arrays, MetricRecord(
            {"train-loss": entry["train_loss"], "discarded": int(discard_reason is not None)}
        )

    def _aggregate(self, payloads: list[Any], metrics: list[dict[str, float]]) -> list[Any]:
        if self.spec.payload == "float32":
            weights = np.array([m["num-examples"] for m in metrics], dtype=np.float64)
            weights /= weights.sum()
            return [
                sum(wk * p[i].astype(np.float64) for wk, p in zip(weights, payloads, strict=True))
                for i in range(len(self.shapes))
            ]
        if self.spec.secure:
            agg = SecureAggregator(self.key_holder.public_key).aggregate(
                payloads, expected_shapes=self.shapes
            )
            result = self.key_holder.decrypt_aggregate(agg, expected_shapes=self.shapes)
        elif self.spec.rule == "majority":
            result = majority_vote(payloads)
        else:
            result = mean_reconstruction(payloads)
        return [t.double().numpy() for t in result.update]
