"""Pure decision rules that turn measured numbers into a verdict on a paper's claim.

A verdict is ``"holds"``, ``"does not hold"`` or ``"inconclusive"``. The rules only look at the
numbers they are given, so a test can feed the opposite outcome and watch the verdict flip.

Noise model: two groups of per-seed values ``a`` and ``b`` differ *significantly* when the
95 % percentile-bootstrap confidence intervals of their means (:func:`~gradkit.bench.stats.
bootstrap_ci`) do not overlap and their means differ by more than ``atol``. Deterministic tasks
(no seed dependence) use ``atol`` alone. A stochastic comparison with fewer than two finite
values on either side is "unknown": there is no noise estimate. Overlapping intervals give
``"no significant difference"`` rather than a verdict either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from gradkit.bench.results import BenchResults, Verdict
from gradkit.bench.stats import Summary, bootstrap_ci, format_number, summarize

__all__ = [
    "Comparison",
    "combine",
    "compare_groups",
    "missing",
    "not_run",
    "run_values",
    "verdict_less",
    "verdict_more",
    "verdict_not_worse",
]


def run_values(
    results: BenchResults,
    task: str,
    method: str,
    what: str,
    *,
    variant: str | None = None,
    failed: Sequence[str] = ("error",),
) -> list[float | None]:
    """Per-run ``final_loss``, ``accuracy`` or metric ``what`` of ``method`` on ``task`` (one
    value per seed, in run order); runs whose status is in ``failed`` give ``None``.

    Example:
        >>> from gradkit.bench.results import Record, RunSettings
        >>> recs = [Record("s", "t", "m", i, 1.0 + i, (), 0.0, 1, status=st)
        ...         for i, st in enumerate(["ok", "error"])]
        >>> run_values(BenchResults(RunSettings("s", ("m",), ("t",), (0, 1)), {}, {}, recs),
        ...            "t", "m", "final_loss")
        [1.0, None]
    """
    return [
        None if r.status in failed else r.value(what) for r in results.select(task, method, variant)
    ]


def missing(
    results: BenchResults, methods: Sequence[str], tasks: Sequence[str], label: str = "optimizer"
) -> list[str]:
    """What a verdict needs that the run did not include: ``"<label> m"`` for each method and
    ``"task t"`` for each task not among the run's settings (for :func:`not_run`)."""
    have_m, have_t = set(results.settings.optimizers), set(results.settings.tasks)
    return [f"{label} {m}" for m in dict.fromkeys(methods) if m not in have_m] + [
        f"task {t}" for t in tasks if t not in have_t
    ]


@dataclass(frozen=True)
class Comparison:
    """How group ``a`` compares with group ``b`` on a lower-is-better quantity.

    Attributes:
        outcome: ``"lower"`` (a significantly lower), ``"higher"`` (a significantly higher),
            ``"tie"`` (within the margin) or ``"unknown"`` (not enough finite data).
        a, b: the summaries of both groups.
        diff: ``mean(a) - mean(b)``, ``None`` when unknown.
        margin: the threshold ``|diff|`` had to exceed.
        reason: why the outcome is unknown (empty otherwise).
    """

    outcome: str
    a: Summary
    b: Summary
    diff: float | None
    margin: float | None
    reason: str = ""


def compare_groups(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    atol: float,
    deterministic: bool = False,
    confidence: float = 0.95,
) -> Comparison:
    """Compare per-seed values ``a`` and ``b`` (lower is better) under the noise model above.

    A group whose runs all failed (non-finite) counts as higher (worse) than a group whose
    runs all succeeded; any other mix of failures is ``"unknown"``. ``margin`` is ``atol`` for
    a deterministic comparison and otherwise the gap the intervals would need to close
    (negative when they overlap).

    Example:
        >>> compare_groups([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], atol=0.01).outcome
        'lower'
        >>> compare_groups([1.0, 1.5, 2.1], [2.0, 1.1, 2.2], atol=0.01).outcome
        'tie'
    """
    if atol < 0:
        raise ValueError(f"atol must be non-negative, got {atol}")
    sa, sb = summarize(a), summarize(b)
    if sa.n == 0 and sa.n_failed and sb.n and not sb.n_failed:
        return Comparison("higher", sa, sb, None, None, "all runs of the first group failed")
    if sb.n == 0 and sb.n_failed and sa.n and not sa.n_failed:
        return Comparison("lower", sa, sb, None, None, "all runs of the second group failed")
    if sa.mean is None or sb.mean is None or sa.n_failed or sb.n_failed:
        return Comparison("unknown", sa, sb, None, None, "missing or non-finite results")
    diff = sa.mean - sb.mean
    if deterministic:
        margin = atol
        separated = abs(diff) > atol
    else:
        if sa.n < 2 or sb.n < 2:
            return Comparison(
                "unknown", sa, sb, diff, None, "fewer than 2 seeds, no noise estimate"
            )
        ca = bootstrap_ci(a, confidence=confidence)
        cb = bootstrap_ci(b, confidence=confidence)
        assert ca is not None and cb is not None  # both groups have finite values
        gap = cb[0] - ca[1] if diff < 0 else ca[0] - cb[1]
        margin = gap
        separated = gap > 0 and abs(diff) > atol
        sa = dataclasses.replace(sa, ci=ca)
        sb = dataclasses.replace(sb, ci=cb)
    outcome = ("lower" if diff < 0 else "higher") if separated else "tie"
    reason = ""
    if not separated and abs(diff) <= atol and (deterministic or margin > 0):
        reason = f"the difference is within the claim's tolerance {format_number(atol, 2)}"
    return Comparison(outcome, sa, sb, diff, margin, reason)


