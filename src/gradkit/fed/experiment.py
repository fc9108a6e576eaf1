"""What a federated run is made of: the methods, the data/training configuration and the
experiments (method + attack + injected faults), all plain data that travels as JSON to the
simulation process and as a Flower ``ConfigRecord`` to the clients (Ray actors share no module
globals with the driver, so nothing else is shared).

Methods (:data:`METHODS`):

========================  =============  ============  ====  ==========================
name                      payload        threshold     EF    server rule
========================  =============  ============  ====  ==========================
``fedavg``                float32        —             —     mean weighted by examples
``edgedetect``            1 bit/coord    median        no    majority vote
``edgedetect_ef``         1 bit/coord    median        yes   majority vote
``edgedetect_ef_mean``    1 bit/coord    median        yes   mean of reconstructions
``signsgd``               1 bit/coord    zero          no    majority vote
``signsgd_ef``            1 bit/coord    zero          yes   mean of reconstructions
``edgedetect_ef_he``      Paillier       median        yes   secure majority (sum of bits)
========================  =============  ============  ====  ==========================

``edgedetect_ef_he`` is ``edgedetect_ef`` with the votes summed under Paillier encryption
(:class:`gradkit.comm.SecureAggregator`, decrypted by a :class:`gradkit.comm.KeyHolder`); with
the same seeds its model equals the plaintext run's exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradkit.fed.data import ClientData, client_split, dirichlet_partition, synthetic_flows

__all__ = [
    "ATTACKS",
    "INVALID_AGGREGATE_POLICIES",
    "MALFORMED",
    "METHODS",
    "Experiment",
    "FedConfig",
    "MethodSpec",
    "federated_data",
]


@dataclass(frozen=True)
class MethodSpec:
    """How clients encode their update and how the server aggregates (see the module table).

    Attributes:
        payload: ``"float32"`` (FedAvg) or ``"binary"`` (1 bit per coordinate plus per-tensor
            scales, :func:`gradkit.comm.client_payload`).
        threshold: the binarisation threshold, ``"median"`` (EdgeDetect) or ``"zero"``
            (signSGD).
        error_feedback: clients keep an error-feedback residual
            (:class:`gradkit.comm.ErrorFeedback`).
        rule: the server rule, ``"mean"`` or ``"majority"`` (vote per coordinate).
        secure: votes are summed under Paillier encryption.

    Example:
        >>> from gradkit.fed.experiment import METHODS
        >>> METHODS["edgedetect_ef"]
        MethodSpec(payload='binary', threshold='median', error_feedback=True, rule='majority', secure=False)
    """

    payload: str  # "float32" | "binary"
    threshold: str = "median"
    error_feedback: bool = False
    rule: str = "mean"
    secure: bool = False


METHODS: dict[str, MethodSpec] = {
    "fedavg": MethodSpec("float32"),
    "edgedetect": MethodSpec("binary", "median", False, "majority"),
    "edgedetect_ef": MethodSpec("binary", "median", True, "majority"),
    "edgedetect_ef_mean": MethodSpec("binary", "median", True, "mean"),
    "signsgd": MethodSpec("binary", "zero", False, "majority"),
    "signsgd_ef": MethodSpec("binary", "zero", True, "mean"),
    "edgedetect_ef_he": MethodSpec("binary", "median", True, "majority", secure=True),
}

#: ``"signflip"``: attackers negate their update before compressing (so their bits flip);
#: ``"labelflip"``: attackers train on labels ``(y + 1) mod C``.
ATTACKS = ("none", "signflip", "labelflip")

#: Injected malformed replies: random bytes, a truncated frame, a frame for another model
#: (wrong shapes), or the other method's payload (float32 arrays for a 1-bit method and a 1-bit
#: frame for ``fedavg``).
MALFORMED = ("garbage", "truncated", "shape", "method")

#: What the server does when the decrypted secure-vote aggregate is out of range (a slot holding
#: more votes than clients, which a malicious or faulty client can cause: range proofs are not
#: implemented): ``"discard_round"`` keeps the model, records the round as discarded and logs a
#: warning; ``"raise"`` stops the experiment with :class:`~gradkit.fed.strategy.FedRoundError`.
INVALID_AGGREGATE_POLICIES = ("discard_round", "raise")


@dataclass(frozen=True)
class FedConfig:
    """Data, model and training settings shared by all experiments of one simulation.

    Validated on construction; travels as JSON (:func:`config_to_dict`,
    :func:`config_from_json`) to the simulation process.

    Attributes:
        num_clients: simulated Flower SuperNodes (one Dirichlet partition each; ≥ 2).
        n_samples: synthetic flows generated before cleaning (``data_path`` unset).
        data_path: CIC-IDS2017 MachineLearningCVE CSV file or directory instead of synthetic.
        data_seed: seed of the synthetic data, the partition and the client splits.
        alpha: Dirichlet concentration of the label skew.
        min_size: smallest number of samples per client.
        test_fraction: share of each client's data held out as its test split.
        hidden: MLP width.
        model_seed: the MLP's initialisation seed.
        local_steps: local SGD steps per round (the update is ``w_start − w_end``).
        batch_size: local minibatch size.
        client_lr: local SGD learning rate.
        server_lr: the server applies ``w ← w − server_lr · aggregate``.
        round_timeout: seconds the server waits for the replies of one round
            (``Strategy.start(timeout=...)``); missing replies count as failures.
        node_timeout: seconds to wait for enough connected nodes before a round.
        key_bits: Paillier modulus size for the secure method.
        num_cpus: CPUs Ray may use; each client actor takes one.

    Raises:
        ValueError: fewer than 2 clients, a non-positive learning rate, timeout or ``alpha``,
            or a size below 1.

    Example:
        >>> from gradkit.fed.experiment import FedConfig, config_from_json, config_to_dict
        >>> import json
        >>> cfg = FedConfig(num_clients=4, n_samples=2000, min_size=20)
        >>> config_from_json(json.dumps(config_to_dict(cfg))) == cfg
        True
    """

    num_clients: int = 20
    n_samples: int = 60_000
    data_path: str = ""
    data_seed: int = 0
    alpha: float = 0.5
    min_size: int = 50
    test_fraction: float = 0.2
    hidden: int = 64
    model_seed: int = 0
    local_steps: int = 5
    batch_size: int = 64
    client_lr: float = 0.1
    server_lr: float = 1.0
    round_timeout: float = 120.0
    node_timeout: float = 60.0
    key_bits: int = 2048
    num_cpus: int = 2

    def __post_init__(self) -> None:
        if self.num_clients < 2:
            raise ValueError(f"num_clients must be >= 2, got {self.num_clients}")
        for name in ("round_timeout", "node_timeout", "server_lr", "client_lr", "alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("local_steps", "batch_size", "hidden", "num_cpus", "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def data_key(self) -> tuple[Any, ...]:
        """The fields that determine the client data (the cache key of
        :func:`federated_data`)."""
        return (
            self.num_clients,
            self.n_samples,
            self.data_path,
            self.data_seed,
            self.alpha,
            self.min_size,
            self.test_fraction,
        )


@dataclass(frozen=True)
class Experiment:
    """One strategy run inside a simulation: a method, an attack and injected faults.

    Validated on construction; travels as a dict (:meth:`to_dict`, :meth:`from_dict`) to the
    simulation process and as a flat Flower ``ConfigRecord`` (:meth:`to_config`) to clients.

    Attributes:
        name: unique label (results are keyed by it).
        method: a key of :data:`METHODS`.
        rounds: federated rounds.
        attack: one of :data:`ATTACKS`.
        attackers: the partition ids that attack.
        attack_scale: attackers multiply their (negated) update by this.
        fail_partitions: these clients raise ``RuntimeError`` (in ``fail_rounds``).
        fail_rounds: the rounds in which they fail (all rounds when empty).
        malformed: partition id → kind from :data:`MALFORMED`, sent in every round.
        min_replies: fewest valid replies a round needs; fewer → the round fails with
            :class:`~gradkit.fed.strategy.FedRoundError`.
        client_lr: overrides :class:`FedConfig`'s ``client_lr`` for this experiment.
        server_lr: overrides :class:`FedConfig`'s ``server_lr`` for this experiment.
        seed: added to ``FedConfig.model_seed`` (initial model) and to the clients' minibatch
            seeds; the data and the partition stay those of ``FedConfig.data_seed``.
        slow: partition id → seconds the client sleeps before replying (to exercise the round
            timeout).
        round_timeout: overrides ``FedConfig.round_timeout`` for this experiment.
        on_invalid_aggregate: the secure method's policy for an out-of-range decrypted
            aggregate (:data:`INVALID_AGGREGATE_POLICIES`): ``"discard_round"`` (default) or
            ``"raise"``.

    Raises:
        ValueError: an unknown method, attack, malformed kind or ``on_invalid_aggregate``
            policy, ``rounds`` or ``min_replies`` below 1, or a non-positive override.

    Example:
        >>> from gradkit.fed.experiment import Experiment
        >>> exp = Experiment("ef", "edgedetect_ef", rounds=10, attack="signflip", attackers=(3,))
        >>> exp.spec.error_feedback, Experiment.from_dict(exp.to_dict()) == exp
        (True, True)
    """

    name: str
    method: str
    rounds: int
    attack: str = "none"
    attackers: tuple[int, ...] = ()
    attack_scale: float = 1.0
    fail_partitions: tuple[int, ...] = ()
    fail_rounds: tuple[int, ...] = ()
    malformed: Mapping[int, str] = field(default_factory=dict)
    min_replies: int = 2
    client_lr: float | None = None
    server_lr: float | None = None
    seed: int = 0
    slow: Mapping[int, float] = field(default_factory=dict)
    round_timeout: float | None = None
    on_invalid_aggregate: str = "discard_round"

    def __post_init__(self) -> None:
        for name in ("client_lr", "server_lr", "round_timeout"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.attack not in ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}; known: {', '.join(ATTACKS)}")
        bad = sorted(set(self.malformed.values()) - set(MALFORMED))
        if bad:
            raise ValueError(f"unknown malformed kind(s) {bad}; known: {', '.join(MALFORMED)}")
        if self.on_invalid_aggregate not in INVALID_AGGREGATE_POLICIES:
            raise ValueError(
                f"Invalid on_invalid_aggregate: {self.on_invalid_aggregate!r} (must be one of "
                f"{', '.join(map(repr, INVALID_AGGREGATE_POLICIES))})"
            )
        if self.rounds < 1 or self.min_replies < 1:
            raise ValueError(
                f"rounds and min_replies must be >= 1, got {self.rounds}, {self.min_replies}"
            )

    @property
    def spec(self) -> MethodSpec:
        """The :class:`MethodSpec` of :attr:`method`."""
        return METHODS[self.method]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (mapping keys as strings); :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        out["malformed"] = {str(k): v for k, v in self.malformed.items()}
        out["slow"] = {str(k): float(v) for k, v in self.slow.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        """The experiment from :meth:`to_dict`'s output (validated again)."""
        d = dict(data)
        for key in ("attackers", "fail_partitions", "fail_rounds"):
            d[key] = tuple(int(v) for v in d.get(key, ()))
        d["malformed"] = {int(k): str(v) for k, v in d.get("malformed", {}).items()}
        d["slow"] = {int(k): float(v) for k, v in d.get("slow", {}).items()}
        return cls(**d)

    def to_config(self) -> dict[str, Any]:
        """Flat ``ConfigRecord``-compatible values (ints, floats, str, lists of int)."""
        return {
            "experiment": self.name,
            "method": self.method,
            "attack": self.attack,
            "attackers": json.dumps(list(self.attackers)),
            "attack-scale": float(self.attack_scale),
            "fail-partitions": json.dumps(list(self.fail_partitions)),
            "fail-rounds": json.dumps(list(self.fail_rounds)),
            "malformed": json.dumps({str(k): v for k, v in self.malformed.items()}),
            "seed": int(self.seed),
            "slow": json.dumps({str(k): float(v) for k, v in self.slow.items()}),
            "client-lr": -1.0 if self.client_lr is None else float(self.client_lr),
        }


