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
    """The dtype the matrix kernels compute in: ``float64`` stays, everything else ``float32``.

    Behaviour: bfloat16 and float16 gradients are promoted so that Newton–Schulz and Sinkhorn
    iterations do not lose the small singular values to round-off; callers cast the result
    back to the parameter's dtype.

    Args:
        dtype: the input's dtype.

    Returns:
        ``torch.float64`` for ``float64`` input, ``torch.float32`` otherwise.

    Example:
        >>> import torch
        >>> from gradkit.transforms._matrix import compute_dtype
        >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """The ``(shape[0], prod(shape[1:]))`` view (or copy, if not viewable) of a ≥2-D tensor.

    Behaviour: the matrix view the matrix optimizers (SWAN, SinkGD, ARO) work on: a conv kernel
    ``(out, in, kh, kw)`` becomes ``out × (in·kh·kw)``, the layout of Muon's and dion's
    reference code; the optimizers reshape the update back to the parameter's shape.

    Args:
        tensor: a tensor with at least 2 dimensions.

    Returns:
        ``tensor.reshape(tensor.shape[0], -1)``.

    Raises:
        ValueError: if ``tensor`` has fewer than 2 dimensions.

    Example:
        >>> import torch
        >>> from gradkit.transforms import as_matrix
        >>> as_matrix(torch.zeros(8, 3, 5, 5)).shape
        torch.Size([8, 75])
    """
    if tensor.ndim < 2:
        raise ValueError(
            f"as_matrix needs a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}"
        )
    return tensor.reshape(tensor.shape[0], -1)


def grad_norm(matrix: torch.Tensor, eps: float = 1e-8, *, center: bool = True) -> torch.Tensor:
    r"""Row-wise standardisation over the last dimension (SWAN's GradNorm).

    Math: :math:`\tilde G = (G - \bar g\,1^\top) \oslash (s\,1^\top)` with the row means
    :math:`\bar g_i = \frac1n\sum_j G_{ij}` and the population standard deviations
    :math:`s_i = \max\big(\sqrt{\tfrac1n\sum_j (G_{ij}-\bar g_i)^2},\ \epsilon\big)`, so every
    non-constant row of the result has mean 0 and RMS 1.

    Paper: Ma, Gong, Scetbon, Meeds, *SWAN: SGD with Normalization and Whitening Enables
    Stateless LLM Training*, ICML 2025, arXiv:2412.13148 (the GradNorm operator). Reference
    implementation: none was released (the promised ``microsoft/msr_optim`` was not found).
    Deviations: the ``eps`` clamp (a constant row becomes 0 instead of NaN) and the
    ``center=False`` option, which the paper does not have.

    Args:
        matrix: ``(..., m, n)``.
        eps: lower clamp of the row std (a constant row becomes 0 instead of NaN).
        center: subtract the row mean (the paper's operator). ``False`` only divides by the
            population std of each row (used by SWAN's ``square="uncentered"`` option).

    Returns:
        The standardised matrix, same shape, in the computation dtype (at least float32).

    Example:
        >>> import torch
        >>> from gradkit.transforms import grad_norm
        >>> grad_norm(torch.tensor([[1.0, 3.0], [5.0, 5.0]]))
        tensor([[-1.,  1.],
                [ 0.,  0.]])
    """
    x = matrix.to(compute_dtype(matrix.dtype))
    mean = x.mean(dim=-1, keepdim=True)
    centered = x - mean
    std = centered.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(eps)
    return (centered if center else x) / std


def inverse_sqrt_newton_schulz(matrix: torch.Tensor, steps: int, eps: float = 1e-8) -> torch.Tensor:
    r""":math:`A^{-1/2}` of a symmetric positive (semi-)definite ``(..., m, m)`` matrix by the
    coupled Newton–Schulz iteration with Frobenius pre-scaling.

    Math: :math:`Y_0 = A/\lVert A\rVert_F`, :math:`Z_0 = I`; ``steps`` times
    :math:`T = 3I - ZY`, :math:`Y \leftarrow \tfrac12 YT`, :math:`Z \leftarrow \tfrac12 TZ`;
    then :math:`A^{-1/2} \approx Z/\sqrt{\lVert A\rVert_F}`. It converges when the eigenvalues of
    :math:`Y_0` lie in :math:`(0, 1]`, which the pre-scaling guarantees; an eigenvalue
    :math:`\lambda \ll 1` grows by about 1.5× per iteration before the quadratic phase, so the
    number of steps needed grows with :math:`\log(\kappa(A)\sqrt{m})`.

    Paper: the iteration is the classical coupled Newton–Schulz iteration for the matrix
    square root and its inverse (Higham, *Functions of Matrices*, SIAM 2008); SWAN
    (arXiv:2412.13148) uses it for GradWhitening. Reference implementation: none for SWAN;
    Muon's ``zeropower_via_newtonschulz5`` is a different (quintic, uncoupled) iteration.
    Deviations: none. On a singular ``A`` the null directions of ``Z`` grow by 1.5× per
    iteration; callers must make sure these directions are annihilated afterwards (as in
    :func:`whiten_newton_schulz`, where they multiply a zero component), or make ``A``
    non-singular.

    Args:
        matrix: ``(..., m, m)``, symmetric positive (semi-)definite.
        steps: number of iterations (20 is SWAN's default; see ``gradkit.optim.SWAN`` for the
            measured accuracy).
        eps: lower clamp of :math:`\lVert A\rVert_F` (a zero matrix gives a finite result).

    Returns:
        The approximation of :math:`A^{-1/2}`, in the computation dtype.

    Example:
        >>> import torch
        >>> from gradkit.transforms import inverse_sqrt_newton_schulz
        >>> a = torch.tensor([[4.0, 0.0], [0.0, 0.25]], dtype=torch.float64)
        >>> inverse_sqrt_newton_schulz(a, steps=30)
        tensor([[0.5000, 0.0000],
                [0.0000, 2.0000]], dtype=torch.float64)
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
    r"""SWAN's GradWhitening, :math:`(GG^\top)^{-1/2} G`, by Newton–Schulz.

    Math: for a full-rank :math:`G = U\Sigma V^\top` this is the polar factor :math:`UV^\top`
    (every singular value set to 1). The Gram matrix of the *shorter* side is inverted by
    :func:`inverse_sqrt_newton_schulz`: :math:`(GG^\top)^{-1/2}G` when :math:`m \le n`,
    :math:`G(G^\top G)^{-1/2}` when :math:`m > n` (the same matrix for full rank, at the cost
    of an :math:`\min(m,n)^2` Gram matrix).

    Paper: SWAN, Ma et al., ICML 2025, arXiv:2412.13148 (GradWhitening). Reference
    implementation: none was released; tested against the SVD polar factor (to 1e-5 in
    float64 on square and non-square matrices). Deviations: the shorter-side Gram matrix (the
    paper writes :math:`(GG^\top)^{-1/2}G` for every shape).

    Args:
        matrix: ``(..., m, n)``.
        steps: Newton–Schulz iterations (default 20).
        eps: see :func:`inverse_sqrt_newton_schulz`.

    Returns:
        The whitened matrix, same shape, in the computation dtype.

    Example:
        >>> import torch
        >>> from gradkit.transforms import whiten_newton_schulz
        >>> g = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> w = whiten_newton_schulz(g, steps=30)
        >>> u, _, vh = torch.linalg.svd(g, full_matrices=False)
        >>> torch.allclose(w, u @ vh, atol=1e-8)
        True
    """
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
    r"""SR-Sinkhorn multi-normalisation (SinkGD's Algorithm 3).

    Math: ``iters`` times, every row to ℓ2 norm :math:`\sqrt n`, then every column to
    :math:`\sqrt m`: :math:`X \leftarrow \sqrt n\,\operatorname{diag}(1/\lVert X_{i,:}\rVert)X`,
    :math:`X \leftarrow \sqrt m\,X\operatorname{diag}(1/\lVert X_{:,j}\rVert)`. The iterates are
    the entry-wise square roots of the Sinkhorn iterates on :math:`G \odot G` (row sums ``n``,
    column sums ``m``); after every full iteration :math:`\lVert X\rVert_F = \sqrt{mn}` exactly.

    Paper: Scetbon, Ma, Gong, Meeds, *Gradient Multi-Normalization for Stateless and Scalable
    LLM Training*, arXiv:2502.06742 (NeurIPS 2025). Reference implementation: none was
    released; the community implementations use ``L = 5``, the default here. Deviations: the
    input is first divided by its largest absolute entry (which the normalisations undo), so
    the ``eps`` clamp of the norms is relative to that entry and the result is exactly scale
    invariant, :math:`f(cG) = f(G)` for :math:`c > 0`; a zero row or column stays 0.

    Args:
        matrix: ``(..., m, n)``.
        iters: number ``L`` of row-then-column rounds (default 5).
        eps: lower clamp of the row and column norms, relative to the largest entry.

    Returns:
        The normalised matrix, same shape, in the computation dtype.

    Example:
        >>> import torch
        >>> from gradkit.transforms import sr_sinkhorn
        >>> x = sr_sinkhorn(torch.tensor([[1.0, 2.0, 0.5], [4.0, 1.0, 3.0]]), iters=10)
        >>> x.norm(dim=0)                                 # columns: sqrt(m) = 1.4142
        tensor([1.4142, 1.4142, 1.4142])
        >>> x.norm(dim=1).round(decimals=3)               # rows: close to sqrt(n) = 1.732
        tensor([1.7320, 1.7320])
    """
    x = _prescaled(matrix)
    rows, cols = x.shape[-2], x.shape[-1]
    for _ in range(iters):
        x = x * (cols**0.5 / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps))
        x = x * (rows**0.5 / torch.linalg.vector_norm(x, dim=-2, keepdim=True).clamp_min(eps))
    return x


def sr_sinkhorn_factored(matrix: torch.Tensor, iters: int = 5, eps: float = 1e-8) -> torch.Tensor:
    r""":func:`sr_sinkhorn` computed through the row and column scalings (same result up to
    round-off).

    Math: the iterate is :math:`X = \operatorname{diag}(r)\,X_0\,\operatorname{diag}(c)`; with
    :math:`P = X_0 \odot X_0` its row norms are :math:`r \odot \sqrt{P c^2}` and its column
    norms :math:`c \odot \sqrt{P^\top r^2}`, so each round updates only :math:`r` and :math:`c`
    with two matrix–vector products on :math:`P` (about 3× fewer passes over memory than
    :func:`sr_sinkhorn`), and the matrix is formed once at the end.

    Paper: SinkGD, arXiv:2502.06742 (the algorithm is the same; the factored form is gradkit's).
    Reference implementation: none. Deviations: as :func:`sr_sinkhorn` (same ``eps``
    semantics); a zero row or column keeps its scale.

    Args:
        matrix: ``(..., m, n)``.
        iters: number of row-then-column rounds (default 5).
        eps: lower clamp of the norms, relative to the largest entry.

    Returns:
        The normalised matrix, same shape, in the computation dtype.

    Example:
        >>> import torch
        >>> from gradkit.transforms import sr_sinkhorn, sr_sinkhorn_factored
        >>> g = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        >>> torch.allclose(sr_sinkhorn_factored(g), sr_sinkhorn(g), atol=1e-12)
        True
    """
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
    r"""The Q factor of ``QR(matrix)`` with the diagonal of R made ≥ 0.

    Math: :math:`M = QR` (Householder QR in the computation dtype), then
    :math:`Q \leftarrow Q\,\operatorname{diag}(\operatorname{sign}(R_{ii}))` with
    :math:`\operatorname{sign}(0) = 1`. LAPACK leaves the sign of each column of Q free;
    fixing it makes Q unique for non-singular input, so the result does not depend on the
    backend's convention.

    Paper: ARO, Gong et al., arXiv:2602.09006, which takes the rotation as the Q factor of a
    QR (preferred there to the polar factor for robustness to noise). Reference
    implementation: microsoft/dion's unmerged ``dev/aro`` branch (read for the spec, not
    copied), which uses the unsigned Q. Deviations: the sign convention (for ARO's base maps
    it does not change the update, as the tests check).

    Args:
        matrix: ``(..., m, k)``.

    Returns:
        Q with orthonormal columns, ``(..., m, min(m, k))``, in the computation dtype.

    Example:
        >>> import torch
        >>> from gradkit.transforms import orthogonal_qr
        >>> m = torch.tensor([[-2.0, 1.0], [0.0, 3.0]])
        >>> torch.linalg.qr(m).R.diagonal()               # LAPACK's sign choice
        tensor([-2.,  3.])
        >>> q = orthogonal_qr(m)
        >>> q
        tensor([[-1.,  0.],
                [ 0.,  1.]])
        >>> (q.T @ m).diagonal()                          # R = QᵀM, diagonal now ≥ 0
        tensor([2., 3.])
    """
    q, r = torch.linalg.qr(matrix.to(compute_dtype(matrix.dtype)))
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    signs = torch.where(diag < 0, -1.0, 1.0).to(q.dtype)
    return q * signs.unsqueeze(-2)
