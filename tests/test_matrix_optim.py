"""SWAN, SinkGD, ARO and the matrix kernels: mathematical properties, routing, statelessness.

The shared conformance suite (tests/test_conformance.py) covers the torch.optim conventions;
this module checks the math: Newton–Schulz against the SVD polar factor, GradNorm moments and
invariances, SR-Sinkhorn against plain Sinkhorn on G⊙G, ARO's rotation properties, the AdamW
route against torch.optim.AdamW, and the parameter routing.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from gradkit.optim import ARO, SWAN, SinkGD, matrix_param_groups
from gradkit.optim._aro import aro_base, aro_direction
from gradkit.optim._swan import swan_direction, swan_grad_norm
from gradkit.testing import reachable_tensors, state_bytes
from gradkit.transforms import (
    as_matrix,
    grad_norm,
    orthogonal_qr,
    sr_sinkhorn,
    sr_sinkhorn_factored,
    whiten_newton_schulz,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _polar(matrix: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u @ vh


def _with_spectrum(rows: int, cols: int, singular: torch.Tensor, seed: int) -> torch.Tensor:
    """A float64 ``rows × cols`` matrix with the given singular values and random vectors."""
    gen = _gen(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=gen, dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=F64))
    k = singular.numel()
    return u[:, :k] @ torch.diag(singular.to(F64)) @ v[:, :k].T


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize(
    ("rows", "cols", "steps"),
    [(24, 24, 30), (16, 48, 20), (48, 16, 20), (32, 128, 20)],
)
def test_newton_schulz_whitening_matches_svd_polar_factor(rows: int, cols: int, steps: int) -> None:
    k = min(rows, cols)
    # Full rank, condition number 10 (square) and Gaussian (non-square, aspect ≥ 3).
    if rows == cols:
        matrix = _with_spectrum(rows, cols, torch.logspace(0, 1, k, dtype=F64), seed=rows)
    else:
        matrix = torch.randn(rows, cols, generator=_gen(rows), dtype=F64)
    whitened = whiten_newton_schulz(matrix, steps=steps)
    assert whitened.dtype == F64
    torch.testing.assert_close(whitened, _polar(matrix), atol=1e-5, rtol=0)


def test_newton_schulz_runs_in_float32_for_low_precision_inputs() -> None:
    matrix = torch.randn(8, 32, generator=_gen(1)).to(torch.bfloat16)
    assert whiten_newton_schulz(matrix).dtype == torch.float32


def test_grad_norm_rows_have_mean_zero_and_std_one() -> None:
    matrix = torch.randn(6, 40, generator=_gen(2), dtype=F64) * 5 + 3
    normed = grad_norm(matrix)
    torch.testing.assert_close(normed.mean(dim=1), torch.zeros(6, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        normed.std(dim=1, unbiased=False), torch.ones(6, dtype=F64), atol=1e-12, rtol=0
    )
    assert math.isclose(float(normed.norm()), math.sqrt(6 * 40), rel_tol=1e-12)
    constant = grad_norm(torch.ones(2, 5, dtype=F64))
    assert torch.equal(constant, torch.zeros(2, 5, dtype=F64))  # a constant row: 0, not NaN


def test_swan_direction_is_invariant_to_row_affine_maps_and_scale() -> None:
    gen = _gen(3)
    g = torch.randn(8, 32, generator=gen, dtype=F64)
    d = torch.rand(8, 1, generator=gen, dtype=F64) + 0.1
    b = torch.randn(8, 1, generator=gen, dtype=F64)
    base = swan_direction(g, ns_steps=25)
    torch.testing.assert_close(swan_direction(d * g + b, ns_steps=25), base)
    torch.testing.assert_close(swan_direction(7.5 * g, ns_steps=25), base)
    # Rescaled to ‖GradNorm(G)‖_F = √(mn): RMS 1.
    assert math.isclose(float(base.square().mean().sqrt()), 1.0, rel_tol=1e-9)
    # Tall matrices: the default standardises rows over the inputs, so the invariance is
    # still to row-affine maps; the legacy gradnorm_axis="long" transposes first, so there it
    # is to column-affine maps.
    tall = g.T.contiguous()  # 32 × 8
    d_rows = torch.rand(32, 1, generator=gen, dtype=F64) + 0.1
    b_rows = torch.randn(32, 1, generator=gen, dtype=F64)
    torch.testing.assert_close(
        swan_direction(tall * d_rows + b_rows, ns_steps=40), swan_direction(tall, ns_steps=40)
    )
    torch.testing.assert_close(
        swan_direction(tall * d.T + b.T, ns_steps=25, gradnorm_axis="long"),
        swan_direction(tall, ns_steps=25, gradnorm_axis="long"),
    )


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (12, 12)])
def test_swan_grad_norm_standardises_rows_over_the_input_dimension(shape) -> None:
    # The paper's GradNorm (arXiv:2502.07752 eq. 30; "each row across the input dimension"):
    # every row (output unit) of the (out, in) gradient has mean 0 and population std 1 over
    # the inputs, whatever the shape. Before the fix a tall gradient was transposed first.
    gen = _gen(20)
    g = torch.randn(*shape, generator=gen, dtype=F64) * torch.rand(
        shape[0], 1, generator=gen, dtype=F64
    ).mul(5).exp() + torch.randn(1, shape[1], generator=gen, dtype=F64)
    normed = swan_grad_norm(g)
    rows = shape[0]
    torch.testing.assert_close(normed.mean(dim=1), torch.zeros(rows, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        normed.std(dim=1, unbiased=False), torch.ones(rows, dtype=F64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(normed, grad_norm(g))
    # The legacy axis: over the longer side (the columns of a tall matrix).
    legacy = swan_grad_norm(g, gradnorm_axis="long")
    long_dim = 0 if shape[0] > shape[1] else 1
    torch.testing.assert_close(
        legacy.std(dim=long_dim, unbiased=False),
        torch.ones(shape[1 - long_dim], dtype=F64),
        atol=1e-12,
        rtol=0,
    )


def test_swan_default_on_a_tall_matrix_is_the_pseudo_inverse_polar_factor_of_row_norm() -> None:
    # Tall 64×16: GradNorm over the 16 inputs, rank 15 after centring; the default update is
    # U_r V_rᵀ of GradNorm(G) (rows over the inputs), rescaled to RMS 1.
    gen = _gen(21)
    g = (
        torch.randn(64, 16, generator=gen, dtype=F64)
        * torch.randn(64, 1, generator=gen, dtype=F64).exp()
    )
    normed = grad_norm(g)
    u, s, vh = torch.linalg.svd(normed, full_matrices=False)
    assert float(s[-1]) < 1e-10 * float(s[0])
    pinv_polar = u[:, :-1] @ vh[:-1]
    direction = swan_direction(g, ns_steps=40, rescale=False)
    torch.testing.assert_close(direction, pinv_polar, atol=1e-8, rtol=0)
    rescaled = swan_direction(g, ns_steps=40)
    assert math.isclose(float(rescaled.square().mean().sqrt()), 1.0, rel_tol=1e-9)
    # The legacy axis gives a different update here (what the issue measured).
    legacy = swan_direction(g, ns_steps=40, gradnorm_axis="long")
    cosine = float((legacy * rescaled).sum() / legacy.norm() / rescaled.norm())
    assert cosine < 0.9, cosine
    # square="uncentered" on a tall matrix: the polar factor of the row-scaled G (full rank).
    uncentered = swan_direction(g, ns_steps=40, square="uncentered", rescale=False)
    torch.testing.assert_close(uncentered, _polar(grad_norm(g, center=False)), atol=1e-8, rtol=0)


def test_swan_gradnorm_axis_long_reproduces_the_earlier_update_exactly() -> None:
    # The earlier swan_direction, written out: transpose tall matrices, normalise rows over the
    # longer side, pseudo-inverse trick only for square matrices, transpose back.
    def earlier(grad: torch.Tensor, ns_steps: int = 20, eps: float = 1e-8) -> torch.Tensor:
        transposed = grad.shape[-2] > grad.shape[-1]
        g = grad.mT if transposed else grad
        rows, cols = g.shape[-2], g.shape[-1]
        normed = grad_norm(g, eps)
        if rows == cols:
            gram = normed.mT @ normed
            trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)[..., None, None]
            fill = trace / max(cols - 1, 1) / cols
            from gradkit.transforms import inverse_sqrt_newton_schulz

            direction = normed @ inverse_sqrt_newton_schulz(gram + fill, ns_steps, eps)
        else:
            direction = whiten_newton_schulz(normed, ns_steps, eps)
        norm = torch.linalg.matrix_norm(direction)[..., None, None]
        direction = direction * (torch.linalg.matrix_norm(normed)[..., None, None] / norm)
        return direction.mT if transposed else direction

    gen = _gen(22)
    for shape in [(64, 16), (16, 64), (12, 12)]:
        for dtype in (torch.float32, F64):
            g = torch.randn(*shape, generator=gen, dtype=dtype)
            assert torch.equal(swan_direction(g, gradnorm_axis="long"), earlier(g))
    # And through the optimizer: one step with the flag equals the earlier formula bit for bit.
    w = nn.Parameter(torch.zeros(64, 16))
    grad = torch.randn(64, 16, generator=gen)
    w.grad = grad
    SWAN([w], lr=0.1, gradnorm_axis="long").step()
    assert torch.equal(w.detach(), -(earlier(grad) * 0.1))


def test_swan_direction_without_rescale_is_the_polar_factor_of_grad_norm() -> None:
    g = torch.randn(8, 40, generator=_gen(4), dtype=F64)
    direction = swan_direction(g, ns_steps=25, rescale=False)
    torch.testing.assert_close(direction, _polar(grad_norm(g)), atol=1e-8, rtol=0)


def test_swan_centred_square_case_has_pseudo_inverse_semantics() -> None:
    # Centring makes GradNorm(G)·1 = 0: for a square matrix the Gram matrix is singular.
    n = 12
    g = _with_spectrum(n, n, torch.logspace(0, 0.5, n, dtype=F64), seed=5)
    normed = grad_norm(g)
    u, s, vh = torch.linalg.svd(normed)
    assert float(s[-1]) < 1e-10 * float(s[0])  # rank n-1
    pinv_polar = u[:, :-1] @ vh[:-1]  # U_r V_rᵀ over the non-zero singular values
    direction = swan_direction(g, ns_steps=40, rescale=False)
    torch.testing.assert_close(direction, pinv_polar, atol=1e-8, rtol=0)
    # The default rescale keeps RMS 1 (‖U_r V_rᵀ‖_F = √(n-1)).
    rescaled = swan_direction(g, ns_steps=40)
    torch.testing.assert_close(rescaled, pinv_polar * math.sqrt(n * n / (n - 1)))
    # No growth of the null direction in float32, even with many iterations.
    long_run = swan_direction(g.float(), ns_steps=100, rescale=False)
    assert torch.isfinite(long_run).all()
    torch.testing.assert_close(long_run.double(), pinv_polar, atol=1e-4, rtol=0)
    # The alternative: no centring for square matrices ⇒ polar factor of the row-scaled G.
    uncentered = swan_direction(g, ns_steps=40, square="uncentered", rescale=False)
    torch.testing.assert_close(uncentered, _polar(grad_norm(g, center=False)), atol=1e-8, rtol=0)


def test_sr_sinkhorn_fixed_point_and_frobenius_norm() -> None:
    gen = _gen(6)
    rows, cols = 64, 256
    # Log-normally scaled rows and columns, as in real gradients.
    g = torch.randn(rows, cols, generator=gen, dtype=F64)
    g = g * torch.randn(rows, 1, generator=gen, dtype=F64).exp()
    g = g * torch.randn(1, cols, generator=gen, dtype=F64).exp()
    for iters in (1, 2, 5):
        x = sr_sinkhorn(g, iters)
        assert math.isclose(float(x.norm()), math.sqrt(rows * cols), rel_tol=1e-12)
        torch.testing.assert_close(
            x.norm(dim=0), torch.full((cols,), math.sqrt(rows), dtype=F64), atol=1e-10, rtol=0
        )
    x = sr_sinkhorn(g, 5)  # the default L
    torch.testing.assert_close(
        x.norm(dim=1), torch.full((rows,), math.sqrt(cols), dtype=F64), atol=1e-4, rtol=0
    )
    # Scale invariance and equivariance to row/column permutations.
    torch.testing.assert_close(sr_sinkhorn(0.01 * g, 5), x)
    rperm, cperm = torch.randperm(rows, generator=gen), torch.randperm(cols, generator=gen)
    torch.testing.assert_close(sr_sinkhorn(g[rperm][:, cperm], 5), x[rperm][:, cperm])


def test_sr_sinkhorn_is_the_square_root_of_sinkhorn_on_squared_entries() -> None:
    g = torch.randn(10, 30, generator=_gen(7), dtype=F64)
    p = g * g
    for _ in range(4):  # plain Sinkhorn: row sums n, then column sums m
        p = p * (30 / p.sum(dim=1, keepdim=True))
        p = p * (10 / p.sum(dim=0, keepdim=True))
    x = sr_sinkhorn(g, 4)
    torch.testing.assert_close(x * x, p)
    torch.testing.assert_close(x.sign(), g.sign())


def test_factored_sr_sinkhorn_equals_the_explicit_iteration() -> None:
    gen = _gen(19)
    g = (
        torch.randn(3, 12, 20, generator=gen, dtype=F64)
        * torch.randn(3, 12, 1, generator=gen).exp()
    )
    g[0, 4] = 0.0  # a zero row
    g[1, :, 7] = 0.0  # a zero column
    for iters in (1, 5):
        torch.testing.assert_close(sr_sinkhorn_factored(g, iters), sr_sinkhorn(g, iters))
    x = sr_sinkhorn(g, 5)
    assert torch.equal(x[0, 4], torch.zeros(20, dtype=F64))
    assert torch.equal(x[1, :, 7], torch.zeros(12, dtype=F64))
    # Scale invariance holds at any magnitude (the eps clamp is relative to the largest entry).
    torch.testing.assert_close(sr_sinkhorn(1e-30 * g, 5), x)
    torch.testing.assert_close(sr_sinkhorn_factored(1e-30 * g.float(), 5), x.float())


def test_orthogonal_qr_sign_convention() -> None:
    a = torch.randn(7, 7, generator=_gen(8), dtype=F64)
    q = orthogonal_qr(a)
    torch.testing.assert_close(q.T @ q, torch.eye(7, dtype=F64))
    r = q.T @ a
    assert (torch.diagonal(r) > 0).all()
    flips = torch.tensor([1.0, -1, 1, -1, -1, 1, 1], dtype=F64)
    torch.testing.assert_close(orthogonal_qr(a * flips), q * flips)


# ---------------------------------------------------------------------------- ARO
@pytest.mark.parametrize("base", ["sinkhorn", "row_norm", "sign"])
def test_aro_is_invariant_to_rotation_sign_flips(base: str) -> None:
    gen = _gen(9)
    m = torch.randn(6, 20, generator=gen, dtype=F64)
    rotation = orthogonal_qr(torch.randn(6, 6, generator=gen, dtype=F64))
    flips = torch.tensor([1.0, -1, -1, 1, -1, 1], dtype=F64)
    direction, new_rotation = aro_direction(m, rotation, base=base)
    flipped_direction, flipped_rotation = aro_direction(m, rotation * flips, base=base)
    torch.testing.assert_close(flipped_direction, direction)
    # The cross matrix becomes A·D, so the sign-fixed QR gives R_t·D: the flips propagate to
    # the new rotation but never reach the update.
    torch.testing.assert_close(flipped_rotation, new_rotation * flips)
    # The update R f(Rᵀ M) itself does not depend on the column signs of R.
    f = aro_base(new_rotation.T @ m, base)
    g = aro_base((new_rotation * flips).T @ m, base)
    torch.testing.assert_close((new_rotation * flips) @ g, new_rotation @ f)


def test_aro_frobenius_base_is_a_no_op() -> None:
    gen = _gen(10)
    m = torch.randn(5, 9, generator=gen, dtype=F64)
    rotation = orthogonal_qr(torch.randn(5, 5, generator=gen, dtype=F64))
    direction, _ = aro_direction(m, rotation, base="frobenius")
    torch.testing.assert_close(direction, m * (math.sqrt(45) / m.norm()))


def test_aro_row_norm_with_fixed_momentum_converges_to_scaled_polar_factor() -> None:
    rows, cols = 8, 24
    m = _with_spectrum(rows, cols, torch.logspace(0, 1, rows, dtype=F64).flip(0), seed=11)
    rotation = torch.eye(rows, dtype=F64)
    for _ in range(200):
        direction, rotation = aro_direction(m, rotation, base="row_norm")
        torch.testing.assert_close(rotation.T @ rotation, torch.eye(rows, dtype=F64))
    torch.testing.assert_close(direction, math.sqrt(cols) * _polar(m), atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", ["forloop", "foreach"])
def test_aro_rotation_stays_orthogonal_and_update_has_rms_0_2(impl: str) -> None:
    gen = _gen(12)
    w = nn.Parameter(torch.randn(6, 10, generator=gen))
    lr = 0.1
    opt = ARO([w], lr=lr, foreach=impl == "foreach")
    for _ in range(5):
        w.grad = torch.randn(6, 10, generator=gen)
        before = w.detach().clone()
        opt.step()
        rotation = opt.state[w]["rotation"]
        assert rotation.dtype == torch.float32
        torch.testing.assert_close(rotation.T @ rotation, torch.eye(6), atol=1e-5, rtol=0)
        step_rms = float((w.detach() - before).square().mean().sqrt())
        assert math.isclose(step_rms, 0.2 * lr, rel_tol=1e-4)


def test_aro_rotates_the_smaller_side_by_default() -> None:
    # On a tall momentum, rotating the long side (dion's "rows") lets round-off rows of RᵀM be
    # normalised up to full size: much of the update leaves the column space of M.
    m = torch.randn(64, 16, generator=_gen(18)) * 0.01
    basis, _ = torch.linalg.qr(m.double())

    def inside(update: torch.Tensor) -> float:
        update = update.double()
        return float((basis @ (basis.T @ update)).norm() / update.norm())

    rotation = torch.eye(64)
    for _ in range(3):
        long_side, rotation = aro_direction(m, rotation)
    assert inside(long_side) < 0.8
    w = nn.Parameter(torch.zeros(64, 16))
    opt = ARO([w], lr=1.0, momentum=0.0)
    for _ in range(3):
        w.grad = m.clone()
        before = w.detach().clone()
        opt.step()
    assert opt.state[w]["rotation"].shape == (16, 16)
    assert inside(w.detach() - before) > 0.95


def test_aro_keeps_float32_rotation_for_bf16_params_through_a_checkpoint() -> None:
    gen = _gen(20)
    w = nn.Parameter(torch.randn(4, 8, generator=gen).to(torch.bfloat16))
    opt = ARO([w], lr=0.01)
    for _ in range(2):
        w.grad = torch.randn(4, 8, generator=gen).to(torch.bfloat16)
        opt.step()
    rotation = opt.state[w]["rotation"]
    assert rotation.dtype == torch.float32
    assert opt.state[w]["momentum_buffer"].dtype == torch.float32  # upcast=True (default)
    twin = nn.Parameter(w.detach().clone())
    other = ARO([twin], lr=0.01)
    other.load_state_dict(opt.state_dict())
    assert other.state[twin]["rotation"].dtype == torch.float32
    assert torch.equal(other.state[twin]["rotation"], rotation)
    assert other.state[twin]["momentum_buffer"].dtype == torch.float32
    native = nn.Parameter(w.detach().clone())
    torch_like = ARO([native], lr=0.01, upcast=False)
    native.grad = torch.randn(4, 8, generator=gen).to(torch.bfloat16)
    torch_like.step()
    assert torch_like.state[native]["momentum_buffer"].dtype == torch.bfloat16
    assert torch_like.state[native]["rotation"].dtype == torch.float32


def test_aro_columns_rotation_acts_on_the_transpose() -> None:
    gen = _gen(13)
    w1 = nn.Parameter(torch.randn(12, 4, generator=gen, dtype=F64))
    w2 = nn.Parameter(w1.detach().T.clone())
    opt1 = ARO([w1], lr=0.1, rotate="columns")
    opt2 = ARO([w2], lr=0.1, rotate="rows")
    for _ in range(3):
        grad = torch.randn(12, 4, generator=gen, dtype=F64)
        w1.grad, w2.grad = grad, grad.T.clone()
        opt1.step()
        opt2.step()
    torch.testing.assert_close(w1.detach(), w2.detach().T)
    assert opt1.state[w1]["rotation"].shape == (4, 4)


# ---------------------------------------------------------------------------- optimizer steps
def test_sinkgd_and_swan_steps_apply_the_documented_formula_to_conv_kernels() -> None:
    gen = _gen(14)
    for cls, direction_of in (
        (SinkGD, lambda g: sr_sinkhorn(g, 5)),
        (SWAN, lambda g: swan_direction(g, ns_steps=20)),
    ):
        w = nn.Parameter(torch.randn(4, 3, 3, 3, generator=gen, dtype=F64))
        grad = torch.randn(4, 3, 3, 3, generator=gen, dtype=F64)
        expected = w.detach() * (1 - 0.1 * 0.5) - 0.1 * direction_of(as_matrix(grad)).reshape(
            w.shape
        )
        opt = cls([w], lr=0.1, weight_decay=0.5)
        w.grad = grad
        opt.step()
        torch.testing.assert_close(w.detach(), expected)
        # maximize: the same step with the negated gradient
        w_max = nn.Parameter(torch.zeros(4, 3, 3, 3, dtype=F64))
        w_min = nn.Parameter(torch.zeros(4, 3, 3, 3, dtype=F64))
        cls([w_max], lr=0.1, maximize=True)
        opt_max = cls([w_max], lr=0.1, maximize=True)
        opt_min = cls([w_min], lr=0.1)
        w_max.grad, w_min.grad = grad, -grad
        opt_max.step()
        opt_min.step()
        torch.testing.assert_close(w_max.detach(), w_min.detach())


@pytest.mark.parametrize("cls", [SWAN, SinkGD, ARO])
@pytest.mark.parametrize("impl", ["forloop", "foreach"])
def test_adamw_groups_match_torch_adamw(cls: type, impl: str) -> None:
    gen = _gen(15)
    params = [torch.randn(5, generator=gen, dtype=F64), torch.randn(3, 4, generator=gen, dtype=F64)]
    ours = [nn.Parameter(p.clone()) for p in params]
    theirs = [nn.Parameter(p.clone()) for p in params]
    kwargs: dict[str, Any] = {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}
    opt = cls([{"params": ours, "use_matrix_update": False}], foreach=impl == "foreach", **kwargs)
    ref = torch.optim.AdamW(theirs, foreach=False, **kwargs)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=gen, dtype=F64) for p in params]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach())
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], ref.state[q]["exp_avg_sq"])


# ---------------------------------------------------------------------------- statelessness
class _MatrixNet(nn.Module):
    """Only matrices: a bias-free conv and two bias-free linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, bias=False)
        self.fc1 = nn.Linear(64, 16, bias=False)
        self.fc2 = nn.Linear(16, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(torch.tanh(self.conv(x)).flatten(1))))


