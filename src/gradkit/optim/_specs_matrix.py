"""Error inputs shared by the matrix optimizers' registry entries."""

from __future__ import annotations

from gradkit._specs import ErrorInput

__all__ = ["matrix_error_inputs"]


def matrix_error_inputs() -> list[ErrorInput]:
    """Invalid values of the hyper-parameters every matrix optimizer has."""
    return [
        ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1"),
        ErrorInput({"betas": (1.0, 0.95)}, ValueError, r"Invalid betas\[0\]: 1\.0"),
        ErrorInput({"eps": 0.0}, ValueError, r"Invalid eps: 0\.0 \(must be > 0\)"),
    ]
