r"""Matrix kernels shared by the matrix optimizers (SWAN, SinkGD, ARO).

Plain functions on tensors, like Muon's ``zeropower_via_newtonschulz5``. Each accepts a matrix
``(m, n)`` or a batch ``(..., m, n)`` and works along the last two dimensions.

* :func:`as_matrix`: the matrix view of a weight: ``(shape[0], prod(shape[1:]))``. A conv kernel
  ``(out, in, kh, kw)`` becomes ``out × (in·kh·kw)``; the optimizers reshape the update back.
* :func:`grad_norm`: SWAN's **GradNorm**, row-wise standardisation over the columns,

  .. math:: \tilde G = (G - \bar g\,1^\top) \oslash (s\,1^\top), \quad
            \bar g_i = \tfrac1n\textstyle\sum_j G_{ij}, \quad
            s_i = \sqrt{\tfrac1n\textstyle\sum_j (G_{ij}-\bar g_i)^2}

  (population std, clamped below by ``eps`` so a constant row becomes 0).
* :func:`inverse_sqrt_newton_schulz`: the coupled Newton–Schulz iteration for
  :math:`A^{-1/2}` of a symmetric PSD matrix, with Frobenius pre-scaling:
  :math:`Y_0 = A/\lVert A\rVert_F,\ Z_0 = I`; repeat :math:`T = 3I - ZY,\ Y \leftarrow \tfrac12 YT,\
  Z \leftarrow \tfrac12 TZ`; then :math:`A^{-1/2} \approx Z/\sqrt{\lVert A\rVert_F}`. It converges
  when the eigenvalues of :math:`Y_0` lie in :math:`(0, 1]` (guaranteed by the pre-scaling);
  an eigenvalue :math:`\lambda \ll 1` grows by about 1.5× per iteration before the quadratic
  phase, so the count needed grows with :math:`\log(\kappa(A)\sqrt{m})`.
* :func:`whiten_newton_schulz`: SWAN's **GradWhitening**, :math:`(GG^\top)^{-1/2}G`, which is the
  polar factor :math:`UV^\top` of a full-rank ``G``. The Gram matrix of the *shorter* side is
  used (:math:`G(G^\top G)^{-1/2}` when ``m > n``; the same matrix for full rank).
* :func:`sr_sinkhorn`: SinkGD's **SR-Sinkhorn** multi-normalisation, ``L`` times: every row to ℓ2
  norm :math:`\sqrt n`, then every column to :math:`\sqrt m`. The iterates are the entry-wise
  square roots of the Sinkhorn iterates on :math:`G \odot G` (row sums ``n``, column sums ``m``);
  after any full iteration :math:`\lVert X\rVert_F = \sqrt{mn}` exactly (the last step
  normalises the columns). :func:`sr_sinkhorn_factored` computes the same matrix as
  :math:`\operatorname{diag}(r)\,G\,\operatorname{diag}(c)`, updating only the scalings
  ``r``, ``c`` with two matrix–vector products on :math:`G \odot G` per iteration (about 3×
  fewer passes over memory; equal up to round-off).
* :func:`orthogonal_qr`: the Q factor of a QR decomposition with a fixed sign convention
  (the diagonal of R made ≥ 0), used by ARO's rotation policy.

All computations run in at least ``float32`` (``float64`` inputs stay ``float64``); the result
has the computation dtype, and callers cast it back.

Example:
    >>> import torch
    >>> from gradkit.transforms import whiten_newton_schulz, sr_sinkhorn
    >>> g = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> w = whiten_newton_schulz(g, steps=30)
    >>> torch.allclose(w @ w.T, torch.eye(4, dtype=torch.float64), atol=1e-8)
    True
    >>> x = sr_sinkhorn(g, iters=5)
    >>> round(float(x.norm()), 6) == round(float((4 * 16) ** 0.5), 6)
    True
"""

from __future__ import annotations

import torch

__all__ = [
    "as_matrix",
    "compute_dtype",
    "grad_norm",
    "inverse_sqrt_newton_schulz",
    "orthogonal_qr",
    "sr_sinkhorn",
    "sr_sinkhorn_factored",
    "whiten_newton_schulz",
]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the matrix kernels compute in: ``float64`` stays, everything else ``float32``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """The ``(shape[0], prod(shape[1:]))`` view (or copy, if not viewable) of a ≥2-D tensor.

    Raises:
        ValueError: if ``tensor`` has fewer than 2 dimensions.
    """
    if tensor.ndim < 2:
        raise ValueError(
            f"as_matrix needs a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}"
        )
    return tensor.reshape(tensor.shape[0], -1)


def grad_norm(matrix: torch.Tensor, eps: float = 1e-8, *, center: bool = True) -> torch.Tensor:
    """Row-wise standardisation over the last dimension (SWAN's GradNorm).

    Args:
        matrix: ``(..., m, n)``.
        eps: lower clamp of the row std (a constant row becomes 0 instead of NaN).
        center: subtract the row mean (the paper's operator). ``False`` only divides by the
            population std of each row (used by SWAN's ``square="uncentered"`` option).
    """
    x = matrix.to(compute_dtype(matrix.dtype))
    mean = x.mean(dim=-1, keepdim=True)
    centered = x - mean
    std = centered.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(eps)
    return (centered if center else x) / std