def _train(opt: torch.optim.Optimizer, model: nn.Module, steps: int = 3) -> None:
    gen = _gen(16)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 2, 6, 6, generator=gen)).square().mean().backward()
        opt.step()


@pytest.mark.parametrize("cls", [SWAN, SinkGD])
@pytest.mark.parametrize("impl", ["forloop", "foreach"])
def test_stateless_methods_keep_zero_bytes_for_matrices(cls: type, impl: str) -> None:
    torch.manual_seed(0)
    model = _MatrixNet()
    opt = cls(model.parameters(), lr=0.01, foreach=impl == "foreach")
    _train(opt, model)
    params = list(model.parameters())
    assert reachable_tensors(opt, exclude=params) == []
    assert state_bytes(opt, exclude=params) == 0
    assert len(opt.state) == 0
    # A checkpoint round trip keeps it so.
    opt.load_state_dict(opt.state_dict())
    assert state_bytes(opt, exclude=params) == 0


def test_state_walker_counts_what_the_optimizer_holds() -> None:
    torch.manual_seed(0)
    model = _MatrixNet()
    params = list(model.parameters())
    opt = ARO(model.parameters(), lr=0.01)
    _train(opt, model)
    # momentum (param size, fp32) + rotation (rows², fp32) + an int64 step per matrix
    expected = sum(p.numel() * 4 + p.shape[0] ** 2 * 4 + 8 for p in params)
    assert state_bytes(opt, exclude=params) == expected
    # Tensors hidden outside optimizer.state are found too (e.g. a cached buffer).
    opt.cache = {"buffer": [torch.zeros(10)]}  # type: ignore[attr-defined]
    assert state_bytes(opt, exclude=params) == expected + 40
    # A tensor lr counts (it is a hyper-parameter the optimizer keeps alive).
    sgd = SinkGD(params, lr=torch.tensor(0.01))
    assert state_bytes(sgd, exclude=params) == 4


