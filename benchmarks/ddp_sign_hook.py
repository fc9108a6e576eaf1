"""DDP with gradkit's sign-compression hook against no hook and torch's allreduce_hook.

Two gloo ranks on loopback (``MASTER_ADDR=127.0.0.1``), one torch thread each, train the same
MLP (64-256-256-10, teacher-labelled Gaussian data, a different batch stream per rank,
``bucket_cap_mb=0.05`` so that DDP makes several buckets) with:

* no hook (DDP's built-in allreduce) and ``torch...default_hooks.allreduce_hook``;
* ``gradkit.comm.sign_compress_hook``: majority vote with error feedback, mean with error
  feedback, and majority without error feedback (``start_iter=2`` warm-up steps of allreduce).

It prints, per configuration, the final training loss (full data set), whether the ranks hold
bitwise-identical parameters, payload bytes per rank (what a rank contributes to each
collective: ``4 × numel`` per step for allreduce, the hook's ``bytes_sent`` counter for the sign
hook, warm-up included), the byte ratio against allreduce, and the training-loop time (median
over repeats, the configurations interleaved) as a ratio to no hook measured in the same run.

Usage::

    python benchmarks/ddp_sign_hook.py            # 300 steps, 3 repeats (about a minute)
    python benchmarks/ddp_sign_hook.py --smoke    # 30 steps, 1 repeat (a few seconds)
    python benchmarks/ddp_sign_hook.py --momentum 0.9 --lr 0.05

On loopback the communication is nearly free, so the time column shows the hook's compute
overhead (packing, all_gather of small payloads, decoding), not a network saving.
"""

import argparse
import os
import statistics
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from gradkit.comm import SignCompressionState, sign_compress_hook
from gradkit.comm._gloo import run_gloo

CONFIGS = ("no hook", "allreduce_hook", "sign majority+EF", "sign mean+EF", "sign majority, no EF")


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(4096, 64, generator=gen)
    teacher = torch.randn(64, 10, generator=gen)
    return x, (x @ teacher).argmax(dim=1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def _make(name: str) -> tuple[DDP, SignCompressionState | None]:
    ddp = DDP(_model(), bucket_cap_mb=0.05)
    state = None
    if name == "allreduce_hook":
        ddp.register_comm_hook(None, default_hooks.allreduce_hook)
    elif name.startswith("sign"):
        state = SignCompressionState(
            vote="mean" if "mean" in name else "majority", error_feedback="no EF" not in name
        )
        ddp.register_comm_hook(state, sign_compress_hook)
    return ddp, state


def _worker(rank: int, world: int, steps: int, repeats: int, lr: float, momentum: float) -> Any:
    x, y = _data()
    batches = []
    for step in range(steps):
        gen = torch.Generator().manual_seed((rank + 1) * 100_003 + step)
        idx = torch.randint(0, x.shape[0], (64,), generator=gen)
        batches.append((x[idx], y[idx]))
    numel = sum(p.numel() for p in _model().parameters())
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for name in CONFIGS:
            ddp, state = _make(name)
            opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=momentum)
            dist.barrier()
            start = time.perf_counter()
            for xb, yb in batches:
                opt.zero_grad()
                nn.functional.cross_entropy(ddp(xb), yb).backward()
                opt.step()
            dist.barrier()
            times[name].append(time.perf_counter() - start)
            with torch.no_grad():
                loss = float(nn.functional.cross_entropy(ddp.module(x), y))
            flat = torch.cat([p.detach().reshape(-1) for p in ddp.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            sent = 4 * numel * steps if state is None else state.bytes_sent
            stats = state.compression_stats() if state is not None else {}
            rows[name] = {
                "loss": loss,
                "identical": all(torch.equal(gathered[0], g) for g in gathered[1:]),
                "bytes": sent,
                "ratio": 4 * numel * steps / sent,
                "compressed_ratio": stats.get("compressed_ratio"),
            }
    for name in CONFIGS:
        rows[name]["time"] = statistics.median(times[name])
    return {"rows": rows, "numel": numel}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="30 steps, 1 repeat")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--momentum", type=float, default=0.0)
    args = parser.parse_args(argv)
    steps, repeats = (30, 1) if args.smoke else (args.steps, args.repeats)
    load_before = os.getloadavg()
    result = run_gloo(_worker, 2, (steps, repeats, args.lr, args.momentum), timeout=600.0)[0]
    load_after = os.getloadavg()
    rows = result["rows"]
    base = rows["no hook"]["time"]
    print(
        f"2 gloo ranks (loopback, 1 thread each), MLP 64-256-256-10 ({result['numel']:,} params), "
        f"{steps} SGD steps, lr {args.lr}, momentum {args.momentum}, batch 64/rank, "
        f"median of {repeats}; torch {torch.__version__}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print()
    print(
        "| config | final loss | ranks identical | bytes sent/rank | ratio vs allreduce "
        "| compressed steps only | loop time | time vs no hook |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in CONFIGS:
        r = rows[name]
        comp = "—" if r["compressed_ratio"] is None else f"{r['compressed_ratio']:.1f}×"
        print(
            f"| {name} | {r['loss']:.4f} | {'yes' if r['identical'] else 'NO'} | {r['bytes']:,} "
            f"| {r['ratio']:.1f}× | {comp} | {r['time']:.2f} s | {r['time'] / base:.2f} |"
        )
    if not all(r["identical"] for r in rows.values()):
        raise SystemExit("ranks diverged")


if __name__ == "__main__":
    main()
