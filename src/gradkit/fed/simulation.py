"""Run experiments in one local Flower simulation (``flwr.simulation.run_simulation``, Ray
backend), in a child process with an overall timeout.

The child process (``python -m gradkit.fed.simulation spec.json out.json``) turns telemetry and
update checks off *before* Flower is imported (``FLWR_TELEMETRY_ENABLED=0``,
``FLWR_DISABLE_UPDATE_CHECK=1``, ``RAY_USAGE_STATS_ENABLED=0``; Ray runs on the local machine
with the dashboard off), starts one simulation with ``FedConfig.num_clients`` SuperNodes, and
the ServerApp writes the results to ``out.json`` atomically. The parent waits at most
``timeout`` seconds, then kills the child's whole process group (Ray workers included), so no
wait in a run is unbounded: a round is bounded by ``FedConfig.round_timeout``, the wait for
nodes by ``FedConfig.node_timeout``, and the whole run by ``timeout``.

See :func:`run_federated` for an example.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradkit.fed.experiment import Experiment, FedConfig, config_to_dict

__all__ = ["QUIET_ENV", "FedRunError", "run_federated"]

#: Environment for the simulation process: no telemetry, no update check, no Ray usage stats.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_TRACING_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_DEDUP_LOGS": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

PROGRESS_MARK = "@@gradkit-fed-progress"


class FedRunError(RuntimeError):
    """The simulation process failed, timed out, or wrote no results.

    The message quotes the end of the child's log (Flower and Ray output).
    """


def _require(*, secure: bool) -> None:
    """Raise a clear ``ImportError`` before starting the child when a dependency is missing."""
    import importlib.util

    needed = ["flwr", "ray", "pandas"] + (["phe", "gmpy2"] if secure else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"gradkit.fed needs {', '.join(missing)} (Flower's simulation engine"
            f"{' and Paillier' if secure else ''}): pip install 'gradkit[fed]'"
        )


def run_federated(
    cfg: FedConfig,
    experiments: Sequence[Experiment],
    *,
    timeout: float = 900.0,
    on_round: Callable[[str, int, int], None] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run ``experiments`` in one local Flower simulation and return the results.

    Behaviour: a child process (``python -m gradkit.fed.simulation``) turns Flower's
    telemetry, update checks and tracing and Ray's usage stats off before Flower is imported,
    starts ``flwr.simulation.run_simulation`` (Ray backend) with ``cfg.num_clients``
    SuperNodes, the :mod:`gradkit.fed.client` app and :func:`gradkit.fed.server.make_server_app`,
    and writes the results atomically. The parent follows the progress lines and kills the
    child's whole process group (Ray workers included) after ``timeout`` seconds, so no wait
    is unbounded. Reference implementation: Flower 1.42's simulation engine; the method
    itself is :class:`gradkit.fed.strategy.EdgeDetectStrategy`.

    Args:
        cfg: data, model and training settings.
        experiments: run in order; an experiment whose round fails (e.g. too few valid
            replies) gets its ``error`` set and the next one still runs.
        timeout: seconds for the whole simulation, Ray start-up included.
        on_round: called with ``(experiment, round, rounds)`` after each evaluated round
            (round 0 is the initial model).
        log_path: where to keep the child's stderr (Flower and Ray logs); a temporary file
            otherwise, quoted in errors.

    Returns:
        ``{"num_params", "num_features", "num_classes", "minority_classes", "test_size",
        "train_sizes", "class_counts", "wall_seconds", "experiments": {name: {"experiment",
        "error", "seconds", "initial", "rounds": [...]}}}``; each round dict holds the byte
        counts, failures and timings of :class:`~gradkit.fed.strategy.EdgeDetectStrategy`
        plus ``accuracy``, ``macro_f1``, ``minority_f1`` and ``per_class_f1``.

    Raises:
        ImportError: Flower, Ray or pandas (or, for a secure experiment, phe/gmpy2) is not
            installed; the message names them and ``pip install 'gradkit[fed]'``.
        ValueError: no experiments, duplicate names, or a non-positive ``timeout``.
        FedRunError: the child failed or exceeded ``timeout`` (the message quotes the end of
            its log).

    Example:
        A run takes about half a minute (mostly Ray start-up), so it is not run here:

        >>> from gradkit.fed.experiment import Experiment, FedConfig
        >>> from gradkit.fed.simulation import run_federated
        >>> out = run_federated(FedConfig(num_clients=4, n_samples=4000),
        ...                     [Experiment("ed", "edgedetect_ef", rounds=3)])  # doctest: +SKIP
        >>> out["experiments"]["ed"]["rounds"][-1]["accuracy"]  # doctest: +SKIP
        0.9...
        >>> run_federated(FedConfig(num_clients=4), [])
        Traceback (most recent call last):
        ...
        ValueError: run_federated needs at least one experiment
    """
    if not experiments:
        raise ValueError("run_federated needs at least one experiment")
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"experiment names must be unique, got {names}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    _require(secure=any(e.spec.secure for e in experiments))
    with tempfile.TemporaryDirectory(prefix="gradkit-fed-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(
            json.dumps(
                {"config": config_to_dict(cfg), "experiments": [e.to_dict() for e in experiments]}
            )
        )
        log = Path(log_path) if log_path is not None else Path(tmp) / "simulation.log"
        env = {**os.environ, **QUIET_ENV}
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        start = time.monotonic()
        with open(log, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gradkit.fed.simulation", str(spec_path), str(out_path)],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=tmp,
                text=True,
                start_new_session=True,
            )
            try:
                _follow(proc, start + timeout, on_round)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise FedRunError(
                    f"the simulation exceeded its timeout of {timeout:g} s and was killed; "
                    f"log tail:\n{_tail(log)}"
                ) from None
            finally:
                if proc.poll() is None:
                    _kill(proc)
        wall = time.monotonic() - start
        if proc.returncode != 0 or not out_path.is_file():
            raise FedRunError(
                f"the simulation process exited with code {proc.returncode}"
                + ("" if out_path.is_file() else " and wrote no results")
                + f"; log tail:\n{_tail(log)}"
            )
        results = json.loads(out_path.read_text())
        missing = [n for n in names if n not in results["experiments"]]
        if missing:
            raise FedRunError(f"no results for experiment(s) {missing}; log tail:\n{_tail(log)}")
        results["wall_seconds"] = wall
        return dict(results)


