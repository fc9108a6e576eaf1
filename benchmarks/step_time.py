"""Optimizer step time and state memory, as ratios to torch's foreach AdamW measured in the same run.

Parameter set (transformer-like): 12 × 1024² + 24 × 1024 fp32 params, ``torch.set_num_threads(2)``.
For every gradkit optimizer, foreach and fused (``torch.compile``), beside ``torch.optim.AdamW``
(foreach, fused, and ``torch.compile(step)``) and pytorch_optimizer's DiffGrad, AdaBelief, AdamP
and SGDP, and sophia-opt's SophiaG (the official code; the curvature refresh is not timed); plus a BatchNorm-preceded, scale-invariant case (gradients orthogonal to each weight
row) in which AdamP's projection branch fires and is timed.

Usage::

    python benchmarks/step_time.py            # full run (several minutes: each fused case compiles)
    python benchmarks/step_time.py --smoke    # a few seconds, small params, no compilation
    python benchmarks/step_time.py --only Muon,SWAN,SinkGD,ARO   # the matrix section only
    python benchmarks/step_time.py --roofline  # the roofline section only

A second section times the matrix optimizers (SWAN, SinkGD, ARO, foreach and fused) beside
``torch.optim.Muon`` and pytorch_optimizer's ``Muon`` on transformer-like matrix shapes only
(d_model 512, 2 blocks of qkv 1536×512, attention out 512×512, MLP up 2048×512, MLP down
512×2048: 6.3M fp32 params; Muon takes 2-D params only, so no vectors), as ratios to torch's
Muon. It then prints SWAN's Newton–Schulz iteration count and its error against the float64 SVD
polar factor on those shapes, and the optimizer state memory of every method for that model,
counted with :func:`gradkit.testing.state_bytes` (every tensor reachable from the optimizer).

A last section, the **roofline**, prints for every elementwise optimizer (DiffGrad, AdaBelief,
AdamP, SGDP, SophiaG on their fused path, torch's AdamW as reference) the bytes its math must
move per parameter and step (:data:`ROOFLINE_BYTES`), the achieved GB/s, and that figure against
two ceilings measured in the same run: a stream copy (``copy_`` of a buffer as large as the
parameter set, 8 B per element) and ``torch.optim.AdamW(fused=True)``; plus the step time as a
multiple of ``torch.compile``'d AdamW. Its cases are timed in interleaved rounds.

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
    matrices: bool = False  # the matrix section: transformer-like matrix shapes only


def _params(smoke: bool, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n, big = (2, 64) if smoke else (12, 1024)
    mats = [torch.randn(big, big, generator=gen) * 0.02 for _ in range(n)]
    vecs = [torch.randn(big, generator=gen) * 0.02 for _ in range(2 * n)]
    return [t.requires_grad_() for t in mats + vecs]


#: (rows, cols) of one transformer block with d_model 512: qkv, attention out, MLP up, MLP down.
MATRIX_SHAPES = [(1536, 512), (512, 512), (2048, 512), (512, 2048)]
SMOKE_MATRIX_SHAPES = [(96, 32), (32, 32), (128, 32), (32, 128)]


def _matrix_params(smoke: bool, seed: int = 0, blocks: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = (SMOKE_MATRIX_SHAPES if smoke else MATRIX_SHAPES) * blocks
    return [(torch.randn(shape, generator=gen) * 0.02).requires_grad_() for shape in shapes]


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


def measure(
    case: Case, smoke: bool, steps: int, warmup: int
) -> tuple[float, float, float, int, float]:
    """Median step time in ms, its relative spread (IQR/median), state bytes per param (in
    ``optimizer.state``), the bytes of every tensor reachable from the optimizer, and the
    fastest step in ms (less sensitive to other jobs on a loaded machine)."""
    params = _matrix_params(smoke) if case.matrices else _params(smoke)
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
        _reachable_bytes(optimizer, params),
        min(times) * 1e3,
    )


def _reachable_bytes(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> int:
    from gradkit.testing import state_bytes

    return state_bytes(optimizer, exclude=params)


def matrix_cases(smoke: bool, nonfinite: str = "raise") -> list[Case]:
    """The matrix section; the first case (torch's Muon) is its baseline."""
    import pytorch_optimizer as po

    from gradkit.optim import ARO, SWAN, SinkGD

    result = [
        Case("torch Muon (ns_steps 5)", lambda p: torch.optim.Muon(p, lr=0.02), matrices=True),
        Case(
            "pytorch_optimizer Muon (ns_steps 5)",
            lambda p: po.Muon([{"params": p, "use_muon": True}], lr=0.02),
            matrices=True,
        ),
        Case(
            "torch AdamW foreach (matrix shapes)",
            lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
            matrices=True,
        ),
    ]
    ours = {
        "SinkGD (L 5)": lambda p, **k: SinkGD(p, lr=0.02, nonfinite=nonfinite, **k),
        "SWAN (ns_steps 20)": lambda p, **k: SWAN(p, lr=0.02, nonfinite=nonfinite, **k),
        "ARO (Sinkhorn base)": lambda p, **k: ARO(p, lr=0.02, nonfinite=nonfinite, **k),
    }
    impls = [("foreach", {"foreach": True})] + ([] if smoke else [("fused", {"fused": True})])
    for name, make in ours.items():
        for impl, kwargs in impls:
            result.append(
                Case(f"gradkit {name} {impl}", lambda p, m=make, k=kwargs: m(p, **k), matrices=True)
            )
    return result


def swan_accuracy(smoke: bool) -> list[tuple[str, str, float, float]]:
    """``(shape, ns_steps, relative Frobenius error, max abs error)`` of SWAN's whitened direction
    (float32 Newton–Schulz, no rescale) against the float64 SVD polar factor of GradNorm(G), for
    random gradients with log-normally scaled rows on the benchmark shapes. For square shapes
    the reference is the pseudo-inverse polar factor (centring removes one singular value), and
    so it is for tall shapes, whose rows SWAN standardises over the (fewer) inputs."""
    from gradkit.optim._swan import swan_direction
    from gradkit.transforms import grad_norm

    gen = torch.Generator().manual_seed(3)
    rows = []
    for shape in SMOKE_MATRIX_SHAPES if smoke else MATRIX_SHAPES:
        grad = torch.randn(shape, generator=gen, dtype=torch.float64)
        grad = grad * torch.randn(shape[0], 1, generator=gen, dtype=torch.float64).exp()
        # GradNorm over the inputs (rows); centring leaves rank ≤ n − 1, so when rows ≥ cols the
        # reference is the pseudo-inverse polar factor (one singular value removed).
        u, _, vh = torch.linalg.svd(grad_norm(grad), full_matrices=False)
        keep = u.shape[1] - 1 if shape[0] >= shape[1] else u.shape[1]
        reference = u[:, :keep] @ vh[:keep]
        for steps in (10, 20, 30):
            direction = swan_direction(grad.float(), ns_steps=steps, rescale=False).double()
            error = direction - reference
            rows.append(
                (
                    f"{shape[0]}x{shape[1]}",
                    str(steps),
                    float(error.norm() / reference.norm()),
                    float(error.abs().max()),
                )
            )
        # For context: Muon's quintic Newton-Schulz (5 steps) on the same G, against polar(G).
        from torch.optim._muon import _zeropower_via_newtonschulz

        u, _, vh = torch.linalg.svd(grad, full_matrices=False)
        polar = u @ vh
        muon = _zeropower_via_newtonschulz(grad.float(), (3.4445, -4.7750, 2.0315), 5, 1e-7)
        error = muon.double() - polar
        rows.append(
            (
                f"{shape[0]}x{shape[1]}",
                "Muon NS5",
                float(error.norm() / polar.norm()),
                float(error.abs().max()),
            )
        )
    return rows


def cases(smoke: bool, nonfinite: str = "raise") -> list[Case]:
    import pytorch_optimizer as po
    import sophia_opt

    from gradkit.optim import SGDP, AdaBelief, AdamP, DiffGrad, SophiaG

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
        "SophiaG": lambda p, **k: SophiaG(p, lr=1e-4, nonfinite=nonfinite, **k),
    }
    theirs = {
        "DiffGrad": lambda p: po.DiffGrad(p, lr=1e-3),
        "AdaBelief": lambda p: po.AdaBelief(p, lr=1e-3),
        "AdamP": lambda p: po.AdamP(p, lr=1e-3, weight_decay=1e-2),
        "SGDP": lambda p: po.SGDP(p, lr=1e-2, momentum=0.9, weight_decay=1e-5),
        "SophiaG": lambda p: sophia_opt.SophiaG(p, lr=1e-4),
    }
    #: Where the reference is not pytorch_optimizer's.
    their_labels = {"SophiaG": "sophia_opt SophiaG (official code)"}
    result = list(torch_cases)
    impls = [("foreach", {"foreach": True})] + ([] if smoke else [("fused", {"fused": True})])
    for name, make in ours.items():
        for impl, kwargs in impls:
            result.append(Case(f"gradkit {name} {impl}", lambda p, m=make, k=kwargs: m(p, **k)))
        result.append(Case(their_labels.get(name, f"pytorch_optimizer {name}"), theirs[name]))
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


