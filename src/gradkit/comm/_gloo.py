"""Run a function on a few local gloo ranks (loopback), with every wait bounded.

Used by the DDP-hook tests and ``benchmarks/ddp_sign_hook.py``. Each rank is a spawned process
with one torch thread, ``MASTER_ADDR=127.0.0.1`` and a free port; it returns its result through a
queue as plain Python/numpy values (torch tensors shared between processes die with the child).
A rank that raises, hangs or dies makes :func:`run_gloo` raise instead of blocking.
"""

from __future__ import annotations

import datetime
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(
    rank: int,
    world_size: int,
    port: int,
    timeout: float,
    results: Any,
    fn: Callable[..., Any],
    args: Sequence[Any],
) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    try:
        dist.init_process_group(
            "gloo",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout),
        )
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:
        results.put((rank, False, traceback.format_exc()))


def run_gloo(
    fn: Callable[..., Any],
    world_size: int = 2,
    args: Sequence[Any] = (),
    timeout: float = 120.0,
) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` on ``world_size`` spawned gloo ranks.

    ``fn`` must be importable by the children (a module-level function). Returns the ranks'
    return values in rank order. Raises ``RuntimeError`` with the child's traceback if a rank
    fails, and ``TimeoutError`` if the ranks are not all done within ``timeout`` seconds (the
    collectives themselves time out after ``timeout`` too); stragglers are killed.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_entry,
            args=(rank, world_size, port, timeout, results, fn, tuple(args)),
            daemon=True,
        )
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    out: dict[int, Any] = {}
    try:
        while len(out) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"run_gloo: only ranks {sorted(out)} of {world_size} finished in {timeout} s"
                )
            try:
                rank, ok, value = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"run_gloo: a rank died with exit code {dead[0]}") from None
                continue
            if not ok:
                raise RuntimeError(f"run_gloo: rank {rank} failed:\n{value}")
            out[rank] = value
        for proc in procs:
            proc.join(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        results.close()
    return [out[rank] for rank in range(world_size)]