def _follow(
    proc: subprocess.Popen[str], deadline: float, on_round: Callable[[str, int, int], None] | None
) -> None:
    """Read the child's progress lines until it exits or ``deadline`` passes."""
    import selectors

    if proc.stdout is None:  # pragma: no cover - Popen(stdout=PIPE) always sets it
        raise FedRunError("no stdout pipe to the simulation process")
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        if sel.select(timeout=min(left, 1.0)):
            line = proc.stdout.readline()
            if not line:  # EOF: the child closed stdout (exited)
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                return
            if line.startswith(PROGRESS_MARK) and on_round is not None:
                _, name, rnd, total = line.split()
                on_round(name, int(rnd), int(total))
        elif proc.poll() is not None:
            return


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _worker(spec_path: str, out_path: str) -> int:
    """Child-process entry: run the simulation described in ``spec_path``."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    spec = json.loads(Path(spec_path).read_text())
    cfg = FedConfig(**spec["config"])
    experiments = [Experiment.from_dict(e) for e in spec["experiments"]]

    import torch

    torch.set_num_threads(1)
    from flwr.simulation import run_simulation

    from gradkit.fed.client import app as client_app
    from gradkit.fed.server import make_server_app

    server_app = make_server_app(cfg, experiments, out_path)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=cfg.num_clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": cfg.num_cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "log_to_driver": True,
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
