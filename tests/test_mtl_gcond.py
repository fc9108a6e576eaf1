"""gradkit.mtl.GCond: golden values from an independent numpy implementation, oracles, the
backward-pass count of the two accumulation modes, state round-trip."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch

from gradkit.mtl import GCond
from gradkit.mtl._gcond import conflict_angle

T = (-0.8, -0.5, 0.0)


class NumpyGCond:
    """Steps 2-10 of the spec (smooth logic, code dominance rule), float64."""

    def __init__(self, k: int, beta: float = 0.85, window: int = 3) -> None:
        self.k, self.beta, self.window = k, beta, window
        self.ema = np.ones(k)
        self.prev = None
        self.m = None
        self.t = 0
        self.hist: list[int] = []

    @staticmethod
    def alpha(c: float) -> float:
        tc, tm, tw = T
        if c >= tm:
            return math.pi / 2 * (1 - min(max((c - tm) / (tw - tm), 0), 1))
        if c > tc:
            return math.pi / 2 + math.pi / 2 * ((c - tm) / (tc - tm)) ** 2
        return math.pi

    def __call__(self, g: np.ndarray) -> np.ndarray:
        g = g.copy()
        k = self.k
        n0 = np.linalg.norm(g, axis=1)
        self.ema = np.maximum(0.95 * self.ema + 0.05 * n0, 1e-8)
        for _ in range(2 * k):
            n = np.linalg.norm(g, axis=1)
            cands = [
                (g[i] @ g[j] / (n[i] * n[j]), i, j)
                for i in range(k)
                for j in range(i + 1, k)
                if n[i] > 0 and n[j] > 0 and g[i] @ g[j] / (n[i] * n[j]) < 0.0
            ]
            if not cands:
                break
            c, i, j = min(cands)
            last = self.hist[-self.window :]
            if len(last) == self.window and len(set(last)) == 1 and last[0] in (i, j):
                w = j if last[0] == i else i
            else:
                score = {}
                for t in (i, j):
                    stab = 0.0
                    if self.prev is not None:
                        stab = max(0.0, g[t] @ self.prev[t] / (np.linalg.norm(self.prev[t]) * n[t]))
                    rel = {s: n[s] / self.ema[s] for s in (i, j)}
                    score[t] = 0.8 * stab + 0.2 * rel[t] / (rel[i] + rel[j])
                w = i if score[i] >= score[j] else j
            lo = j if w == i else i
            self.hist.append(w)
            a = self.alpha(c)
            gw, gl = g[w].copy(), g[lo].copy()
            d = gw @ gl
            g[w] = gw - math.sin(a) * d / (gl @ gl) * gl
            g[lo] = gl - math.sin(min(a, math.pi / 2)) * d / (gw @ gw) * gw
        raw = g.sum(0)
        self.prev = g
        self.t += 1
        self.m = (
            (1 - self.beta) * raw if self.m is None else self.beta * self.m + (1 - self.beta) * raw
        )
        return self.m / (1 - self.beta**self.t)


def test_gcond_golden_sequence_k3() -> None:
    rng = np.random.default_rng(3)
    ref = NumpyGCond(3)
    agg = GCond(buffer_dtype=torch.float64)
    for _ in range(8):
        g = rng.standard_normal((3, 5))
        g[1] -= 1.5 * g[0]  # make conflicts likely
        got = agg(torch.from_numpy(g))
        np.testing.assert_allclose(got.numpy(), ref(g), rtol=1e-5, atol=1e-6)
    assert len(agg.history) > 0  # arbitration exercised


def test_gcond_golden_with_accumulation() -> None:
    rng = np.random.default_rng(0)
    ref = NumpyGCond(2)
    agg = GCond(accumulation_steps=4, buffer_dtype=torch.float64)
    for _ in range(3):
        batches = [rng.standard_normal((2, 4)) for _ in range(4)]
        for b in batches:
            agg.accumulate(torch.from_numpy(b))
        got = agg.step()
        np.testing.assert_allclose(got.numpy(), ref(np.mean(batches, axis=0)), rtol=1e-5, atol=1e-6)


def test_gcond_oracles() -> None:
    # no conflict: first output = sum of the gradients
    g = torch.rand(3, 4, dtype=torch.float64)
    torch.testing.assert_close(GCond()(g), g.sum(0).float().double(), rtol=1e-6, atol=1e-6)
    # alpha: continuous at t_main, monotone non-increasing, pi below t_crit
    assert conflict_angle(-0.5, T, 2.0) == pytest.approx(math.pi / 2)
    assert conflict_angle(-0.5 - 1e-9, T, 2.0) == pytest.approx(math.pi / 2)
    cs = np.linspace(-1, 1, 201)
    alphas = [conflict_angle(float(c), T, 2.0) for c in cs]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(alphas))
    assert conflict_angle(-0.9, T, 2.0) == math.pi and conflict_angle(0.3, T, 2.0) == 0.0
    # c = t_main: both projected like simultaneous PCGrad
    agg = GCond(return_raw_grad=True)
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([-0.5, math.sqrt(0.75)])  # cos = -0.5
    agg(torch.stack([g1, g2]))
    p = agg.prev
    assert p is not None
    assert abs(float(p[0] @ g2)) < 1e-6 and abs(float(p[1] @ g1)) < 1e-6
    # c <= t_crit: winner unchanged, loser orthogonal to the winner
    agg = GCond(return_raw_grad=True)
    g2 = torch.tensor([-0.95, math.sqrt(1 - 0.95**2)])
    agg(torch.stack([g1, g2]))
    p = agg.prev
    assert p is not None
    w = 0 if torch.allclose(p[0], g1, atol=1e-6) else 1
    orig = (g1, g2)
    torch.testing.assert_close(p[w], orig[w], atol=1e-6, rtol=0)
    assert abs(float(p[1 - w] @ orig[w])) < 1e-6


def test_gcond_dominance_rule() -> None:
    g = torch.tensor([[3.0, 0.0], [-1.0, 0.2]])
    code, readme = GCond(), GCond(dominance_mode="readme")
    code.history = [0, 0, 0]
    readme.history = [0, 0, 0]
    code(g)
    readme(g)
    assert code.history[-1] == 1 and readme.history[-1] == 0


def _problem() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 4), torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)


@pytest.mark.parametrize(("stochastic", "expected"), [(True, 4), (False, 8)])
def test_gcond_backward_pass_count(stochastic: bool, expected: int) -> None:
    enc, h1, h2 = _problem()
    calls = []
    enc.weight.register_hook(lambda grad: calls.append(1))
    batches = iter([torch.randn(5, 3) for _ in range(10)])

    def loss_fn(x):  # type: ignore[no-untyped-def]
        z = enc(x)
        return [h1(z).pow(2).mean(), (h2(z) - 1).pow(2).mean()]

    agg = GCond(accumulation_steps=4, stochastic=stochastic)
    update = agg.backward(loss_fn, batches, enc.parameters())
    assert len(calls) == expected  # A (stochastic) or A*K (classic) backward passes
    assert update.shape == (16 + 5 + 5,)  # shared then both heads (head_params="joint")
    assert enc.weight.grad is not None and h1.weight.grad is not None
    assert len(list(batches)) == 6  # exactly A batches drawn
    with pytest.raises(ValueError, match="Invalid accumulation_steps: 3"):
        GCond(accumulation_steps=3).backward(
            loss_fn, iter([torch.randn(5, 3)] * 3), enc.parameters()
        )
    with pytest.raises(ValueError, match="batches ran out after 1"):
        GCond(accumulation_steps=2).backward(loss_fn, iter([torch.randn(5, 3)]), enc.parameters())


def test_gcond_state_roundtrip_and_validation() -> None:
    rng = np.random.default_rng(1)
    seq = [torch.from_numpy(rng.standard_normal((2, 3))).float() for _ in range(6)]
    full = GCond(buffer_dtype=torch.bfloat16)
    expected = [full(g) for g in seq]
    first = GCond(buffer_dtype=torch.bfloat16)
    for g in seq[:3]:
        first(g)
    first.accumulate(seq[3])  # pending accumulation is saved too
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = GCond(buffer_dtype=torch.bfloat16)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(resumed.step(), expected[3])
    for g, e in zip(seq[4:], expected[4:], strict=True):
        assert torch.equal(resumed(g), e)
    with pytest.raises(ValueError, match="nothing accumulated"):
        GCond().step()
    agg = GCond(loss_weights=[1.0, 1.0])
    agg.accumulate(torch.ones(1, 3), tasks=[0])
    with pytest.raises(ValueError, match=r"task\(s\) \[1\]"):
        agg.step()
    with pytest.raises(ValueError, match="Invalid task index: 2"):
        GCond(loss_weights=[1, 1]).accumulate(torch.ones(1, 3), tasks=[2])
    with pytest.raises(ValueError, match="Invalid thresholds"):
        GCond(thresholds=(0.0, -0.5, -0.8))
    with pytest.raises(ValueError, match="Invalid dominance_mode: 'x'"):
        GCond(dominance_mode="x")
    with pytest.raises(ValueError, match="Invalid accumulation_steps: 0"):
        GCond(accumulation_steps=0)
    with pytest.raises(ValueError, match=r"task\(s\) \[1\]"):
        GCond()(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]))
    assert repr(GCond()).startswith("GCond(accumulation_steps=1, stochastic=True")


# ---------------------------------------------------------------- fidelity to the official code
def test_gcond_legacy_weak_zone_records_no_winner() -> None:
    # Official grad_conductor.py, _resolve_conflict: only the critical and main zones
    # (c < t_main) run the arbitrator and append the winner; the symmetric weak zone does not.
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([-0.3, math.sqrt(1 - 0.09)])  # cos = -0.3: weak zone
    code = GCond(use_smooth_logic=False, return_raw_grad=True)
    code(torch.stack([g1, g2]))
    assert code.history == []
    earlier = GCond(use_smooth_logic=False, return_raw_grad=True, legacy_history="every_pair")
    earlier(torch.stack([g1, g2]))
    assert len(earlier.history) == 1
    # The projection itself is the symmetric one either way.
    assert code.prev is not None and earlier.prev is not None
    torch.testing.assert_close(code.prev, earlier.prev)
    # A main-zone conflict (c = -0.6) is arbitrated and recorded in both.
    g3 = torch.tensor([-0.6, 0.8])
    main = GCond(use_smooth_logic=False)
    main(torch.stack([g1, g3]))
    assert len(main.history) == 1
    # History that weak conflicts do not fill cannot trigger the dominance rule: task 0 won
    # twice, a weak conflict follows, then a main conflict is scored, not handed to task 1.
    seq = GCond(use_smooth_logic=False, return_raw_grad=True)
    seq.history = [0, 0]
    seq(torch.stack([g1, g2]))
    assert seq.history == [0, 0]
    with pytest.raises(ValueError, match="Invalid legacy_history: 'x'"):
        GCond(legacy_history="x")


def _heads_problem() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, list]:
    torch.manual_seed(1)
    enc, h1, h2 = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    batches = [torch.randn(6, 3) for _ in range(4)]
    return enc, h1, h2, batches


def _loss_fn(enc, h1, h2):  # type: ignore[no-untyped-def]
    def loss_fn(x):  # type: ignore[no-untyped-def]
        z = torch.tanh(enc(x))
        # Task 2 also reaches h1 (with a zero gradient): h1 is in both tasks' inferred params
        # and must be counted once.
        return [h1(z).pow(2).mean(), (h2(z) + 2.0).pow(2).mean() - (h1(z) * 0).sum()]

    return loss_fn


def _full_rows(enc, h1, h2, x):  # type: ignore[no-untyped-def]
    """Each task's gradient w.r.t. [enc, h1, h2] as one vector (zeros where not reached)."""
    params = [*enc.parameters(), *h1.parameters(), *h2.parameters()]
    rows = []
    for loss in _loss_fn(enc, h1, h2)(x):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).reshape(-1)
                    for p, g in zip(params, grads, strict=True)
                ]
            )
        )
    return params, torch.stack(rows)