def _describe(name_a: str, name_b: str, quantity: str, c: Comparison) -> str:
    """One sentence with both means (and their 95 % intervals), the difference and how it
    was decided."""
    ma, mb = format_number(c.a.mean), format_number(c.b.mean)
    if c.a.ci is not None and c.b.ci is not None:
        ma += " [{}, {}]".format(*(format_number(v, 3) for v in c.a.ci))
        mb += " [{}, {}]".format(*(format_number(v, 3) for v in c.b.ci))
    text = f"{quantity}: {name_a} {ma} vs {name_b} {mb}"
    if c.diff is not None:
        text += f" (diff {format_number(c.diff, 3)}"
        if c.a.ci is not None and c.margin is not None:
            text += ", 95% intervals " + ("separate)" if c.margin > 0 else "overlap)")
        else:
            text += f", margin {format_number(c.margin, 2)})" if c.margin is not None else ")"
    if c.a.n_failed or c.b.n_failed:
        text += f" [failed runs: {name_a} {c.a.n_failed}, {name_b} {c.b.n_failed}]"
    if c.reason:
        text += f" — {c.reason}"
    return text


def _numbers(prefix: str, name_a: str, name_b: str, c: Comparison) -> dict[str, float | None]:
    p = f"{prefix}." if prefix else ""
    return {
        f"{p}{name_a}": c.a.mean,
        f"{p}{name_b}": c.b.mean,
        f"{p}diff": c.diff,
        f"{p}margin": c.margin,
    }


def verdict_less(
    claim: str,
    paper: str,
    name_a: str,
    a: Sequence[float | None],
    name_b: str,
    b: Sequence[float | None],
    *,
    quantity: str,
    atol: float,
    deterministic: bool = False,
    tasks: Sequence[str] = (),
    key: str = "",
) -> Verdict:
    """Verdict on "``a`` is lower than ``b``" (strictly, beyond noise).

    ``holds`` if ``a`` is significantly lower, ``does not hold`` if significantly higher,
    ``no significant difference`` on a tie, ``inconclusive`` without enough data.

    Example:
        >>> verdict_less("x lower", "p", "x", [1.0], "y", [2.0], quantity="F", atol=1e-3,
        ...              deterministic=True).verdict
        'holds'
    """
    c = compare_groups(a, b, atol=atol, deterministic=deterministic)
    outcome = _OUTCOME[{"lower": "better", "higher": "worse"}.get(c.outcome, c.outcome)]
    return Verdict(
        claim=claim,
        paper=paper,
        verdict=outcome,
        evidence=_describe(name_a, name_b, quantity, c),
        tasks=tuple(tasks),
        numbers=_numbers(key, name_a, name_b, c),
    )


def verdict_not_worse(
    claim: str,
    paper: str,
    name_a: str,
    a: Sequence[float | None],
    name_b: str,
    b: Sequence[float | None],
    *,
    quantity: str,
    atol: float,
    higher_is_better: bool = True,
    deterministic: bool = False,
    tasks: Sequence[str] = (),
    key: str = "",
) -> Verdict:
    """Verdict on "``a`` is at least as good as ``b``, within noise".

    ``holds`` when ``a`` is significantly better, ``does not hold`` when significantly worse,
    ``no significant difference`` when the intervals overlap (consistent with the claim, which
    asks only that ``a`` is not significantly worse), ``inconclusive`` without enough data to
    estimate the noise.

    Example:
        >>> verdict_not_worse("acc", "p", "x", [0.9, 0.91], "y", [0.95, 0.96],
        ...                   quantity="accuracy", atol=0.005).verdict
        'does not hold'
    """
    c = _compare_oriented(a, b, higher_is_better, atol=atol, deterministic=deterministic)
    outcome = _OUTCOME[c.outcome]
    return Verdict(
        claim=claim,
        paper=paper,
        verdict=outcome,
        evidence=_describe(name_a, name_b, quantity, c),
        tasks=tuple(tasks),
        numbers=_numbers(key, name_a, name_b, c),
    )


