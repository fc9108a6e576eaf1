"""The ``lm`` suite: the character-level GPT task, its data, the engine pieces it added
(variants, routing, optimizer-state memory, eval curves) and its verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

import gradkit.bench.suites.lm as lm
from gradkit.bench.methods import BASELINES, Method
from gradkit.bench.results import BenchResults, Record, RunSettings, TaskInfo
from gradkit.bench.routing import OptimizerChain, build_routed, optimizer_state_bytes
from gradkit.bench.runner import run_tasks
from gradkit.bench.suites import get_suite
from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.tasks.char_gpt import (
    DATA_FILE,
    CharGPT,
    evaluate,
    fixed_windows,
    lm_loss,
    load_char_data,
    lr_factor,
    random_windows,
)
from gradkit.bench.training import train_steps
from gradkit.cli import main

# -- data and model -----------------------------------------------------------------------------


def test_data_file_ships_with_the_installed_package() -> None:
    folder = resources.files("gradkit.bench").joinpath("data")
    assert folder.joinpath(DATA_FILE).is_file()
    notice = folder.joinpath("NOTICE.md").read_text(encoding="utf-8")
    assert "public domain" in notice.lower() and "sword-text-web" in notice
    data = load_char_data()
    text_len = data.train.numel() + data.val.numel()
    assert 400_000 < text_len <= 1_000_000
    assert data.train.numel() == int(text_len * 0.9)  # the fixed 90/10 split
    assert data.vocab_size == 64 and data.vocab == "".join(sorted(set(data.vocab)))
    assert data.decode(data.train[:12]) == "The book of "
    # the split is contiguous: the last training character precedes the first validation one
    text = folder.joinpath(DATA_FILE).read_text(encoding="ascii")
    assert data.decode(data.val[:50]) == text[data.train.numel() : data.train.numel() + 50]


def test_model_size_and_causality() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(lm.CONFIG, vocab_size=64)
    model = CharGPT(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 200_000 <= n <= 500_000
    # causal: changing a later token never changes the logits of earlier positions
    x = torch.randint(0, 64, (2, 20))
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 1) % 64
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])
    with pytest.raises(ValueError, match="exceeds the context 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_windows_and_schedule() -> None:
    data = torch.arange(100)
    x, y = next(random_windows(data, 4, 8, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 8) and torch.equal(y, x + 1)
    xv, yv = fixed_windows(data, 5, 8)
    assert xv[0, 0] == 0 and yv[-1, -1] == 99
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_short_adamw_training_lowers_the_validation_loss() -> None:
    torch.manual_seed(0)
    data = load_char_data()
    cfg = dataclasses.replace(lm.CONFIG, vocab_size=data.vocab_size)
    model = CharGPT(cfg)
    xv, yv = fixed_windows(data.val, 16, cfg.context)
    before = evaluate(model, xv, yv)
    assert before == pytest.approx(math.log(64), abs=0.1)  # near-uniform at initialisation
    batches = random_windows(data.train, 16, cfg.context, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    curve, status = train_steps(model, opt, batches, lm_loss, 25)
    assert status == "ok" and len(curve) == 25
    assert evaluate(model, xv, yv) < before - 0.8


# -- the suite end to end -----------------------------------------------------------------------


def test_smoke_run_writes_a_report_with_every_method(tmp_path: Path) -> None:
    assert "lm" in get_suite("lm").name
    out = tmp_path / "report"
    assert main(["bench", "--suite", "lm", "--smoke", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    methods = [r["method"] for r in results["records"]]
    assert methods == lm.default_methods() == ["adamw", "sophiag", "swan", "sinkgd", "aro", "muon"]
    tuned = {t["method"]: t for t in results["tuning"]}
    for r in results["records"]:
        assert r["status"] == "ok", r
        assert "variant" not in r  # tuned: one setting per method, no grid
        t = tuned[r["method"]]
        assert t["budget"] == t["finished"] == 1  # the smoke budget
        # the tuned lr is the suite's eta: the AdamW side follows it (the lm protocol)
        aux = r["hyperparams"].get("aux", {})
        assert aux.get("lr", t["params"]["lr"]) == pytest.approx(t["params"]["lr"])
        steps = [k for k, _ in r["eval_curve"]]
        assert steps[0] == 0 and steps[-1] == r["steps"] == 12
        losses = [v for _, v in r["eval_curve"]]
        assert losses[-1] < losses[0] - 0.3  # every method learns something in 12 steps
    report = (out / "report.md").read_text()
    for name in methods:
        assert f"| {name} | 1/1 |" in report  # the tuning table
    assert (out / "curves_char_gpt.png").stat().st_size > 10_000
    by = {r["method"]: r for r in results["records"]}
    # routing: the matrix methods keep no matrix state; AdamW keeps two moments of everything
    mib = {m: by[m]["metrics"]["opt_state_mib"] for m in by}
    params = by["adamw"]["metrics"]["params"]
    assert mib["adamw"] == pytest.approx(2 * params * 4 / 2**20, rel=1e-3)
    assert mib["swan"] == mib["sinkgd"] < mib["muon"] < mib["aro"] < mib["adamw"]
    eta = tuned["swan"]["params"]["lr"]  # the tuned eta: 0.2·eta on the matrices, eta elsewhere
    assert by["swan"]["hyperparams"]["lr"] == pytest.approx(lm.MATRIX_LR_RATIO["swan"] * eta)
    assert by["swan"]["hyperparams"]["aux"]["lr"] == pytest.approx(eta)
    assert by["sophiag"]["hyperparams"]["bs"] == 16 * 64
    assert 0.0 <= by["sophiag"]["metrics"]["win_rate"] <= 1.0  # one refresh happened


# -- engine pieces ------------------------------------------------------------------------------


class _GridTask(Task):
    name = "grid"
    description = "a quadratic with an lr grid"

    def default_steps(self, smoke: bool) -> int:
        return 5

    def hyperparams(self, method: Method) -> dict[str, Any]:
        return {"lr": 0.5, "betas": (0.9, 0.99)}

    def variants(self, method: Method, smoke: bool = False) -> list[tuple[str, dict[str, Any]]]:
        return [("lr=0.1", {"lr": 0.1}), ("lr=0.01", {"lr": 0.01})]

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        w = torch.nn.Parameter(torch.tensor([1.0]))
        opt, used = method.build([w], self.hyperparams(method))
        for _ in range(steps):
            opt.zero_grad()
            (w**2).sum().backward()
            opt.step()
        return Outcome(float(w.detach() ** 2), [], eval_curve=[(steps, 1.0)]), used


def test_variants_override_hyperparameters_and_are_recorded() -> None:
    records, _ = run_tasks("t", [_GridTask()], [BASELINES["sgd"]], (0, 1), threads=None)
    assert [(r.variant, r.seed) for r in records] == [
        ("lr=0.1", 0),
        ("lr=0.1", 1),
        ("lr=0.01", 0),
        ("lr=0.01", 1),
    ]
    assert [r.hyperparams["lr"] for r in records] == [0.1, 0.1, 0.01, 0.01]
    assert records[0].hyperparams["momentum"] == 0.9  # the method's own fixed value stays
    # sgd lr 0.1, momentum 0.9 on w²: smaller final loss than lr 0.01 after 5 steps
    assert records[0].final_loss is not None and records[2].final_loss is not None
    results = BenchResults(RunSettings("t", ("sgd",), ("grid",), (0, 1)), {}, {}, records)
    assert results.variants("grid", "sgd") == ["lr=0.1", "lr=0.01"]
    best = "lr=0.1" if records[0].final_loss < records[2].final_loss else "lr=0.01"
    assert results.best_variant("grid", "sgd") == best
    back = BenchResults.from_json(results.to_json())
    assert back.records == results.records
    assert back.records[0].eval_curve == ((5, 1.0),)


def test_best_variant_prefers_variants_without_failures() -> None:
    recs = [
        _record("m", "a", 0, 1.0),
        _record("m", "a", 1, None, status="diverged"),
        _record("m", "b", 0, 2.0),
        _record("m", "b", 1, 2.0),
    ]
    results = _results(["m"], recs)
    assert results.best_variant(lm.TASK, "m") == "b"
    assert results.best_variant(lm.TASK, "missing") is None


def test_optimizer_state_bytes() -> None:
    w = torch.nn.Parameter(torch.zeros(10, 3))
    b = torch.nn.Parameter(torch.zeros(3))
    assert optimizer_state_bytes(torch.optim.SGD([w, b], lr=0.1)) == 0
    adam = torch.optim.Adam([w, b])
    w.grad, b.grad = torch.ones_like(w), torch.ones_like(b)
    adam.step()
    step_bytes = sum(adam.state[p]["step"].untyped_storage().nbytes() for p in (w, b))
    assert optimizer_state_bytes(adam) == 2 * 33 * 4 + step_bytes
    # a tensor shared by two state entries counts once; params never count
    adam.state[w]["alias"] = adam.state[w]["exp_avg"]
    adam.state[w]["param_view"] = w.detach()[0]
    assert optimizer_state_bytes(adam) == 2 * 33 * 4 + step_bytes
    chain = OptimizerChain([adam, torch.optim.SGD([torch.nn.Parameter(torch.ones(4))], lr=1.0)])
    assert optimizer_state_bytes(chain) == optimizer_state_bytes(adam)


def test_routing_chain_and_groups() -> None:
    torch.manual_seed(0)
    model = CharGPT(dataclasses.replace(lm.CONFIG, vocab_size=64))
    chain = build_routed(torch.optim.Muon, "chain", model, {"lr": 0.01}, {"lr": 0.002})
    assert isinstance(chain, OptimizerChain)
    muon, adamw = chain.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    matrices = {id(p) for p in muon.param_groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in matrices}
    assert names == {
        f"blocks.{i}.{m}.weight" for i in range(4) for m in ("attn.qkv", "attn.proj", "fc", "out")
    }
    assert len(matrices) + len(adamw.param_groups[0]["params"]) == len(list(model.parameters()))
    assert [g["lr"] for g in chain.param_groups] == [0.01, 0.002]
    x = torch.randint(0, 64, (2, 8))
    model(x).sum().backward()
    chain.step()
    state = chain.state_dict()
    chain2 = build_routed(torch.optim.Muon, "chain", model, {"lr": 0.01}, {"lr": 0.002})
    chain2.load_state_dict(state)
    assert torch.equal(
        chain2.optimizers[1].state_dict()["state"][0]["exp_avg"],
        adamw.state_dict()["state"][0]["exp_avg"],
    )
    from gradkit.optim import SinkGD

    opt = build_routed(SinkGD, "groups", model, {"lr": 1e-4}, {"lr": 3e-3})
    assert [(g["use_matrix_update"], g["lr"]) for g in opt.param_groups] == [
        (True, 1e-4),
        (False, 3e-3),
    ]
    with pytest.raises(ValueError, match="unknown routing"):
        build_routed(SinkGD, "nope", model, {}, {})
    with pytest.raises(ValueError, match="routing must be one of"):
        Method("x", torch.optim.SGD, "torch", routing="nope")


def test_train_steps_after_step_hook_and_clipping() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    seen: list[tuple[int, float]] = []
    batches = iter([(torch.ones(1, 1), torch.zeros(1))] * 3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    _, status = train_steps(
        model,
        opt,
        batches,
        lambda out, target: 100.0 * out.sum(),  # gradient 100, clipped to norm 0.5
        3,
        clip_grad_norm=0.5,
        after_step=lambda k, batch: seen.append((k, float(model.weight.detach()))),
    )
    assert status == "ok"
    assert seen == [(1, pytest.approx(0.5)), (2, pytest.approx(0.0)), (3, pytest.approx(-0.5))]


# -- verdicts -----------------------------------------------------------------------------------


def _record(
    method: str,
    variant: str,
    seed: int,
    loss: float | None,
    *,
    status: str = "ok",
    mib: float = 1.0,
    curve: Sequence[tuple[int, float | None]] = (),
) -> Record:
    return Record(
        suite="lm",
        task=lm.TASK,
        method=method,
        seed=seed,
        final_loss=loss,
        curve=(),
        wall_time_s=0.0,
        steps=500,
        metrics={"opt_state_mib": mib},
        status=status,
        variant=variant,
        eval_curve=tuple(curve),
    )


def _results(methods: Sequence[str], records: list[Record]) -> BenchResults:
    return BenchResults(
        RunSettings("lm", tuple(methods), (lm.TASK,), (0, 1, 2)),
        {},
        {lm.TASK: TaskInfo("t", steps=500)},
        records,
    )


def _group(
    method: str, losses: Sequence[float], variant: str = "lr=0.003", mib: float = 1.0
) -> list[Record]:
    return [_record(method, variant, s, v, mib=mib) for s, v in enumerate(losses)]


def _by_claim(results: BenchResults, start: str) -> str:
    (v,) = [v for v in lm.lm_verdicts(results) if v.claim.startswith(start)]
    return v.verdict


def test_stateless_verdict_flips_with_loss_and_memory() -> None:
    adamw = _group("adamw", [2.00, 2.01, 1.99], mib=1.6)
    # a bad learning rate of SWAN does not matter: its best variant is compared
    bad_lr = _group("swan", [3.0, 3.1, 3.05], variant="lr=0.01", mib=0.12)
    close = _results(["adamw", "swan"], adamw + bad_lr + _group("swan", [2.0, 2.01, 2.0], mib=0.12))
    # "matches within noise": overlapping intervals, the memory claim holds
    assert _by_claim(close, "Stateless SWAN") == "no significant difference"
    worse = _results(["adamw", "swan"], adamw + _group("swan", [2.2, 2.21, 2.19], mib=0.12))
    assert _by_claim(worse, "Stateless SWAN") == "does not hold"
    heavy = _results(["adamw", "swan"], adamw + _group("swan", [2.0, 2.01, 2.0], mib=2.0))
    assert _by_claim(heavy, "Stateless SWAN") == "does not hold"
    assert _by_claim(heavy, "Stateless SinkGD") == "inconclusive"  # not run


def _curves(method: str, reach_at: Sequence[int], final: float) -> list[Record]:
    """Runs whose validation loss falls linearly from 4 to 2.5 at ``reach_at`` then to
    ``final`` at step 500."""
    out = []
    for seed, k in enumerate(reach_at):
        points = []
        for step in range(0, 501, 50):
            if step <= k:
                value = 4.0 - 1.5 * step / k
            else:
                value = 2.5 - (2.5 - final) * (step - k) / (500 - k)
            points.append((step, value))
        out.append(_record(method, "lr=0.003", seed, points[-1][1], curve=points))
    return out


def test_sophia_steps_verdict_flips() -> None:
    adamw = _curves("adamw", [450, 450, 450], 2.45)  # target: AdamW's worst final, 2.45
    fast = _results(["adamw", "sophiag"], adamw + _curves("sophiag", [200, 250, 200], 2.3))
    assert _by_claim(fast, "SophiaG reaches") == "holds"
    slow = _results(["adamw", "sophiag"], adamw + _curves("sophiag", [500, 500, 500], 2.6))
    verdict = next(v for v in lm.lm_verdicts(slow) if v.claim.startswith("SophiaG"))
    assert verdict.verdict == "does not hold" and "never reached counts as 550" in verdict.evidence
    assert lm.steps_to_target([(0, 3.0), (50, None), (100, 2.0)], 2.5) == 100
    assert lm.steps_to_target([(0, 3.0)], 2.5) == math.inf


def test_loss_comparison_verdicts_flip() -> None:
    base = _group("adamw", [2.0, 2.01, 1.99]) + _group("sinkgd", [2.1, 2.11, 2.09])
    better = _results(
        ["adamw", "sinkgd", "aro", "muon"],
        base + _group("aro", [1.9, 1.91, 1.89]) + _group("muon", [1.95, 1.96, 1.94]),
    )
    assert _by_claim(better, "ARO-Sinkhorn reaches a validation loss ≤ SinkGD") == "holds"
    assert _by_claim(better, "ARO-Sinkhorn reaches a lower validation loss than AdamW") == "holds"
    assert _by_claim(better, "ARO-Sinkhorn reaches a lower validation loss than Muon") == "holds"
    assert _by_claim(better, "Muon reaches") == "holds"
    worse = _results(
        ["adamw", "sinkgd", "aro", "muon"],
        base + _group("aro", [2.3, 2.31, 2.29]) + _group("muon", [2.2, 2.21, 2.19]),
    )
    assert _by_claim(worse, "ARO-Sinkhorn reaches a validation loss ≤ SinkGD") == "does not hold"
    assert _by_claim(worse, "ARO-Sinkhorn reaches a lower validation loss than AdamW") == (
        "does not hold"
    )
    assert _by_claim(worse, "ARO-Sinkhorn reaches a lower validation loss than Muon") == (
        "does not hold"
    )
    assert _by_claim(worse, "Muon reaches") == "does not hold"
    tie = _results(["adamw", "muon"], base[:3] + _group("muon", [2.0, 2.01, 1.99]))
    assert _by_claim(tie, "Muon reaches") == "no significant difference"
    assert _by_claim(tie, "ARO-Sinkhorn reaches a lower validation loss than AdamW") == (
        "inconclusive"
    )
