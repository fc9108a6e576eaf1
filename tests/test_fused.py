"""The fused (torch.compile) path really compiles, does not recompile when a scheduler changes
``lr``, matches the for-loop, and falls back loudly when the compiler fails.

Run on one small parameter set per optimizer to keep CI fast.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from gradkit.optim._compile import compiled_step
from gradkit.registry import get_optimizer, optimizer_names

FUSED = [name for name in optimizer_names() if "fused" in get_optimizer(name).supported_impls]


def _params(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(*shape, generator=gen).requires_grad_() for shape in ((6, 5), (4, 3, 2), (5,))
    ]


@pytest.mark.compile
@pytest.mark.parametrize("name", FUSED)
def test_fused_compiles_once_and_matches(name: str) -> None:
    spec = get_optimizer(name)
    config = {"lr": spec.lr, **spec.configs[0]}
    torch._dynamo.reset()
    fused_params, ref_params = _params(0), _params(0)
    route = spec.param_groups_fn or (lambda params: params)  # matrix optimizers: AdamW for 1-D
    fused = spec.cls(route(fused_params), fused=True, **config)
    ref = spec.cls(route(ref_params), foreach=False, **config)
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7) for opt in (fused, ref)]
    gen = torch.Generator().manual_seed(1)
    graphs_after_first = None
    frames_before = counters["frames"]["ok"]
    for step in range(4):
        for fp, rp in zip(fused_params, ref_params, strict=True):
            grad = torch.randn(fp.shape, generator=gen)
            fp.grad, rp.grad = grad.clone(), grad.clone()
        fused.step()
        ref.step()
        for scheduler in schedulers:
            scheduler.step()
        if step == 0:
            graphs_after_first = counters["stats"]["unique_graphs"]
    assert counters["frames"]["ok"] > frames_before, "fused=True compiled no frame"
    assert counters["stats"]["unique_graphs"] == graphs_after_first, (
        "a changing lr caused a recompile"
    )
    assert fused.param_groups[0]["lr"] != config["lr"]
    for fp, rp in zip(fused_params, ref_params, strict=True):
        torch.testing.assert_close(fp.detach(), rp.detach(), rtol=1e-5, atol=1e-6)


def test_compiler_failure_falls_back_with_warning() -> None:
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    calls: list[str] = []

    def body(x: torch.Tensor) -> None:
        x.add_(1)

    def eager(x: torch.Tensor) -> None:
        calls.append("eager")
        x.add_(1)

    step = compiled_step("FallbackProbe", body, eager, backend=failing_backend)
    x = torch.zeros(3)
    with pytest.warns(RuntimeWarning, match="FallbackProbe: fused=True needs torch.compile"):
        step(x)
    step(x)
    assert calls == ["eager", "eager"]
    assert torch.equal(x, torch.full((3,), 2.0))
