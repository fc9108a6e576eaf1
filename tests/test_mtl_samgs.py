"""gradkit.mtl.SAMGS against an independent numpy implementation of the spec's equations."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from gradkit.mtl import SAMGS
from gradkit.mtl._samgs import magnitude_similarity

# -- independent reference (numpy, float64; written from the paper's Algorithm 1 + code notes) --


class NumpySAMGS:
    def __init__(self, gamma, beta1=0.9, beta2=0.99, eps=1e-8, diag=False, scale=False, clip=None):  # type: ignore[no-untyped-def]
        self.gamma, self.b1, self.b2, self.eps = gamma, beta1, beta2, eps
        self.diag, self.scale, self.clip = diag, scale, clip
        self.t, self.m, self.h = 0, None, 0.0

    def __call__(self, g: np.ndarray) -> tuple[np.ndarray, bool]:
        k = g.shape[0]
        norms = np.linalg.norm(g, axis=1)
        psi_mat = 2 * np.outer(norms, norms) / (norms[:, None] ** 2 + norms[None, :] ** 2)
        if self.diag:
            psi = psi_mat.mean()
        else:
            iu = np.triu_indices(k, 1)
            psi = psi_mat[iu].mean()
        self.t += 1
        self.m = (1 - self.b1) * g if self.m is None else self.b1 * self.m + (1 - self.b1) * g
        self.h = self.b2 * self.h + (1 - self.b2) * (1 - psi) ** 2 + self.eps
        if psi < self.gamma:
            w = norms.mean() / norms
            d = (w[:, None] * g).sum(0)
            eq = True
        else:
            mhat = self.m / (1 - self.b1**self.t)
            hhat = self.h / (1 - self.b2**self.t)
            d = (np.abs(mhat) / np.sqrt(hhat) * g).sum(0)
            eq = False
        if self.scale:
            d = d * k
        if self.clip is not None:
            d = d * min(1.0, self.clip / (np.linalg.norm(d) + 1e-6))
        return d, eq


def _sequence(k: int, p: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = rng.standard_normal((k, p))
        if i % 3 == 1:  # strong magnitude conflict: task k is 1000^k times larger
            g *= 1000.0 ** np.arange(k)[:, None]
        out.append(g)
    return out


@pytest.mark.parametrize(
    ("k", "kwargs"),
    [
        (2, {}),
        (3, {"include_diagonal": True, "gamma": 0.5}),  # with the diagonal, Psi >= 1/K
        (4, {"scale_by_num_tasks": True, "max_norm": 1.0}),
        (3, {"gamma": 0.7, "beta1": 0.5, "beta2": 0.9}),
    ],
)
def test_samgs_golden_sequence(k: int, kwargs: dict) -> None:
    gamma = kwargs.get("gamma", 0.1)
    ref = NumpySAMGS(
        gamma,
        kwargs.get("beta1", 0.9),
        kwargs.get("beta2", 0.99),
        diag=kwargs.get("include_diagonal", False),
        scale=kwargs.get("scale_by_num_tasks", False),
        clip=kwargs.get("max_norm"),
    )
    agg = SAMGS(**kwargs)
    branches = []
    for g in _sequence(k, 6, 9, seed=k):
        expected, eq = ref(g)
        got = agg(torch.from_numpy(g))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
        assert agg.last_equalised == eq
        branches.append(eq)
    assert any(branches) and not all(branches)  # both branches exercised


def test_samgs_oracles() -> None:
    # psi(g, c g) = 2c / (1 + c^2); psi(g, g) = 1
    assert magnitude_similarity(1.0, 3.0) == pytest.approx(2 * 3 / (1 + 9))
    assert magnitude_similarity(2.0, 2.0) == 1.0
    # first step, momentum branch: d = sum |g_k| * g_k / sqrt((1-psi)^2 + eps/(1-beta2))
    g = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.4, -1.0]], dtype=torch.float64)
    n = g.norm(dim=1)
    psi = float(2 * n[0] * n[1] / (n[0] ** 2 + n[1] ** 2))
    hhat = (1 - psi) ** 2 + 1e-8 / (1 - 0.99)
    expected = (g.abs() * g).sum(0) / hhat**0.5
    agg = SAMGS()
    torch.testing.assert_close(agg(g), expected, rtol=1e-6, atol=0)
    assert agg.last_psi == pytest.approx(psi) and agg.last_equalised is False
    torch.testing.assert_close(SAMGS(scale_by_num_tasks=True)(g), 2 * expected, rtol=1e-6, atol=0)
    # equalisation: Psi < gamma; direction invariant to rescaling one task
    big = torch.stack([1000 * g[0], g[1]])
    d1 = SAMGS()(big)
    d2 = SAMGS()(torch.stack([10 * g[0], g[1]]))
    a = SAMGS()
    a(torch.stack([10 * g[0], g[1]]))
    assert a.last_equalised
    torch.testing.assert_close(d1 / d1.norm(), d2 / d2.norm())
    # equal norms with gamma > 1 (forces equalisation): d = sum g_k
    eq = torch.tensor([[3.0, 4.0], [0.0, -5.0]], dtype=torch.float64)
    torch.testing.assert_close(SAMGS(gamma=1.5)(eq), eq.sum(0))
    # clipping
    assert float(SAMGS(max_norm=0.5)(big).norm()) <= 0.5


def test_samgs_zero_task_gradient_is_guarded() -> None:
    g = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]])
    for gamma in (0.1, 1.5):
        out = SAMGS(gamma=gamma)(g)
        assert torch.isfinite(out).all()


def test_samgs_state_roundtrip_resumes_exactly() -> None:
    seq = [torch.from_numpy(g) for g in _sequence(3, 5, 8, seed=7)]
    full = SAMGS(gamma=0.3)
    expected = [full(g) for g in seq]
    first = SAMGS(gamma=0.3)
    for g in seq[:4]:
        first(g)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = SAMGS(gamma=0.3)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for g, e in zip(seq[4:], expected[4:], strict=True):
        assert torch.equal(resumed(g), e)
    assert resumed.state_dict()["step"] == 8


def test_samgs_validation() -> None:
    with pytest.raises(ValueError, match=r"Invalid number of tasks for SAMGS: 1 \(must be >= 2"):
        SAMGS()(torch.ones(1, 3))
    agg = SAMGS()
    agg(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 4\).*built for \(2, 3\)"):
        agg(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"Invalid gamma: -0.1 \(must be >= 0\)"):
        SAMGS(gamma=-0.1)
    with pytest.raises(ValueError, match=r"Invalid beta1: 1.0"):
        SAMGS(beta1=1.0)
    with pytest.raises(ValueError, match=r"Invalid max_norm: 0"):
        SAMGS(max_norm=0)
    with pytest.raises(TypeError, match="Invalid include_diagonal"):
        SAMGS(include_diagonal=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"missing keys \['h', 'm'\]"):
        SAMGS().load_state_dict({"step": 1})
    assert repr(SAMGS()).startswith("SAMGS(gamma=0.1, beta1=0.9, beta2=0.99, eps=1e-08")
