"""The DDP sign hook in a one-rank group (found by the hook's doctest).

With ``world_size = 1`` the gathered payloads form a ``[1, bytes]`` tensor whose scale slice is
already contiguous, so ``.contiguous()`` kept its storage offset, and viewing the bytes as
float32 failed whenever ``ceil(n/8)`` is not a multiple of 4 (``self.storage_offset() must be
divisible by 4``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gradkit.comm import SignCompressionState, sign_compress_hook


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    store = os.fspath(tmp_path / "store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("in_features", [4, 5, 31, 32])
@pytest.mark.parametrize("vote", ["majority", "mean"])
def test_one_rank_hook_gives_the_compressed_gradient(
    one_rank_group: None, in_features: int, vote: str
) -> None:
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(in_features, 2))
    state = SignCompressionState(vote=vote, start_iter=0, error_feedback=False)
    model.register_comm_hook(state, sign_compress_hook)
    x = torch.randn(3, in_features)
    model(x).pow(2).sum().backward()
    reference = torch.nn.Linear(in_features, 2)
    reference.load_state_dict(model.module.state_dict())
    reference(x).pow(2).sum().backward()
    for param, ref in zip(model.module.parameters(), reference.parameters(), strict=True):
        assert ref.grad is not None and param.grad is not None
        # One rank: the vote is its own sign times its own scale, alpha = mean|g| per tensor.
        expected = torch.where(ref.grad >= 0, 1.0, -1.0) * ref.grad.abs().mean()
        torch.testing.assert_close(param.grad, expected)
