"""The registry entries of AdamP and SGDP."""

from __future__ import annotations

from typing import Any

from gradkit._specs import ErrorInput
from gradkit.optim._adamp import SGDP, AdamP
from gradkit.optim._entries import optimizer_entry

__all__ = ["registry_specs"]


def _common_errors(**base: Any) -> list[Any]:

    return [
        ErrorInput({**base, "lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({**base, "lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({**base, "eps": -1e-8}, ValueError, r"Invalid eps: -1e-08 \(must be >= 0\)"),
        ErrorInput(
            {**base, "weight_decay": -0.1},
            ValueError,
            r"Invalid weight_decay: -0\.1 \(must be >= 0\)",
        ),
        ErrorInput({**base, "delta": -0.1}, ValueError, r"Invalid delta: -0\.1 \(must be >= 0\)"),
        ErrorInput(
            {**base, "delta": float("inf")}, ValueError, r"Invalid delta: inf \(must be finite\)"
        ),
        ErrorInput(
            {**base, "wd_ratio": -0.5}, ValueError, r"Invalid wd_ratio: -0\.5 \(must be >= 0\)"
        ),
        ErrorInput(
            {**base, "nesterov": 1}, TypeError, r"Invalid nesterov: 1 \(expected a bool, got int\)"
        ),
    ]


def registry_specs() -> list[Any]:
    """The registry entries of this module: ``adamp`` and ``sgdp`` (see :mod:`gradkit.registry`)."""
    return [_adamp_spec(), _sgdp_spec()]


def _adamp_spec() -> Any:

    return optimizer_entry(
        AdamP,
        "Adam (decoupled decay) that removes the radial component of updates of scale-invariant weights",
        [
            {},
            {"nesterov": True, "weight_decay": 1e-2, "wd_ratio": 0.5},
            {"betas": (0.5, 0.99), "eps": 1e-6, "weight_decay": 0.1, "delta": 1.0},
        ],
        error_inputs=[
            *_common_errors(),
            ErrorInput(
                {"betas": (1.0, 0.999)},
                ValueError,
                r"Invalid betas\[0\]: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"betas": (0.9, -0.1)},
                ValueError,
                r"Invalid betas\[1\]: -0\.1 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"betas": (0.9,)}, ValueError, r"Invalid betas: \(0\.9,\) \(expected a pair"
            ),
        ],
        hyperparams=("lr", "betas", "eps", "weight_decay", "delta", "wd_ratio", "nesterov"),
        lr=0.05,
    )


def _sgdp_spec() -> Any:

    lr = 0.05
    return optimizer_entry(
        SGDP,
        "SGD (momentum, decoupled decay) that removes the radial component of updates of scale-invariant weights",
        [
            {"lr": lr},
            {"lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
            {
                "lr": lr,
                "momentum": 0.9,
                "dampening": 0.1,
                "weight_decay": 0.1,
                "delta": 1.0,
                "wd_ratio": 0.5,
                "eps": 1e-6,
            },
            {"lr": lr, "momentum": 0.9, "weight_decay": 1e-2, "project_buffer": False},
        ],
        error_inputs=[
            *_common_errors(lr=lr),
            ErrorInput(
                {"lr": lr, "momentum": 1.0},
                ValueError,
                r"Invalid momentum: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"lr": lr, "momentum": -0.1},
                ValueError,
                r"Invalid momentum: -0\.1 \(must be in \[0, 1\)\)",
            ),
            ErrorInput(
                {"lr": lr, "dampening": 1.5},
                ValueError,
                r"Invalid dampening: 1\.5 \(must be in \[0, 1\]\)",
            ),
            ErrorInput(
                {"lr": lr, "project_buffer": "yes"},
                TypeError,
                r"Invalid project_buffer: 'yes' \(expected a bool, got str\)",
            ),
            ErrorInput(
                {"lr": lr, "dampening": -0.1},
                ValueError,
                r"Invalid dampening: -0\.1 \(must be in \[0, 1\]\)",
            ),
        ],
        hyperparams=(
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "eps",
            "delta",
            "wd_ratio",
            "nesterov",
            "project_buffer",
        ),
        lr=lr,
    )