@pytest.mark.parametrize("stochastic", [False, True])
def test_gcond_backward_resolves_head_params_with_the_shared_ones(stochastic: bool) -> None:
    # The official code resolves conflicts and applies momentum over all trainable params as one
    # vector. Reference: GCond on the full [shared, head1, head2] Jacobian of the same batches.
    enc, h1, h2, batches = _heads_problem()
    agg = GCond(accumulation_steps=2, stochastic=stochastic, buffer_dtype=torch.float64)
    ref = GCond(
        accumulation_steps=2, stochastic=stochastic, buffer_dtype=torch.float64, loss_weights=[1, 1]
    )
    for step in range(2):
        pair = batches[2 * step : 2 * step + 2]
        for p in [*enc.parameters(), *h1.parameters(), *h2.parameters()]:
            p.grad = None
        # Explicit task params fix the order of the update vector; inferred ones (graph order)
        # must give the same .grad.
        task_params = None if stochastic else [list(h1.parameters()), list(h2.parameters())]
        update = agg.backward(
            _loss_fn(enc, h1, h2),
            iter(pair),
            enc.parameters(),
            task_params=task_params,
            unused="raise",
        )
        for a, x in enumerate(pair):
            params, rows = _full_rows(enc, h1, h2, x)
            if stochastic:
                ref.accumulate(rows[a : a + 1], tasks=[a])
            else:
                ref.accumulate(rows)
        expected = ref.step()
        if task_params is not None:
            torch.testing.assert_close(update, expected.to(update.dtype))
        offset = 0
        for p in params:
            assert p.grad is not None
            torch.testing.assert_close(
                p.grad.reshape(-1), expected[offset : offset + p.numel()].to(p.dtype)
            )
            offset += p.numel()
    # The heads moved through the momentum: the second step's head update is not the head's
    # plain gradient (what the earlier passthrough wrote).
    assert agg.momentum is not None and agg.momentum.shape == (expected.numel(),)


def test_gcond_backward_passthrough_keeps_the_earlier_head_semantics() -> None:
    enc, h1, h2, batches = _heads_problem()
    agg = GCond(accumulation_steps=2, stochastic=False, head_params="passthrough")
    update = agg.backward(_loss_fn(enc, h1, h2), iter(batches[:2]), enc.parameters())
    assert update.shape == (16,)  # the shared params only
    # Each head gets its own task's mean gradient, unresolved and without momentum.
    expected = [torch.zeros_like(p) for p in h1.parameters()]
    for x in batches[:2]:
        z = torch.tanh(enc(x))
        grads = torch.autograd.grad(h1(z).pow(2).mean(), list(h1.parameters()))
        expected = [e + g / 2 for e, g in zip(expected, grads, strict=True)]
    for p, e in zip(h1.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e)
    with pytest.raises(ValueError, match="Invalid head_params: 'x'"):
        GCond(head_params="x")
