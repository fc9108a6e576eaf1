"""``gradkit env``: versions, platform, CPU and CUDA facts to paste into bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

__all__ = ["OPTIONAL_PACKAGES", "add_parser", "gather_env", "render_env"]

#: Optional dependencies whose versions are reported (distribution names).
OPTIONAL_PACKAGES = (
    "tqdm",
    "matplotlib",
    "scikit-learn",  # the bench extra
    "phe",
    "gmpy2",  # the he extra (Paillier)
    "flwr",
    "ray",
    "pandas",  # the fed extra (Flower simulation)
    "mkdocs",
    "mkdocs-material",
    "mkdocstrings",  # the docs site (dev extra)
)


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cuda() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cuda_devices": [],
    }
    if info["cuda_available"]:
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    return info


def gather_env() -> dict[str, Any]:
    """The facts as a flat-ish dict (pure data, nothing printed)."""
    import numpy as np
    import torch

    from gradkit.bench.versions import gradkit_version, package_version

    env: dict[str, Any] = {
        "gradkit": gradkit_version(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "optional": {name: package_version(name) for name in OPTIONAL_PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "openmp": torch.backends.openmp.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    env.update(_cuda())
    return env


def render_env(env: dict[str, Any]) -> str:
    """``key: value`` lines; nested dicts are indented, ``None`` shows as ``not installed``."""
    width = max(len(k) for k in env)
    lines = []
    for key, value in env.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            inner = max((len(k) for k in value), default=0)
            for k, v in value.items():
                lines.append(f"  {k:<{inner}}  {'not installed' if v is None else v}")
        elif isinstance(value, list):
            lines.append(f"{key:<{width}}  {', '.join(map(str, value)) or '-'}")
        else:
            lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    env = gather_env()
    sys.stdout.write(json.dumps(env, indent=1) + "\n" if args.json else render_env(env))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``env`` subcommand."""
    p = sub.add_parser("env", help="print versions and hardware facts for bug reports")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_run)