#: Bytes per parameter that one step's math must move in fp32 (4 B a tensor), reads + writes
#: of the param, its gradient and each state tensor, e.g. AdamW: read p, g, m, v and write
#: p, m, v = 7 × 4 = 28 B. The second figure adds, for AdamP and SGDP, the read pass their
#: projection needs: per-row sums of the update must be known before it is applied, so the inputs
#: are read twice (AdamP: p, g, m, v, +16 B; SGDP: p, g, b, +12 B).
ROOFLINE_BYTES = {
    "torch AdamW": (28, 28),  # read p g m v, write p m v
    "DiffGrad": (36, 36),  # read p g m v g_prev, write p m v g_prev
    "AdaBelief": (28, 28),  # read p g m s, write p m s
    "AdamP": (28, 44),  # as AdamW, + the projection's read pass
    "SGDP": (20, 32),  # read p g b, write p b, + the projection's read pass
    "SophiaG": (24, 24),  # read p g m h, write p m
}


def roofline_cases(smoke: bool) -> list[tuple[str, tuple[int, int], Case]]:
    """``(label, (bytes per param, with the projection pass), case)`` of the roofline: torch's
    AdamW (fused, compiled) and every elementwise gradkit optimizer on its fused path (foreach in
    ``--smoke``, which does not compile), all with ``nonfinite="ignore"`` so that only the step's
    math is timed."""
    from gradkit.optim import SGDP, AdaBelief, AdamP, DiffGrad, SophiaG

    impl = {"foreach": True} if smoke else {"fused": True}
    tag = "foreach" if smoke else "fused"
    ours: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "DiffGrad": lambda p: DiffGrad(p, lr=1e-3, nonfinite="ignore", **impl),
        "AdaBelief": lambda p: AdaBelief(p, lr=1e-3, nonfinite="ignore", **impl),
        "AdamP": lambda p: AdamP(p, lr=1e-3, weight_decay=1e-2, nonfinite="ignore", **impl),
        "SGDP": lambda p: SGDP(
            p, lr=1e-2, momentum=0.9, weight_decay=1e-5, nonfinite="ignore", **impl
        ),
        "SophiaG": lambda p: SophiaG(p, lr=1e-4, nonfinite="ignore", **impl),
    }
    result = [
        (
            "torch AdamW fused",
            ROOFLINE_BYTES["torch AdamW"],
            Case("", lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)),
        ),
        (
            "torch AdamW torch.compile(step)",
            ROOFLINE_BYTES["torch AdamW"],
            Case("", lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True), compile_step=not smoke),
        ),
    ]
    for name, make in ours.items():
        result.append((f"gradkit {name} {tag}", ROOFLINE_BYTES[name], Case("", make)))
    return result


