"""Optimizer step time and state memory, as ratios to torch's foreach AdamW measured in the same run.

Parameter set (transformer-like): 12 × 1024² + 24 × 1024 fp32 params, ``torch.set_num_threads(2)``.
For every gradkit optimizer, foreach and fused (``torch.compile``), beside ``torch.optim.AdamW``
(foreach, fused, and ``torch.compile(step)``) and pytorch_optimizer's DiffGrad, AdaBelief, AdamP
and SGDP; plus a BatchNorm-preceded, scale-invariant case (gradients orthogonal to each weight
row) in which AdamP's projection branch fires and is timed.

Usage::

    python benchmarks/step_time.py            # full run (several minutes: each fused case compiles)
    python benchmarks/step_time.py --smoke    # a few seconds, small params, no compilation

These machines are noisy: compare only the ratios printed by one run. The glibc malloc settings
(``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``) change foreach timings a lot and are
printed with the results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Case:
    label: str
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    compile_step: bool = False
    scale_invariant: bool = False


def _params(smoke: bool, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n, big = (2, 64) if smoke else (12, 1024)
    mats = [torch.randn(big, big, generator=gen) * 0.02 for _ in range(n)]
    vecs = [torch.randn(big, generator=gen) * 0.02 for _ in range(2 * n)]
    return [t.requires_grad_() for t in mats + vecs]


def _grads(params: list[torch.Tensor], scale_invariant: bool, seed: int = 1) -> list[torch.Tensor]:
    """Random gradients; in the scale-invariant case each weight row's gradient is made
    orthogonal to that row (what BatchNorm after the layer produces), so AdamP projects."""
    gen = torch.Generator().manual_seed(seed)
    grads = []
    for param in params:
        grad = torch.randn(param.shape, generator=gen) * 1e-3
        if scale_invariant and param.ndim > 1:
            weight = param.detach()
            coef = (grad * weight).sum(dim=1, keepdim=True) / (weight * weight).sum(
                dim=1, keepdim=True
            )
            grad = grad - coef * weight
        grads.append(grad)
    return grads


def _state_bytes_per_param(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> float:
    seen: set[int] = set()
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in seen:
                seen.add(value.untyped_storage().data_ptr())
                total += value.untyped_storage().nbytes()
    return total / sum(p.numel() for p in params)


def measure(case: Case, smoke: bool, steps: int, warmup: int) -> tuple[float, float, float]:
    """Median step time in ms, its relative spread (IQR/median), and state bytes per param."""
    params = _params(smoke)
    grads = _grads(params, case.scale_invariant)
    optimizer = case.make(params)
    step = torch.compile(optimizer.step) if case.compile_step else optimizer.step
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    quartiles = statistics.quantiles(times, n=4)
    return (
        median * 1e3,
        (quartiles[2] - quartiles[0]) / median,
        _state_bytes_per_param(optimizer, params),
    )


def cases(smoke: bool, nonfinite: str = "raise") -> list[Case]:
    import pytorch_optimizer as po

    from gradkit.optim import SGDP, AdaBelief, AdamP, DiffGrad

    torch_cases = [
        Case("torch AdamW foreach", lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True)),
        Case("torch AdamW fused", lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)),
        Case(
            "torch AdamW torch.compile(step)",
            lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
            compile_step=True,
        ),
    ]
    ours = {
        "DiffGrad": lambda p, **k: DiffGrad(p, lr=1e-3, nonfinite=nonfinite, **k),
        "AdaBelief": lambda p, **k: AdaBelief(p, lr=1e-3, nonfinite=nonfinite, **k),
        "AdamP": lambda p, **k: AdamP(p, lr=1e-3, weight_decay=1e-2, nonfinite=nonfinite, **k),
        "SGDP": lambda p, **k: SGDP(
            p, lr=1e-2, momentum=0.9, weight_decay=1e-5, nonfinite=nonfinite, **k
        ),
    }
    theirs = {
        "DiffGrad": lambda p: po.DiffGrad(p, lr=1e-3),
        "AdaBelief": lambda p: po.AdaBelief(p, lr=1e-3),
        "AdamP": lambda p: po.AdamP(p, lr=1e-3, weight_decay=1e-2),
        "SGDP": lambda p: po.SGDP(p, lr=1e-2, momentum=0.9, weight_decay=1e-5),
    }
    result = list(torch_cases)
    impls = [("foreach", {"foreach": True})] + ([] if smoke else [("fused", {"fused": True})])
    for name, make in ours.items():
        for impl, kwargs in impls:
            result.append(Case(f"gradkit {name} {impl}", lambda p, m=make, k=kwargs: m(p, **k)))
        result.append(Case(f"pytorch_optimizer {name}", theirs[name]))
    for impl, kwargs in impls:
        result.append(
            Case(
                f"gradkit AdamP {impl} (scale-invariant)",
                lambda p, k=kwargs: ours["AdamP"](p, **k),
                scale_invariant=True,
            )
        )
    result.append(
        Case("pytorch_optimizer AdamP (scale-invariant)", theirs["AdamP"], scale_invariant=True)
    )
    import adamp

    result.append(
        Case(
            "adamp AdamP (scale-invariant)",
            lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2),
            scale_invariant=True,
        )
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny params, 3 steps, no compilation")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per case (default 30, smoke 3)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated substrings: run only matching cases"
    )
    parser.add_argument(
        "--nonfinite",
        default="raise",
        choices=("raise", "skip", "ignore"),
        help="gradkit's non-finite-gradient policy (default raise: one extra read of the grads)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    steps = args.steps or (3 if args.smoke else 30)
    warmup = 1 if args.smoke else 3
    malloc = {
        k: os.environ.get(k, "default")
        for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    }
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, malloc {malloc}, steps {steps}, smoke={args.smoke}"
    )
    print(
        f"{'case':<46} {'ms/step':>9} {'spread':>7} {'× AdamW foreach':>16} {'state B/param':>14}"
    )
    baseline = None
    wanted = [w for w in args.only.split(",") if w]
    for case in cases(args.smoke, args.nonfinite):
        if (
            wanted
            and case.label != "torch AdamW foreach"
            and not any(w in case.label for w in wanted)
        ):
            continue
        ms, spread, state = measure(case, args.smoke, steps, warmup)
        baseline = baseline or ms
        print(
            f"{case.label:<46} {ms:9.2f} {spread:7.0%} {ms / baseline:16.2f} {state:14.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
