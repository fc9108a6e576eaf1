"""Building blocks of the optimizers' registry entries (see :mod:`gradkit.registry`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradkit._specs import ErrorInput, OptimizerSpec

__all__ = ["matrix_error_inputs", "optimizer_entry"]


def optimizer_entry(
    cls: Any, summary: str, configs: Sequence[dict[str, Any]], **fields: Any
) -> OptimizerSpec:
    """The registry entry of a gradkit optimizer class: named by the class name in lower case,
    citing the class's ``paper`` attribute, with the conformance ``configs`` and further
    :class:`~gradkit._specs.OptimizerSpec` fields."""
    return OptimizerSpec(
        name=cls.__name__.lower(),
        cls=cls,
        paper=cls.paper,
        summary=summary,
        configs=configs,
        **{"low_precision": True, **fields},
    )


def matrix_error_inputs() -> list[ErrorInput]:
    """Invalid values of the hyper-parameters every matrix optimizer has."""
    return [
        ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1"),
        ErrorInput({"betas": (1.0, 0.95)}, ValueError, r"Invalid betas\[0\]: 1\.0"),
        ErrorInput({"eps": 0.0}, ValueError, r"Invalid eps: 0\.0 \(must be > 0\)"),
    ]