def _interleaved(
    steps: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """``label -> (median, fastest)`` seconds of each step, timed in interleaved rounds (one
    step of every case per round), so that a burst of load on a shared machine hits every case
    alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {label: (statistics.median(ts), min(ts)) for label, ts in times.items()}


def roofline(smoke: bool, steps: int, warmup: int) -> list[dict[str, float | str]]:
    """Achieved GB/s of every elementwise optimizer against two ceilings measured in this run:
    a stream copy and torch's fused AdamW; prints the table and returns its rows.

    GB/s = bytes per param (:data:`ROOFLINE_BYTES`) × params / step time. All cases are timed in
    interleaved rounds; "best" uses the fastest step, less sensitive to other jobs."""
    params = _params(smoke)
    numel = sum(p.numel() for p in params)
    src = torch.randn(numel)
    dst = torch.empty_like(src)
    cases: dict[str, Callable[[], object]] = {"stream copy (copy_)": lambda: dst.copy_(src)}
    nbytes: dict[str, tuple[int, int]] = {"stream copy (copy_)": (8, 8)}
    for label, count, case in roofline_cases(smoke):
        ps = _params(smoke)
        for param, grad in zip(ps, _grads(ps, False), strict=True):
            param.grad = grad
        optimizer = case.make(ps)
        cases[label] = torch.compile(optimizer.step) if case.compile_step else optimizer.step
        nbytes[label] = count
    timed = _interleaved(cases, steps, warmup)
    rows: list[dict[str, float | str]] = []
    for label, (median, fastest) in timed.items():
        update, minimum = nbytes[label]
        rows.append(
            {
                "case": label,
                "bytes": float(update),
                "min_bytes": float(minimum),
                "ms": median * 1e3,
                "min_ms": fastest * 1e3,
                "gbs": update * numel / median / 1e9,
                "best_gbs": update * numel / fastest / 1e9,
                "pass_gbs": minimum * numel / median / 1e9,
            }
        )
    _print_roofline(rows, numel, steps)
    return rows


def _print_roofline(rows: list[dict[str, float | str]], numel: int, steps: int) -> None:
    copy_gbs, fused = float(rows[0]["gbs"]), float(rows[1]["gbs"])
    best_fused, compiled_ms = float(rows[1]["best_gbs"]), float(rows[2]["ms"])
    print(
        f"\nroofline: {numel:,} fp32 params, {steps} interleaved rounds (median step; 'best' from "
        "the fastest), gradkit with nonfinite='ignore'; '+pass': bytes with the projection's "
        "read pass"
    )
    print(
        f"{'case':<34} {'B':>3} {'ms':>7} {'GB/s':>6} {'best':>6} {'%copy':>6} {'%fusedAdamW':>11} "
        f"{'(best)':>7} {'+pass B':>7} {'+pass %':>7} {'×compiled AdamW':>15}"
    )
    for row in rows:
        gbs, best, with_pass = (float(row[k]) for k in ("gbs", "best_gbs", "pass_gbs"))
        print(
            f"{row['case']:<34} {row['bytes']:3.0f} {row['ms']:7.2f} {gbs:6.1f} {best:6.1f} "
            f"{gbs / copy_gbs:6.0%} {gbs / fused:11.0%} {best / best_fused:7.0%} "
            f"{row['min_bytes']:7.0f} {with_pass / fused:7.0%} "
            f"{float(row['ms']) / compiled_ms:15.2f}",
            flush=True,
        )


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
    parser.add_argument(
        "--matrix-steps",
        type=int,
        default=None,
        help="timed steps per case in the matrix section (default 8, smoke 2)",
    )
    parser.add_argument("--roofline", action="store_true", help="run only the roofline section")
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
    print(f"load average at start: {os.getloadavg()}")
    if args.roofline:
        roofline(args.smoke, steps, warmup)
        print(f"load average at end: {os.getloadavg()}")
        return 0
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
        ms, spread, state, _, _ = measure(case, args.smoke, steps, warmup)
        baseline = baseline or ms
        print(
            f"{case.label:<46} {ms:9.2f} {spread:7.0%} {ms / baseline:16.2f} {state:14.1f}",
            flush=True,
        )
    _matrix_section(args, wanted)
    if not wanted or "roofline" in wanted:
        roofline(args.smoke, steps, warmup)
    print(f"load average at end: {os.getloadavg()}")
    return 0


def _matrix_section(args: argparse.Namespace, wanted: list[str]) -> None:
    selected = [
        case
        for index, case in enumerate(matrix_cases(args.smoke, args.nonfinite))
        if index == 0 or not wanted or any(w in case.label for w in wanted)
    ]
    if wanted and len(selected) == 1 and not any(w in selected[0].label for w in wanted):
        return
    steps = args.matrix_steps or (2 if args.smoke else 8)
    shapes = SMOKE_MATRIX_SHAPES if args.smoke else MATRIX_SHAPES
    params = _matrix_params(args.smoke)
    total = sum(p.numel() for p in params)
    print(
        f"\nmatrix section: 2 blocks of {shapes} fp32 (rows x cols), {total:,} params, "
        f"{steps} timed steps after 2 warm-up steps (compilation happens in the warm-up)"
    )
    print(
        f"{'case':<46} {'ms/step':>9} {'spread':>7} {'× torch Muon':>13} {'min ms':>9} "
        f"{'× (min)':>9} {'state MiB':>10} {'state B/param':>14}"
    )
    baseline = None
    fastest_baseline = None
    memory = []
    for case in selected:
        ms, spread, _, reachable, fastest = measure(case, args.smoke, steps, 2)
        baseline = baseline or ms
        fastest_baseline = fastest_baseline or fastest
        memory.append((case.label, reachable))
        print(
            f"{case.label:<46} {ms:9.2f} {spread:7.0%} {ms / baseline:13.2f} "
            f"{fastest:9.2f} {fastest / fastest_baseline:9.2f} "
            f"{reachable / 2**20:10.2f} {reachable / total:14.2f}",
            flush=True,
        )
    print(
        "\nstate memory: bytes of every tensor reachable from the optimizer, params excluded "
        "(gradkit.testing.state_bytes)"
    )
    for label, reachable in memory:
        print(f"  {label:<46} {reachable:>12,} B")
    print(
        "\nSWAN whitening accuracy (float32 Newton-Schulz vs float64 SVD polar factor of "
        "GradNorm(G); the default ns_steps is 20)"
    )
    print(f"  {'shape':<11} {'ns_steps':>9} {'rel. Frobenius err':>19} {'max abs err':>12}")
    for shape, ns_steps, relative, max_abs in swan_accuracy(args.smoke):
        print(f"  {shape:<11} {ns_steps:>9} {relative:19.2e} {max_abs:12.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
