"""The aggregator conformance suite: run over every registered aggregator, its claims shown to
be tight, and each check shown to fail on an aggregator broken on purpose."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from gradkit import registry
from gradkit._specs import AggregatorSpec, ErrorInput
from gradkit.mtl import SAMGS, Aggregator, Mean, PCGrad
from gradkit.testing import aggregator_checks, check_aggregator

SPECS = [spec for spec in registry.specs("aggregator") if isinstance(spec, AggregatorSpec)]
CASES = [
    pytest.param(spec.name, check, id=f"{spec.name}-{check}")
    for spec in SPECS
    for check, _ in aggregator_checks(spec)
]


def _run(spec: AggregatorSpec, check: str) -> None:
    dict(aggregator_checks(spec))[check]()


@pytest.mark.parametrize(("name", "check"), CASES)
def test_registered_aggregator_conforms(name: str, check: str) -> None:
    _run(registry.get_aggregator(name), check)


def test_every_aggregator_is_checked() -> None:
    assert {spec.name for spec in SPECS} >= {"mean", "sum", "pcgrad", "cagrad", "mgda", "samgs"}
    assert {spec.name for spec in SPECS} == set(registry.names("aggregator"))


# ---------------------------------------------------------------------------- tight claims
@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_claims_left_false_are_false(spec: AggregatorSpec) -> None:
    """A claim the registry does not make would fail its check: the claims are tight."""
    flips = {
        "permutation_invariant": "permutation_invariant",
        "non_conflicting": "non_conflicting",
        "stateful": "state_dict",
    }
    for claim, check in flips.items():
        if getattr(spec, claim) and claim != "stateful":
            continue
        flipped = dataclasses.replace(spec, **{claim: not getattr(spec, claim)})
        with pytest.raises(AssertionError):
            _run(flipped, check)
    # One more task than min_tasks would be refused: min_tasks is the real minimum.
    with pytest.raises(AssertionError):
        _run(dataclasses.replace(spec, min_tasks=spec.min_tasks + 1), "single_task")


def test_gcond_accepts_one_task_and_mgda_is_not_non_conflicting() -> None:
    """Two claims the suite corrected: GCond was registered with min_tasks=2 but accepts (and
    is meaningful on) one task; MGDA's Frank-Wolfe stop at gamma < 1e-3 is not exactly
    non-conflicting."""
    gcond = registry.get_aggregator("gcond")
    with pytest.raises(AssertionError, match="did not raise"):
        _run(dataclasses.replace(gcond, min_tasks=2), "single_task")
    mgda = registry.get_aggregator("mgda")
    with pytest.raises(AssertionError, match=r"conflicts with task\(s\)"):
        _run(dataclasses.replace(mgda, non_conflicting=True), "non_conflicting")


# ---------------------------------------------------------------------------- broken aggregators
class ReturnsFloat64(Mean):
    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.double().mean(dim=0)


class ModifiesInput(Mean):
    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.clamp_(-1.0, 1.0).mean(dim=0)


class WrongShape(Mean):
    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0, keepdim=True)


class FirstTaskHeavy(Mean):
    """Weights task 0 twice: not permutation invariant."""

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0) + jacobian[0]


class NormalisedUnguarded(Mean):
    """Normalises each row without a guard: NaN for a zero task gradient."""

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return (jacobian / jacobian.norm(dim=1, keepdim=True)).mean(dim=0)


class Biased(Mean):
    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0) + 1e-3


class FlipsOneTask(Mean):
    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return -jacobian[0] if jacobian.shape[0] == 1 else jacobian.mean(dim=0)


class SilentNaN(Mean):
    """Skips the input check and zeroes non-finite entries."""

    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(jacobian, nan=0.0, posinf=0.0, neginf=0.0).mean(dim=0)


class VagueError(Mean):
    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(jacobian).all()):
            raise ValueError("bad jacobian")
        return jacobian.mean(dim=0)


class Noisy(Mean):
    """Draws from the global RNG."""

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0) + 1e-6 * torch.randn(jacobian.shape[1], dtype=jacobian.dtype)


class IgnoresGenerator(Mean):
    """Accepts ``generator=`` but never uses it (yet claims to be seeded)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator


