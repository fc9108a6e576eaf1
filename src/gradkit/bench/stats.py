"""Summary statistics over seeds: mean ± standard deviation, with failed runs counted apart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "format_number", "summarize"]


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of the finite values of one cell.

    Attributes:
        mean: mean of the finite values, ``None`` if there are none.
        std: sample standard deviation (``ddof=1``) of the finite values; ``0.0`` for a single
            value, ``None`` if there are none.
        n: number of finite values.
        n_failed: number of values that were missing or non-finite (diverged or errored runs).
    """

    mean: float | None
    std: float | None
    n: int
    n_failed: int = 0

    @property
    def sem(self) -> float | None:
        """Standard error of the mean, ``std / sqrt(n)``; ``None`` when ``n == 0``."""
        if self.n == 0 or self.std is None:
            return None
        return self.std / math.sqrt(self.n)

    def format(self, digits: int = 4, scale: float = 1.0) -> str:
        """``"mean ± std"`` (just ``"mean"`` when ``n == 1``), plus ``" (k failed)"``.

        ``scale`` multiplies both numbers (``100`` shows a fraction as a percentage).
        """
        if self.mean is None:
            return "not finite" if self.n_failed else "—"
        text = format_number(self.mean * scale, digits)
        if self.n > 1 and self.std is not None:
            text += " ± " + format_number(self.std * scale, 2)
        if self.n_failed:
            text += f" ({self.n_failed} failed)"
        return text


def summarize(values: Sequence[float | None]) -> Summary:
    """Mean and sample standard deviation of the finite entries of ``values``.

    ``None``, NaN and infinities are counted in ``n_failed`` and otherwise ignored.

    Example:
        >>> summarize([1.0, 2.0, 3.0, None])
        Summary(mean=2.0, std=1.0, n=3, n_failed=1)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    failed = len(values) - len(finite)
    if not finite:
        return Summary(None, None, 0, failed)
    mean = statistics.fmean(finite)
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return Summary(mean, std, len(finite), failed)


def format_number(value: float | None, digits: int = 4) -> str:
    """A compact representation with ``digits`` significant digits (``"—"`` for ``None``).

    Example:
        >>> format_number(0.0001234), format_number(-3.91234), format_number(12345.6)
        ('0.0001234', '-3.912', '1.235e+04')
    """
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10**digits or magnitude < 1e-4:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"