def config_to_dict(cfg: FedConfig) -> dict[str, Any]:
    """``cfg`` as a JSON-compatible dict (see the :class:`FedConfig` example)."""
    return dataclasses.asdict(cfg)


def config_from_json(text: str) -> FedConfig:
    """The :class:`FedConfig` from the JSON of :func:`config_to_dict` (validated again)."""
    return FedConfig(**json.loads(text))


@functools.lru_cache(maxsize=2)
def _federated_data(key: tuple[Any, ...]) -> tuple[tuple[ClientData, ...], int, int]:
    num_clients, n_samples, data_path, seed, alpha, min_size, test_fraction = key
    if data_path:
        from gradkit.fed.data import load_cicids2017

        data = load_cicids2017(data_path)
    else:
        data = synthetic_flows(n_samples, seed=seed)
    parts = dirichlet_partition(data.y, num_clients, alpha, seed=seed, min_size=min_size)
    clients = tuple(
        client_split(data.X, data.y, p, test_fraction=test_fraction, seed=seed * 1000 + k)
        for k, p in enumerate(parts)
    )
    return clients, data.X.shape[1], len(data.class_names)


def federated_data(cfg: FedConfig) -> tuple[tuple[ClientData, ...], int, int]:
    """The clients' data for ``cfg``: ``(clients, num_features, num_classes)``.

    Behaviour: synthetic flows (:func:`gradkit.fed.data.synthetic_flows`) or the CIC-IDS2017
    files at ``cfg.data_path``, split by :func:`gradkit.fed.partition.dirichlet_partition`,
    then per client by :func:`gradkit.fed.partition.client_split`. Cached per process on
    :meth:`FedConfig.data_key` (each Ray actor builds it once from the seed; nothing is
    shipped between processes).

    Args:
        cfg: the configuration.

    Returns:
        The clients' :class:`~gradkit.fed.partition.ClientData`, the number of features and
        the number of classes.

    Example:
        >>> from gradkit.fed.experiment import FedConfig, federated_data
        >>> clients, f, c = federated_data(FedConfig(num_clients=3, n_samples=1500, min_size=20))
        >>> len(clients), c, clients[0].X_train.shape[1] == f
        (3, 8, True)
    """
    return _federated_data(cfg.data_key())


def minority_classes(
    clients: Sequence[ClientData], num_classes: int, share: float = 0.02
) -> list[int]:
    """Classes with fewer than ``share`` of all training samples (the minority-F1 classes).

    Args:
        clients: every client's data.
        num_classes: the number of classes.
        share: the threshold, as a share of all training samples.

    Returns:
        The class indices, ascending (classes absent from every client are left out).

    Example:
        >>> from gradkit.fed.experiment import FedConfig, federated_data, minority_classes
        >>> clients, _, c = federated_data(FedConfig(num_clients=3, n_samples=1500, min_size=20))
        >>> 0 in minority_classes(clients, c)                    # BENIGN is the majority
        False
    """
    counts = np.sum([np.bincount(c.y_train, minlength=num_classes) for c in clients], axis=0)
    total = float(np.sum(counts))
    return [k for k in range(num_classes) if 0 < counts[k] < share * total]