# ---------------------------------------------------------------------------- routing
class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.hidden = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 20)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def _ids(tensors: list[Any]) -> set[int]:
    return {id(t) for t in tensors}


def test_matrix_param_groups_routes_by_role() -> None:
    model = _Mixed()
    matrix, adamw = matrix_param_groups(model, adamw_options={"lr": 3e-4})
    assert matrix["use_matrix_update"] is True and adamw["use_matrix_update"] is False
    assert adamw["lr"] == 3e-4 and "lr" not in matrix
    assert _ids(matrix["params"]) == _ids([model.conv.weight, model.hidden.weight])
    assert _ids(adamw["params"]) == _ids(
        [
            model.embed.weight,
            model.conv.bias,
            model.hidden.bias,
            model.norm.weight,
            model.norm.bias,
            model.head.weight,
            model.head.bias,
        ]
    )
    # head=None keeps the head a matrix; a name or module picks it; exclude adds more.
    matrix, _ = matrix_param_groups(model, head=None)
    assert id(model.head.weight) in _ids(matrix["params"])
    matrix, _ = matrix_param_groups(model, head="hidden")
    assert _ids(matrix["params"]) == _ids([model.conv.weight, model.head.weight])
    matrix, _ = matrix_param_groups(model, head=model.head, exclude=["conv.weight"])
    assert _ids(matrix["params"]) == _ids([model.hidden.weight])
    with pytest.raises(ValueError, match=r"head 'lm_head' is neither a module nor a parameter"):
        matrix_param_groups(model, head="lm_head")
    with pytest.raises(TypeError, match="exclude must be a module"):
        matrix_param_groups(model, exclude=[3])  # type: ignore[list-item]
    # The groups work in every matrix optimizer, and the step moves every trainable param.
    for cls in (SWAN, SinkGD, ARO):
        model = _Mixed()
        opt = cls(matrix_param_groups(model), lr=0.01)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        x = torch.randint(0, 20, (2, 5))
        hidden = model.embed(x).transpose(1, 2)
        hidden = model.conv(hidden).transpose(1, 2)
        model.head(model.norm(model.hidden(hidden))).square().mean().backward()
        opt.step()
        for name, p in model.named_parameters():
            moved = not torch.equal(before[name], p.detach())
            assert moved == p.requires_grad, name


