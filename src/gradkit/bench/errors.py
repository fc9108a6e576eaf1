"""The exception raised for a bad benchmark request (unknown suite, task or method, bad value)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BenchConfigError", "unknown_name"]


class BenchConfigError(ValueError):
    """A benchmark request names something that does not exist or has a bad value.

    The CLI turns it into a one-line message on stderr and exit code 2 (no traceback).
    """


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> BenchConfigError:
    """The error for an unknown ``kind`` called ``name``; the message lists the valid names.

    Example:
        >>> str(unknown_name("task", "f9", ["f1", "f2"]))
        "unknown task 'f9'; valid tasks: f1, f2"
    """
    listed = ", ".join(valid) or "(none)"
    return BenchConfigError(f"unknown {kind} {name!r}; valid {kind}s: {listed}")
