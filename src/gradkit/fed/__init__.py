"""Federated learning on Flower 1.42 with gradkit.comm payloads (``pip install 'gradkit[fed]'``).

* :mod:`gradkit.fed.data` — CIC-IDS2017 MachineLearningCVE loader and cleaning, synthetic flows
  in the same schema, Dirichlet label-skew partition, per-client scaling fitted on the training
  split only (pandas; no Flower needed).
* :mod:`gradkit.fed.model` — the MLP, local SGD returning the model delta, metrics.
* :mod:`gradkit.fed.experiment` — methods, :class:`FedConfig`, :class:`Experiment`.
* :mod:`gradkit.fed.client`, :mod:`gradkit.fed.server`, :mod:`gradkit.fed.strategy` — the
  Flower ``ClientApp``, ``ServerApp`` and ``EdgeDetectStrategy(FedAvg)``.
* :mod:`gradkit.fed.simulation` — :func:`run_federated`: one local ``run_simulation`` (Ray) in
  a child process, telemetry off, every wait bounded.

See ``docs/fed.md``. Importing this package imports neither Flower nor pandas; the names below
are loaded on first use. It does set defaults (``os.environ.setdefault``, so an explicit user
setting wins) that keep Flower and Ray off the network when they are imported later:
``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_DISABLE_UPDATE_CHECK=1``, ``FLWR_TRACING_ENABLED=0``,
``RAY_USAGE_STATS_ENABLED=0``. (Flower reads them at import time; the child process of
:func:`run_federated` always sets them.)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

for _key, _value in (
    ("FLWR_TELEMETRY_ENABLED", "0"),
    ("FLWR_DISABLE_UPDATE_CHECK", "1"),
    ("FLWR_TRACING_ENABLED", "0"),
    ("RAY_USAGE_STATS_ENABLED", "0"),
):
    os.environ.setdefault(_key, _value)

__all__ = [
    "METHODS",
    "Experiment",
    "FedConfig",
    "FedRunError",
    "load_cicids2017",
    "run_federated",
    "synthetic_flows",
]

_LAZY = {
    "METHODS": "gradkit.fed.experiment",
    "Experiment": "gradkit.fed.experiment",
    "FedConfig": "gradkit.fed.experiment",
    "FedRunError": "gradkit.fed.simulation",
    "run_federated": "gradkit.fed.simulation",
    "load_cicids2017": "gradkit.fed.data",
    "synthetic_flows": "gradkit.fed.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradkit.fed' has no attribute {name!r}")
