"""Directional sharpness of SGD and Adam directions, with and without coordinate-wise clipping.

A reduced version of the spec's §8(d) experiment (Pan & Li, 2023): a tiny causal transformer
(2 blocks, d = 32, 2 heads, context 16, hand-written attention so that double backward works)
learns next-token prediction on a synthetic sparse Markov chain over 32 tokens. One model is
trained with Adam; at each checkpoint, on a fixed batch, the normalised directional sharpness
``vᵀHv/‖v‖²`` (:func:`gradkit.diagnostics.directional_sharpness`, one Hessian-vector product)
and the cosine with the gradient are printed for four directions at the *same* point:

* ``SGD``: the gradient g;
* ``SGD-clip``: g with its top ``--fraction`` coordinates clipped (``--scope``: per tensor by
  default, or over all parameters);
* ``Adam``: the Adam direction m̂/(√v̂+ε) of the training optimizer's current state with g as
  the next gradient (:func:`gradkit.diagnostics.step_direction`, taken on a copy);
* ``Adam-clip``: the Adam direction clipped the same way
  (:func:`gradkit.transforms.coordinate_clip`).

Usage::

    python benchmarks/sharpness_clip.py                 # 400 Adam steps, 5 checkpoints (~1 min)
    python benchmarks/sharpness_clip.py --smoke         # seconds

Simplification against the paper: the four directions are compared along one (Adam) trajectory
rather than along each method's own trajectory, and no learning rates are tuned.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.diagnostics import directional_sharpness, step_direction
from gradkit.transforms import coordinate_clip


def markov_tokens(n: int, vocab: int, seed: int) -> torch.Tensor:
    """A sparse random Markov chain: each token has 3 successors with random probabilities."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.zeros(vocab, vocab)
    for token in range(vocab):
        successors = torch.randperm(vocab, generator=gen)[:3]
        table[token, successors] = torch.rand(3, generator=gen) + 0.1
    table /= table.sum(1, keepdim=True)
    out = torch.empty(n, dtype=torch.int64)
    out[0] = 0
    draws = torch.rand(n, generator=gen)
    cumulative = table.cumsum(1)
    for i in range(1, n):
        out[i] = int(torch.searchsorted(cumulative[out[i - 1]], draws[i]).clamp(max=vocab - 1))
    return out


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        shape = (b, t, self.heads, d // self.heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        attn = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int, context: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def windows(tokens: torch.Tensor, count: int, context: int, gen: torch.Generator) -> tuple:
    starts = torch.randint(0, tokens.numel() - context - 1, (count,), generator=gen)
    x = torch.stack([tokens[s : s + context] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1 : s + context + 1] for s in starts.tolist()])
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--scope", choices=("tensor", "global"), default="tensor")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.checkpoints = 4, 2
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    vocab, context = 32, 16
    tokens = markov_tokens(20_000 if not args.smoke else 2_000, vocab, args.seed)
    model = TinyLM(vocab, d=32, context=context, layers=2, heads=2)
    params = [p for p in model.parameters() if p.requires_grad]
    adam = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)
    fixed_x, fixed_y = windows(tokens, 64, context, torch.Generator().manual_seed(args.seed + 2))

    def fixed_loss() -> torch.Tensor:
        return F.cross_entropy(model(fixed_x).reshape(-1, vocab), fixed_y.reshape(-1))

    marks = sorted(
        {round(i * args.steps / (args.checkpoints - 1)) for i in range(args.checkpoints)}
    )
    print(
        f"# directional sharpness vᵀHv/‖v‖² on a fixed batch (clip fraction {args.fraction}, scope {args.scope})"
    )
    print(
        "| step | loss | S(SGD) | S(SGD-clip) | S(Adam) | S(Adam-clip) | cos(g, SGD-clip) | cos(g, Adam) | cos(g, Adam-clip) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step in marks:
            loss = fixed_loss()
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            adam_dir = [-d for d in step_direction(adam)]  # = lr·m̂/(√v̂+ε) with g next
            directions = {
                "SGD": list(grads),
                "SGD-clip": coordinate_clip(grads, fraction=args.fraction, scope=args.scope),
                "Adam": adam_dir,
                "Adam-clip": coordinate_clip(adam_dir, fraction=args.fraction, scope=args.scope),
            }
            flat_g = torch.cat([g.reshape(-1) for g in grads])
            sharp, cosine = {}, {}
            for name, v in directions.items():
                sharp[name] = float(directional_sharpness(fixed_loss, params, v))
                flat_v = torch.cat([t.reshape(-1) for t in v])
                cosine[name] = float(flat_g @ flat_v / (flat_g.norm() * flat_v.norm()))
            print(
                f"| {step} | {loss.item():.3f} | {sharp['SGD']:.3g} | {sharp['SGD-clip']:.3g} | "
                f"{sharp['Adam']:.3g} | {sharp['Adam-clip']:.3g} | {cosine['SGD-clip']:.3f} | "
                f"{cosine['Adam']:.3f} | {cosine['Adam-clip']:.3f} |"
            )
        if step == args.steps:
            break
        x, y = windows(tokens, 32, context, gen)
        adam.zero_grad()
        F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1)).backward()
        adam.step()
    print(
        f"\n{args.steps} Adam steps, {len(marks)} checkpoints, {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