class GlobalRNGPCGrad(PCGrad):
    """Drops its generator and uses the global RNG."""

    def __init__(self, generator: torch.Generator | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class CountsCalls(Mean):
    """Hidden state outside state_dict: the output shrinks with the number of calls."""

    def __init__(self) -> None:
        self.calls = 0

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return jacobian.mean(dim=0) / self.calls


class ForgetsStep(SAMGS):
    """Saves ``step`` as 0: a resumed run uses the wrong bias correction."""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": torch.tensor(0)}


def _spec(cls: Any, **claims: Any) -> AggregatorSpec:
    return AggregatorSpec(name=cls.__name__, cls=cls, paper="", summary="", **claims)


@pytest.mark.parametrize(
    ("spec", "check", "match"),
    [
        (_spec(ReturnsFloat64), "shape_and_dtype", "float64"),
        (_spec(ModifiesInput), "shape_and_dtype", "modified its input"),
        (_spec(WrongShape), "shape_and_dtype", "shape"),
        (_spec(FirstTaskHeavy), "permutation_invariant", "permutation invariance"),
        (_spec(Mean, non_conflicting=True), "non_conflicting", "conflicts with task"),
        (_spec(NormalisedUnguarded), "zero_jacobian", "non-finite"),
        (_spec(Biased), "zero_jacobian", "not 0"),
        (_spec(FlipsOneTask), "single_task", "a = -1"),
        (_spec(Mean, min_tasks=2), "single_task", "did not raise"),
        (_spec(SilentNaN), "nonfinite_rows", "did not raise"),
        (_spec(VagueError), "nonfinite_rows", "does not match"),
        (_spec(Noisy), "deterministic", "not bit-identical"),
        (_spec(IgnoresGenerator, seeded=True), "deterministic", "generator= ignored"),
        (_spec(GlobalRNGPCGrad, seeded=True, permutation_invariant=False), "deterministic", ""),
        (_spec(CountsCalls), "state_dict", "claims to be stateless"),
        (_spec(Mean, stateful=True), "state_dict", "state_dict\\(\\) is empty"),
        (_spec(ForgetsStep, stateful=True, min_tasks=2), "state_dict", "resumed after"),
        (
            _spec(Mean, error_inputs=[ErrorInput({"c": 1.0}, ValueError, "Invalid c")]),
            "error_inputs",
            "raised TypeError",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, AggregatorSpec) else str(value)[:20],
)
def test_broken_aggregator_fails_its_check(spec: AggregatorSpec, check: str, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        _run(spec, check)


def test_the_unbroken_bases_pass_those_checks() -> None:
    for _name, run in aggregator_checks(_spec(Mean)):
        run()
    check_aggregator(registry.get_aggregator("pcgrad"))
    check_aggregator(_spec(SAMGS, stateful=True, min_tasks=2))


# ---------------------------------------------------------------------------- the entry point
def test_check_aggregator_names_the_failed_check() -> None:
    with pytest.raises(AssertionError, match="check 'permutation_invariant' failed"):
        check_aggregator(FirstTaskHeavy)
    with pytest.raises(
        AssertionError,
        match=r"check 'shape_and_dtype' failed: raised ValueError: .*SAMGS: 1 \(must be >= 2",
    ):
        check_aggregator(SAMGS, stateful=True)


def test_check_aggregator_accepts_a_factory_function() -> None:
    def factory(scale: float = 1.0) -> Aggregator:
        return Mean() if scale == 1.0 else Biased()

    check_aggregator(factory, configs=[{}, {"scale": 1.0}])
    with pytest.raises(AssertionError, match=r"factory \{'scale': 2.0\}.*not 0"):
        check_aggregator(factory, configs=[{}, {"scale": 2.0}])
    with pytest.raises(TypeError, match="AggregatorSpec or a factory"):
        check_aggregator(3)  # type: ignore[arg-type]