#: Oriented comparison outcome -> verdict.
_OUTCOME = {
    "better": "holds",
    "worse": "does not hold",
    "tie": "no significant difference",
    "unknown": "inconclusive",
}


def _compare_oriented(
    a: Sequence[float | None],
    b: Sequence[float | None],
    higher_is_better: bool,
    *,
    atol: float,
    deterministic: bool = False,
) -> Comparison:
    """:func:`compare_groups` on a quantity of either direction: the outcome is ``"better"``,
    ``"worse"``, ``"tie"`` or ``"unknown"`` for ``a``; means and ``diff`` keep the original
    orientation (for the evidence text)."""
    sign = -1.0 if higher_is_better else 1.0
    c = compare_groups(
        [None if v is None else sign * v for v in a],
        [None if v is None else sign * v for v in b],
        atol=atol,
        deterministic=deterministic,
    )
    outcome = {"lower": "better", "higher": "worse"}.get(c.outcome, c.outcome)
    diff = None if c.diff is None else sign * c.diff
    sa = dataclasses.replace(summarize(a), ci=_flip(c.a.ci, sign))
    sb = dataclasses.replace(summarize(b), ci=_flip(c.b.ci, sign))
    return Comparison(outcome, sa, sb, diff, c.margin, c.reason)


def _flip(ci: tuple[float, float] | None, sign: float) -> tuple[float, float] | None:
    """An interval of ``sign * x`` turned back into one of ``x``."""
    if ci is None:
        return None
    return (ci[0], ci[1]) if sign > 0 else (-ci[1], -ci[0])


def combine(claim: str, paper: str, parts: Sequence[Verdict]) -> Verdict:
    """One verdict that needs every part: ``holds`` if all hold, ``does not hold`` if any
    does not hold, ``no significant difference`` if the rest hold or show none, else
    ``inconclusive``. Evidence and numbers are concatenated."""
    if not parts:
        raise ValueError("combine needs at least one verdict")
    outcomes = [p.verdict for p in parts]
    if all(o == "holds" for o in outcomes):
        verdict = "holds"
    elif any(o == "does not hold" for o in outcomes):
        verdict = "does not hold"
    elif all(o in ("holds", "no significant difference") for o in outcomes):
        verdict = "no significant difference"
    else:
        verdict = "inconclusive"
    tasks: dict[str, None] = {}
    numbers: dict[str, float | None] = {}
    for p in parts:
        tasks.update(dict.fromkeys(p.tasks))
        numbers.update(p.numbers)
    return Verdict(
        claim=claim,
        paper=paper,
        verdict=verdict,
        evidence="; ".join(p.evidence for p in parts),
        tasks=tuple(tasks),
        numbers=numbers,
    )


def not_run(claim: str, paper: str, missing: Sequence[str], tasks: Sequence[str] = ()) -> Verdict:
    """An ``inconclusive`` verdict for a claim whose methods or tasks were not part of the run."""
    return Verdict(
        claim=claim,
        paper=paper,
        verdict="inconclusive",
        evidence="not measured: this run did not include " + ", ".join(missing),
        tasks=tuple(tasks),
    )


def verdict_more(
    claim: str,
    paper: str,
    name_a: str,
    a: Sequence[float | None],
    name_b: str,
    b: Sequence[float | None],
    *,
    quantity: str,
    atol: float,
    tasks: Sequence[str] = (),
) -> Verdict:
    """Verdict on "``a`` is higher than ``b``" beyond seed noise: ``holds`` if significantly
    higher, ``does not hold`` if significantly lower, else ``inconclusive``.

    Example:
        >>> verdict_more("x higher", "p", "x", [0.9, 0.91], "y", [0.5, 0.52],
        ...              quantity="accuracy", atol=0.005).verdict
        'holds'
    """
    c = _compare_oriented(a, b, higher_is_better=True, atol=atol)
    verdict = _OUTCOME[c.outcome]
    return Verdict(
        claim, paper, verdict, _describe(name_a, name_b, quantity, c), tuple(tasks),
        _numbers("", name_a, name_b, c),
    )  # fmt: skip