def test_matrix_param_groups_tied_head_and_iterables() -> None:
    embed = nn.Embedding(10, 6)
    head = nn.Linear(6, 10, bias=False)
    head.weight = embed.weight  # tied
    model = nn.Sequential(embed, nn.Linear(6, 6), head)
    groups = matrix_param_groups(model, head=None)
    assert _ids(groups[0]["params"]) == {id(model[1].weight)}
    assert sum(id(p) == id(embed.weight) for g in groups for p in g["params"]) == 1
    # An iterable of params or groups is split by ndim, keeping each group's keys.
    a, b = torch.zeros(3, 4, requires_grad=True), torch.zeros(4, requires_grad=True)
    assert [len(g["params"]) for g in matrix_param_groups([a, b])] == [1, 1]
    split = matrix_param_groups([{"params": [a, b], "lr": 0.5}])
    assert [(g["lr"], g["use_matrix_update"]) for g in split] == [(0.5, True), (0.5, False)]
    with pytest.raises(TypeError, match="got a Tensor"):
        matrix_param_groups(a)


@pytest.mark.parametrize("cls", [SWAN, SinkGD, ARO])
def test_non_matrix_in_matrix_group_is_a_named_value_error(cls: type) -> None:
    w, b = torch.zeros(3, 4, requires_grad=True), torch.zeros(4, requires_grad=True)
    with pytest.raises(
        ValueError, match=rf"{cls.__name__}: param 1 of group 0 has shape \(4,\).*at least 2"
    ):
        cls([w, b])
    opt = cls([w])
    with pytest.raises(ValueError, match=r"param 0 of group 1 has shape \(\)"):
        opt.add_param_group({"params": [torch.zeros((), requires_grad=True)]})
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match=r"Invalid use_matrix_update: 1"):
        cls([w], use_matrix_update=1)


