"""Version strings recorded in every report (``results.json`` → ``versions``)."""

from __future__ import annotations

import importlib.metadata
import platform

import numpy as np
import torch

__all__ = ["gradkit_version", "package_version", "versions"]


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` if it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def gradkit_version() -> str:
    """gradkit's version from the installed metadata (``"unknown"`` when not installed)."""
    return package_version("gradkit") or "unknown"


def versions() -> dict[str, str]:
    """``gradkit``, ``torch``, ``numpy``, ``python`` and ``platform`` version strings."""
    return {
        "gradkit": gradkit_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
