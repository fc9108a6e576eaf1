"""The one registry for every family: lookups, user registrations, errors, no import cycle."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gradkit import registry
from gradkit._specs import AggregatorSpec, OptimizerSpec


@pytest.fixture
def restore_registry():
    saved = {family: dict(entries) for family, entries in registry._REGISTRY.items()}
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def test_every_family_has_its_builtins():
    assert registry.families()[:4] == ["optimizer", "aggregator", "weighting", "compressor"]
    assert registry.names("weighting") == ["gradnorm"]
    assert {"diffgrad", "adabelief", "adamp", "sgdp", "sophiag", "swan"} <= set(
        registry.optimizer_names()
    )
    assert {"mean", "pcgrad", "cagrad", "mgda", "samgs", "gcond"} <= set(
        registry.aggregator_names()
    )
    assert {"edgedetect", "scaled_sign"} <= set(registry.names("compressor"))
    for family in registry.families():
        for spec in registry.specs(family):
            assert spec.family == family
            assert spec.name == spec.name.lower()
            assert spec.summary


def test_lookup_is_case_insensitive_and_errors_name_the_value():
    assert registry.get_optimizer("AdamP").cls.__name__ == "AdamP"
    assert registry.get("aggregator", "MGDA").cls.__name__ == "MGDA"
    with pytest.raises(ValueError, match=r"unknown optimizer 'nope'; known: diffgrad"):
        registry.get_optimizer("nope")
    with pytest.raises(ValueError, match=r"unknown family 'bogus'"):
        registry.names("bogus")
    with pytest.raises(TypeError, match="optimizer name must be a str, got int"):
        registry.get("optimizer", 3)  # type: ignore[arg-type]


def _user_optimizer_spec(name: str = "mysgd") -> OptimizerSpec:
    return OptimizerSpec(name=name, cls=torch.optim.SGD, paper="", summary="plain SGD")


def test_user_registration_keeps_the_builtins(restore_registry):
    # Before the registry was one module-level table, registering first hid every built-in.
    registry.register(_user_optimizer_spec())
    assert "mysgd" in registry.optimizer_names()
    assert "adamp" in registry.optimizer_names()
    assert registry.get_optimizer("mysgd").cls is torch.optim.SGD


def test_user_registration_before_any_lookup_in_a_fresh_process():
    code = (
        "import torch\n"
        "from gradkit import registry\n"
        "from gradkit._specs import OptimizerSpec\n"
        "registry.register(OptimizerSpec(name='mysgd', cls=torch.optim.SGD, paper='', summary='s'))\n"
        "names = registry.optimizer_names()\n"
        "assert 'mysgd' in names and 'adamp' in names, names\n"
        "from gradkit.bench import compare\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_rejects_duplicates_bad_names_and_impl_flags(restore_registry):
    with pytest.raises(ValueError, match="optimizer 'adamp' is already registered"):
        registry.register(_user_optimizer_spec("adamp"))
    with pytest.raises(ValueError, match="lower case"):
        registry.register(_user_optimizer_spec("MySGD"))
    with pytest.raises(ValueError, match=r"must not set impl flags \['fused'\]"):
        registry.register(
            OptimizerSpec(
                name="x", cls=torch.optim.SGD, paper="", summary="s", configs=[{"fused": True}]
            )
        )
    with pytest.raises(TypeError, match="got str"):
        registry.register("adamp")  # type: ignore[arg-type]


def test_same_name_in_two_families_is_allowed(restore_registry):
    registry.register(
        AggregatorSpec(name="adamp", cls=object, paper="", summary="an aggregator called adamp")
    )
    assert registry.get("aggregator", "adamp").summary == "an aggregator called adamp"
    assert registry.get_optimizer("adamp").cls.__name__ == "AdamP"


def test_mtl_does_not_import_optim():
    code = "import sys, gradkit.mtl; assert 'gradkit.optim' not in sys.modules, 'optim loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)