def test_distributed_params_are_rejected(tmp_path: Any) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    started = not dist.is_initialized()
    if started:
        dist.init_process_group(
            "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
        )
    try:
        mesh = init_device_mesh("cpu", (1,))
        weight = nn.Parameter(distribute_tensor(torch.zeros(4, 4), mesh, [Replicate()]))
        for cls in (SWAN, SinkGD, ARO):
            with pytest.raises(NotImplementedError, match=r"param 0 of group 0 is a DTensor"):
                cls([weight])
    finally:
        if started:
            dist.destroy_process_group()

    class FlatParameter(nn.Parameter):  # FSDP1's flat parameter type, recognised by name
        pass

    with pytest.raises(NotImplementedError, match="FSDP FlatParameter"):
        SinkGD([FlatParameter(torch.zeros(2, 2))])


def test_zero_size_matrix_is_skipped() -> None:
    w = nn.Parameter(torch.zeros(0, 5))
    v = nn.Parameter(torch.ones(2, 5))
    for cls in (SWAN, SinkGD, ARO):
        opt = cls([w, v], lr=0.1)
        w.grad, v.grad = torch.zeros(0, 5), torch.randn(2, 5, generator=_gen(17))
        opt.step()
        assert w.shape == (0, 5) and torch.isfinite(v).all()


def test_public_conformance_suite_accepts_a_param_groups_fn() -> None:
    from gradkit.testing import check_optimizer

    check_optimizer(
        SinkGD,
        lr=0.01,
        supported_impls=("foreach",),
        param_groups_fn=matrix_param_groups,
        fused=False,
    )
    with pytest.raises(ValueError, match="use_matrix_update=True needs parameters"):
        check_optimizer(SinkGD, lr=0.01, supported_impls=("foreach",), fused=False)
