"""The Flower ``ServerApp``: runs several experiments (methods, attacks, faults) one after the
other inside one simulation, so that Ray starts once.

Evaluation happens on the server after every round (``Strategy.start(evaluate_fn=...)``): the
global model is scored on the union of the clients' test splits, each transformed with its own
client's training-split scaler. That is exactly what a federated evaluation round would
compute, pooled; the server reads the client data only because this is a simulation (the data
are regenerated from the seed in this process), and nothing of it enters training.

Results go to a JSON file, rewritten atomically after every experiment, and a progress line
(``@@gradkit-fed-progress <experiment> <round> <rounds>``) is printed on stdout after every round.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from gradkit.fed.experiment import Experiment, FedConfig, federated_data, minority_classes
from gradkit.fed.model import build_mlp, classification_metrics, get_weights, predict, set_weights
from gradkit.fed.strategy import EdgeDetectStrategy

__all__ = ["PROGRESS_MARK", "make_server_app", "write_json_atomic"]

PROGRESS_MARK = "@@gradkit-fed-progress"


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a temporary file, then ``os.replace``.

    Behaviour: a reader never sees a half-written file; numpy scalars are converted; NaN and
    inf are refused (``allow_nan=False``) so the file is strict JSON. The temporary file is
    removed if anything fails.

    Args:
        path: the destination (its directory must exist).
        data: JSON-serialisable data (numpy integer and floating scalars allowed).

    Raises:
        TypeError: a value is not JSON-serialisable.
        ValueError: a NaN or infinite float.

    Example:
        >>> import json, pathlib, tempfile
        >>> import numpy as np
        >>> from gradkit.fed.server import write_json_atomic
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp) / "out.json"
        ...     write_json_atomic(path, {"rounds": np.int64(3)})
        ...     json.loads(path.read_text())
        {'rounds': 3}
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, allow_nan=False, default=_jsonable)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def make_server_app(
    cfg: FedConfig, experiments: Sequence[Experiment], out_path: str | os.PathLike[str]
) -> ServerApp:
    """A Flower ``ServerApp`` whose main runs ``experiments`` in order and writes the results.

    Behaviour: for each experiment, an :class:`~gradkit.fed.strategy.EdgeDetectStrategy`
    runs its rounds from the same initial model; after every round the global model is
    evaluated on the union of the clients' test splits (each transformed with its own
    client's scaler), a progress line ``@@gradkit-fed-progress <experiment> <round>
    <rounds>`` is printed, and the results so far are written to ``out_path``
    (:func:`write_json_atomic`). A failed experiment records its error and the next one
    still runs. Used by :func:`gradkit.fed.simulation.run_federated`, which describes the
    result layout.

    Args:
        cfg: the shared data, model and training settings.
        experiments: the runs, with unique names.
        out_path: where the results JSON goes.

    Returns:
        The ``ServerApp``.

    Raises:
        ValueError: duplicate experiment names.

    Example:
        >>> from gradkit.fed.experiment import Experiment, FedConfig
        >>> from gradkit.fed.server import make_server_app
        >>> app = make_server_app(FedConfig(num_clients=4),
        ...                       [Experiment("ed", "edgedetect", rounds=2)], "out.json")
        >>> type(app).__name__
        'ServerApp'
    """
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"experiment names must be unique, got {names}")
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        clients, n_features, n_classes = federated_data(cfg)
        X_test = np.concatenate([c.X_test for c in clients])
        y_test = np.concatenate([c.y_test for c in clients])
        minority = minority_classes(clients, n_classes)
        model = build_mlp(n_features, n_classes, cfg.hidden, cfg.model_seed)
        shapes = [tuple(p.shape) for p in model.parameters()]
        results: dict[str, Any] = {
            "num_params": int(sum(p.numel() for p in model.parameters())),
            "num_features": n_features,
            "num_classes": n_classes,
            "minority_classes": minority,
            "test_size": len(y_test),
            "train_sizes": [len(c.y_train) for c in clients],
            "class_counts": np.bincount(
                np.concatenate([c.y_train for c in clients]), minlength=n_classes
            ).tolist(),
            "experiments": {},
        }
        for exp in experiments:
            evals: dict[int, dict[str, Any]] = {}

            def evaluate(
                server_round: int,
                arrays: ArrayRecord,
                exp: Experiment = exp,
                evals: dict[int, dict[str, Any]] = evals,
            ) -> MetricRecord:
                set_weights(model, [arrays[k].numpy() for k in arrays])
                m = classification_metrics(y_test, predict(model, X_test), n_classes, minority)
                evals[server_round] = {
                    "accuracy": m.accuracy,
                    "macro_f1": m.macro_f1,
                    "minority_f1": _finite(m.minority_f1),
                    "per_class_f1": [_finite(v) for v in m.per_class_f1],
                }
                print(f"{PROGRESS_MARK} {exp.name} {server_round} {exp.rounds}", flush=True)
                return MetricRecord({"accuracy": m.accuracy, "macro-f1": m.macro_f1})

            initial = get_weights(
                build_mlp(n_features, n_classes, cfg.hidden, cfg.model_seed + exp.seed)
            )
            key_holder = None
            if exp.spec.secure:
                from gradkit.comm import KeyHolder

                key_holder = KeyHolder(cfg.key_bits, min_clients=exp.min_replies)
            strategy = EdgeDetectStrategy(exp, cfg, shapes, key_holder=key_holder)
            error = None
            start = time.perf_counter()
            try:
                strategy.start(
                    grid=grid,
                    initial_arrays=ArrayRecord({f"w{i}": Array(w) for i, w in enumerate(initial)}),
                    num_rounds=exp.rounds,
                    timeout=strategy.round_timeout,
                    evaluate_fn=evaluate,
                )
            except Exception as err:  # recorded; the next experiment still runs
                error = f"{type(err).__name__}: {err}"
                print(traceback.format_exc(), file=sys.stderr, flush=True)
            results["experiments"][exp.name] = {
                "experiment": exp.to_dict(),
                "error": error,
                "seconds": time.perf_counter() - start,
                "rounds": [{**h, **evals.get(h["round"], {})} for h in strategy.history],
                "initial": evals.get(0),
            }
            write_json_atomic(out_path, results)

    return app
