"""Pure parts of the benchmark: statistics, verdict rules, and the default suite's verdicts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from gradkit.bench.results import BenchResults, Record, RunSettings, Verdict
from gradkit.bench.stats import format_number, summarize
from gradkit.bench.suites.default import default_verdicts
from gradkit.bench.verdicts import combine, compare_groups, verdict_less, verdict_not_worse

# -- stats ------------------------------------------------------------------------------------


def test_summarize_mean_std_and_failures() -> None:
    s = summarize([1.0, 3.0, None, math.nan, math.inf])
    assert s.mean == 2.0 and s.n == 2 and s.n_failed == 3
    assert s.std == pytest.approx(math.sqrt(2.0))
    assert summarize([]).mean is None
    single = summarize([5.0])
    assert single.std == 0.0 and single.format() == "5"
    assert summarize([1.0, 2.0]).format(digits=3) == "1.5 ± 0.71"
    assert summarize([None]).format() == "not finite"
    assert summarize([0.5, 0.7]).format(scale=100).startswith("60 ± ")


def test_format_number() -> None:
    assert format_number(None) == "—"
    assert format_number(0.0) == "0"
    assert format_number(-0.09) == "-0.09"
    assert format_number(1.2e-9) == "1.200e-09"


# -- generic rules ----------------------------------------------------------------------------


def test_compare_groups_outcomes() -> None:
    assert compare_groups([1.0], [2.0], atol=0.1, deterministic=True).outcome == "lower"
    assert compare_groups([2.0], [1.0], atol=0.1, deterministic=True).outcome == "higher"
    assert compare_groups([1.0], [1.05], atol=0.1, deterministic=True).outcome == "tie"
    # stochastic: needs two values per side
    assert compare_groups([1.0], [2.0], atol=0.1).outcome == "unknown"
    # noisy groups whose 95% bootstrap intervals overlap tie; margin = the (negative) gap
    c = compare_groups([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], atol=0.01)
    assert c.outcome == "tie" and c.margin == pytest.approx(1.5 - 3.0)
    assert c.a.ci == (1.0, 3.0) and c.b.ci == (1.5, 3.5)
    # separated intervals decide, even when a z-test on the means would not matter
    c = compare_groups([1.0, 1.1, 1.2], [1.3, 1.4, 1.5], atol=0.01)
    assert c.outcome == "lower" and c.margin == pytest.approx(1.3 - 1.2)
    # separated intervals but a difference below atol: tie
    assert compare_groups([1.0, 1.001], [1.002, 1.003], atol=0.01).outcome == "tie"
    # all runs of one side failed: that side is worse
    assert compare_groups([None, None], [1.0, 1.1], atol=0.1).outcome == "higher"
    assert compare_groups([1.0, 1.1], [math.nan], atol=0.1).outcome == "lower"
    assert compare_groups([1.0, None], [1.0, 1.1], atol=0.1).outcome == "unknown"
    with pytest.raises(ValueError, match="atol"):
        compare_groups([1.0], [1.0], atol=-1)


def test_verdict_less_flips_with_the_numbers() -> None:
    kw: dict[str, Any] = {"quantity": "q", "atol": 0.01}
    good = verdict_less("a<b", "p", "a", [1.0, 1.01, 0.99], "b", [2.0, 2.02, 1.98], **kw)
    bad = verdict_less("a<b", "p", "a", [2.0, 2.02, 1.98], "b", [1.0, 1.01, 0.99], **kw)
    tie = verdict_less("a<b", "p", "a", [1.0, 1.01, 0.99], "b", [1.0, 1.01, 0.99], **kw)
    assert (good.verdict, bad.verdict, tie.verdict) == (
        "holds",
        "does not hold",
        "no significant difference",
    )
    assert "a 1" in good.evidence and "b 2" in good.evidence
    assert "95% intervals separate" in good.evidence and "overlap" in tie.evidence
    assert good.numbers["a"] == pytest.approx(1.0) and good.numbers["b"] == pytest.approx(2.0)


def test_verdict_not_worse_flips_with_the_numbers() -> None:
    kw: dict[str, Any] = {"quantity": "acc", "atol": 0.005}
    same = verdict_not_worse("a>=b", "p", "a", [0.95, 0.96], "b", [0.955, 0.965], **kw)
    worse = verdict_not_worse("a>=b", "p", "a", [0.90, 0.901], "b", [0.95, 0.951], **kw)
    better = verdict_not_worse("a>=b", "p", "a", [0.99, 0.991], "b", [0.95, 0.951], **kw)
    one_seed = verdict_not_worse("a>=b", "p", "a", [0.99], "b", [0.95], **kw)
    assert same.verdict == "no significant difference"
    assert worse.verdict == "does not hold"
    assert better.verdict == "holds"
    assert one_seed.verdict == "inconclusive"
    # the evidence keeps the original orientation: a's mean first, diff = a - b
    assert worse.numbers["diff"] == pytest.approx(-0.05)
    # lower-is-better quantities
    lower = verdict_not_worse(
        "a<=b", "p", "a", [1.0, 1.01], "b", [2.0, 2.01], higher_is_better=False, **kw
    )
    assert lower.verdict == "holds"


def test_combine() -> None:
    def v(outcome: str) -> Verdict:
        return Verdict("c", "p", outcome, outcome, ("t",), {outcome: 1.0})

    assert combine("c", "p", [v("holds"), v("holds")]).verdict == "holds"
    assert combine("c", "p", [v("holds"), v("does not hold")]).verdict == "does not hold"
    assert combine("c", "p", [v("holds"), v("inconclusive")]).verdict == "inconclusive"
    nsd = v("no significant difference")
    assert combine("c", "p", [v("holds"), nsd]).verdict == "no significant difference"
    assert combine("c", "p", [nsd, v("inconclusive")]).verdict == "inconclusive"
    both = combine("c", "p", [v("holds"), v("inconclusive")])
    assert both.evidence == "holds; inconclusive" and set(both.numbers) == {"holds", "inconclusive"}
    with pytest.raises(ValueError):
        combine("c", "p", [])
    with pytest.raises(ValueError, match="verdict must be one of"):
        Verdict("c", "p", "maybe", "")


# -- the default suite's verdicts, fed with made-up numbers ------------------------------------


def _record(task: str, method: str, seed: int, loss: float, **extra: float) -> Record:
    acc = extra.pop("accuracy", None)
    return Record(
        suite="default",
        task=task,
        method=method,
        seed=seed,
        final_loss=loss,
        curve=(loss,),
        wall_time_s=0.0,
        steps=1,
        accuracy=acc,
        metrics=dict(extra),
    )


def _results(
    f_values: Mapping[str, Mapping[str, float]],
    norm_ratio: Mapping[str, list[float]],
    accuracy: Mapping[str, list[float]],
) -> BenchResults:
    records = [
        _record(task, method, 0, value)
        for task, per_method in f_values.items()
        for method, value in per_method.items()
    ]
    for method, ratios in norm_ratio.items():
        accs = accuracy.get(method, [0.9] * len(ratios))
        records += [
            _record("digits_cnn", method, s, 0.1, w_norm_ratio=r, accuracy=a)
            for s, (r, a) in enumerate(zip(ratios, accs, strict=True))
        ]
    methods = ("sgd", "adam", "adamw", "diffgrad", "adabelief", "adamp", "sgdp")
    settings = RunSettings("default", methods, ("f1", "f2", "digits_cnn"), (0, 1, 2))
    return BenchResults(settings, {}, {}, records)


PAPER_LIKE = _results(
    f_values={"f1": {"adam": -0.04, "diffgrad": -0.09}, "f2": {"adam": -0.11, "diffgrad": -0.62}},
    norm_ratio={
        "adamw": [1.60, 1.62, 1.61],
        "adamp": [1.05, 1.06, 1.055],
        "sgd": [1.38, 1.40, 1.36],
        "sgdp": [1.02, 1.03, 1.025],
        "adam": [1.27, 1.28, 1.26],
        "adabelief": [1.05, 1.05, 1.05],
    },
    accuracy={"adam": [0.980, 0.982, 0.984], "adabelief": [0.993, 0.994, 0.995]},
)

OPPOSITE = _results(
    f_values={"f1": {"adam": -0.09, "diffgrad": -0.04}, "f2": {"adam": -0.62, "diffgrad": -0.11}},
    norm_ratio={
        "adamw": [1.05, 1.06, 1.055],
        "adamp": [1.60, 1.62, 1.61],
        "sgd": [1.02, 1.03, 1.025],
        "sgdp": [1.38, 1.40, 1.36],
        "adam": [1.27, 1.28, 1.26],
        "adabelief": [1.05, 1.05, 1.05],
    },
    accuracy={"adam": [0.990, 0.992, 0.994], "adabelief": [0.950, 0.951, 0.949]},
)


def _by_paper(verdicts: list[Verdict]) -> list[str]:
    return [v.verdict for v in verdicts]


def test_default_verdicts_hold_on_paper_like_numbers() -> None:
    verdicts = default_verdicts(PAPER_LIKE)
    assert _by_paper(verdicts) == ["holds"] * 4
    diffgrad = verdicts[0]
    assert diffgrad.tasks == ("f1", "f2")
    assert diffgrad.numbers["f1.diffgrad"] == -0.09 and diffgrad.numbers["f2.adam"] == -0.11
    assert "F1" in diffgrad.evidence and "F2" in diffgrad.evidence


def test_default_verdicts_flip_on_opposite_numbers() -> None:
    assert _by_paper(default_verdicts(OPPOSITE)) == ["does not hold"] * 4


def test_diffgrad_verdict_needs_both_functions() -> None:
    half = _results(
        f_values={
            "f1": {"adam": -0.04, "diffgrad": -0.09},  # holds on F1
            "f2": {"adam": -0.62, "diffgrad": -0.11},  # fails on F2
        },
        norm_ratio={},
        accuracy={},
    )
    assert default_verdicts(half)[0].verdict == "does not hold"


def test_default_verdicts_without_the_methods_are_inconclusive() -> None:
    results = BenchResults(RunSettings("default", ("sgd", "adam"), ("f1",), (0,)), {}, {}, [])
    verdicts = default_verdicts(results)
    assert _by_paper(verdicts) == ["inconclusive"] * 4
    assert all("not measured" in v.evidence for v in verdicts)
    assert "diffgrad" in verdicts[0].evidence


def test_overlapping_intervals_give_no_significant_difference() -> None:
    close = _results(
        f_values={"f1": {"adam": -0.04, "diffgrad": -0.09}, "f2": {"adam": -0.1, "diffgrad": -0.6}},
        norm_ratio={"adam": [1.27, 1.28, 1.26], "adabelief": [1.05, 1.05, 1.05]},
        accuracy={"adam": [0.990, 0.992, 0.994], "adabelief": [0.993, 0.994, 0.991]},
    )
    verdict = default_verdicts(close)[3]
    assert verdict.verdict == "no significant difference"
    assert "overlap" in verdict.evidence