def inverse_sqrt_newton_schulz(matrix: torch.Tensor, steps: int, eps: float = 1e-8) -> torch.Tensor:
    """:math:`A^{-1/2}` of a symmetric positive (semi-)definite ``(..., m, m)`` matrix by the
    coupled Newton–Schulz iteration with Frobenius pre-scaling (see the module docstring).

    On a singular ``A`` the null directions of ``Z`` grow by 1.5× per iteration; callers must
    make sure these directions are annihilated afterwards (as in :func:`whiten_newton_schulz`,
    where they multiply a zero component), or make ``A`` non-singular.
    """
    a = matrix.to(compute_dtype(matrix.dtype))
    size = a.shape[-1]
    scale = torch.linalg.matrix_norm(a).clamp_min(eps)[..., None, None]
    y = a / scale
    eye = torch.eye(size, dtype=a.dtype, device=a.device).expand_as(a)
    z = eye.clone()
    for _ in range(steps):
        t = 3.0 * eye - z @ y
        y = 0.5 * (y @ t)
        z = 0.5 * (t @ z)
    return z / scale.sqrt()


def whiten_newton_schulz(matrix: torch.Tensor, steps: int = 20, eps: float = 1e-8) -> torch.Tensor:
    """:math:`(GG^\\top)^{-1/2} G` (= :math:`UV^\\top` for full-rank ``G``) by Newton–Schulz on
    the Gram matrix of the shorter side; ``(..., m, n)`` in, same shape out."""
    g = matrix.to(compute_dtype(matrix.dtype))
    if g.shape[-2] <= g.shape[-1]:
        return inverse_sqrt_newton_schulz(g @ g.mT, steps, eps) @ g
    return g @ inverse_sqrt_newton_schulz(g.mT @ g, steps, eps)


def _prescaled(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix / max|matrix|`` (per matrix of a batch) in the computation dtype."""
    x = matrix.to(compute_dtype(matrix.dtype))
    peak = x.abs().amax(dim=(-2, -1), keepdim=True)
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


def sr_sinkhorn(matrix: torch.Tensor, iters: int = 5, eps: float = 1e-8) -> torch.Tensor:
    """SR-Sinkhorn (SinkGD's Algorithm 3): ``iters`` × (rows to norm √n, then columns to √m).

    The input is first divided by its largest absolute entry (which the normalisations undo),
    so that the ``eps`` clamp of the norms is relative to that entry and the result is exactly
    scale invariant, ``f(cG) = f(G)`` for ``c > 0``; a zero row or column stays 0."""
    x = _prescaled(matrix)
    rows, cols = x.shape[-2], x.shape[-1]
    for _ in range(iters):
        x = x * (cols**0.5 / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps))
        x = x * (rows**0.5 / torch.linalg.vector_norm(x, dim=-2, keepdim=True).clamp_min(eps))
    return x


def sr_sinkhorn_factored(matrix: torch.Tensor, iters: int = 5, eps: float = 1e-8) -> torch.Tensor:
    r""":func:`sr_sinkhorn` computed through the row and column scalings (same result up to
    round-off, same ``eps`` semantics): with :math:`P = X_0 \odot X_0` the row norms of
    :math:`\operatorname{diag}(r) X_0 \operatorname{diag}(c)` are :math:`r \odot \sqrt{P c^2}` and
    the column norms :math:`c \odot \sqrt{P^\top r^2}`."""
    x = _prescaled(matrix)
    rows, cols = x.shape[-2], x.shape[-1]
    squares = x * x
    row_scale = torch.ones_like(x[..., :, :1])  # r, (..., m, 1)
    col_scale = torch.ones_like(x[..., :1, :])  # c, (..., 1, n)
    for _ in range(iters):
        # Row norms of the current X = diag(r)·X_0·diag(c), clamped exactly as sr_sinkhorn does.
        # A zero row/column keeps its scale (it stays 0 either way; growing it would overflow).
        norms = row_scale * (squares @ col_scale.square().mT).sqrt()
        row_scale = torch.where(
            norms > 0, row_scale * (cols**0.5 / norms.clamp_min(eps)), row_scale
        )
        norms = col_scale * (row_scale.mT.square() @ squares).sqrt()
        col_scale = torch.where(
            norms > 0, col_scale * (rows**0.5 / norms.clamp_min(eps)), col_scale
        )
    return x * row_scale * col_scale


def orthogonal_qr(matrix: torch.Tensor) -> torch.Tensor:
    """The Q factor of ``QR(matrix)`` (``(..., m, m)``) with the diagonal of R made ≥ 0.

    LAPACK's Householder QR leaves the sign of each column of Q free; flipping the columns
    whose R diagonal is negative makes Q unique for non-singular input (a zero diagonal keeps
    its column), so the result does not depend on the backend's convention.
    """
    q, r = torch.linalg.qr(matrix.to(compute_dtype(matrix.dtype)))
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    signs = torch.where(diag < 0, -1.0, 1.0).to(q.dtype)
    return q * signs.unsqueeze(-2)
