"""SWAN: SGD with (gradient) Whitening And Normalization, a stateless optimizer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradkit import _validation as check
from gradkit.optim._base import ParamsT, hyperparams
from gradkit.optim._compile import Kernel, Scalars
from gradkit.optim._matrix_base import MatrixOptimizer, apply_matrix_update
from gradkit.transforms._matrix import grad_norm, inverse_sqrt_newton_schulz, whiten_newton_schulz

__all__ = ["SWAN", "swan_direction", "swan_grad_norm"]

Scalar = float | torch.Tensor
SQUARE_MODES = ("pinv", "uncentered")
GRADNORM_AXES = ("input", "long")


def _oriented(grad: torch.Tensor, gradnorm_axis: str) -> tuple[torch.Tensor, bool]:
    """``grad`` with the dimension GradNorm averages over last, and whether it was transposed.

    ``"input"``: the stored ``(out, in)`` layout as is (rows are output units, the statistics
    run over the input dimension). ``"long"``: transposed when tall, so that the statistics
    run over the longer side.
    """
    if gradnorm_axis not in GRADNORM_AXES:
        raise ValueError(
            f"Invalid gradnorm_axis: {gradnorm_axis!r} (must be one of "
            f"{', '.join(map(repr, GRADNORM_AXES))})"
        )
    transposed = gradnorm_axis == "long" and grad.shape[-2] > grad.shape[-1]
    return (grad.mT if transposed else grad), transposed


def _centred_gram_is_singular(rows: int, cols: int, square: str) -> bool:
    r"""Centring every row over its ``cols`` entries gives :math:`\tilde G 1 = 0`, so rank
    :math:`\le` ``cols - 1``; the Gram matrix of the shorter side is singular when
    ``rows >= cols``, unless ``square="uncentered"`` skips the centring there."""
    return rows >= cols and square == "pinv"


def swan_grad_norm(
    grad: torch.Tensor, *, eps: float = 1e-8, square: str = "pinv", gradnorm_axis: str = "input"
) -> torch.Tensor:
    """SWAN's GradNorm of one gradient matrix ``(m, n)`` as :class:`SWAN` applies it, in the
    layout of ``grad`` (before the whitening).

    ``gradnorm_axis="input"`` (default, the paper's form, see :class:`SWAN`): every row (output
    unit) standardised over the input dimension ``n``. ``gradnorm_axis="long"``: over the
    longer side (gradkit's earlier behaviour: tall matrices were transposed first). Where centring
    makes the Gram matrix singular (``m >= n`` after orientation) and ``square="uncentered"``,
    rows are only divided by their std.
    """
    g, transposed = _oriented(grad, gradnorm_axis)
    rows, cols = g.shape[-2], g.shape[-1]
    center = not (rows >= cols and square == "uncentered")
    normed = grad_norm(g, eps, center=center)
    return normed.mT if transposed else normed


def swan_direction(
    grad: torch.Tensor,
    *,
    ns_steps: int = 20,
    eps: float = 1e-8,
    square: str = "pinv",
    rescale: bool = True,
    gradnorm_axis: str = "input",
) -> torch.Tensor:
    """SWAN's update direction for one gradient matrix ``(m, n)`` (see :class:`SWAN`).

    Returns a tensor of the same shape, in the computation dtype (float32 or float64).
    """
    g, transposed = _oriented(grad, gradnorm_axis)
    rows, cols = g.shape[-2], g.shape[-1]
    normed = swan_grad_norm(g, eps=eps, square=square, gradnorm_axis="input")
    if _centred_gram_is_singular(rows, cols, square):
        # Pseudo-inverse polar factor: the known null vector 1/√n of G̃ᵀG̃ is filled with
        # c·(1/√n)(1/√n)ᵀ, c = the mean non-zero eigenvalue; G̃·1 = 0 removes it again.
        gram = normed.mT @ normed
        trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)[..., None, None]
        fill = trace / max(cols - 1, 1) / cols
        direction = normed @ inverse_sqrt_newton_schulz(gram + fill, ns_steps, eps)
    else:
        direction = whiten_newton_schulz(normed, ns_steps, eps)
    if rescale:
        norm = torch.linalg.matrix_norm(direction)[..., None, None]
        direction = direction * (
            torch.linalg.matrix_norm(normed)[..., None, None] / norm.clamp_min(eps)
        )
    return direction.mT if transposed else direction


def _swan_kernel(param: Tensor, grad: Tensor, s: Scalars) -> None:
    """One matrix's SWAN update, in place."""
    options = {k: s[k] for k in ("ns_steps", "eps", "square", "rescale", "gradnorm_axis")}
    apply_matrix_update(param, swan_direction(grad.reshape(grad.shape[0], -1), **options), s)


#: SWAN's kernel. ``fused`` compiles the per-matrix loop into one graph; ``forloop`` and
#: ``foreach`` are the same eager loop. The time is in the Newton–Schulz matmuls, which the
#: compiled graph still hands to BLAS, so on CPU ``fused`` showed no consistent gain over
#: ``foreach`` (the default) in ``benchmarks/step_time.py`` on a loaded 2-core machine.
SWAN_KERNEL = Kernel("SWAN", _swan_kernel, skip_empty=True)


class SWAN(MatrixOptimizer):
    r"""SWAN (Ma et al., ICML 2025): GradNorm then Newton–Schulz GradWhitening, stateless, for
    matrices; AdamW for groups with ``use_matrix_update=False``.

    Paper: Ma, Gong, Scetbon, Meeds. *SWAN: SGD with Normalization and Whitening Enables
    Stateless LLM Training.* ICML 2025, arXiv:2412.13148.

    Reference implementation: none public (the promised github.com/microsoft/msr_optim was not
    found); the tests check the formulas below and SVD oracles. Deviations and choices where the
    paper was silent are listed below ("What was checked and chosen").

    For a weight gradient :math:`G \in \mathbb{R}^{m\times n}` in PyTorch's layout (``m``
    outputs, ``n`` inputs; conv kernels as ``out × in·kh·kw``):

    .. math::

        \tilde G &= \operatorname{GradNorm}(G) = (G - \bar g 1_n^\top) \oslash (s 1_n^\top)
            \quad\text{(row mean } \bar g\text{, population std } s\text{ over the } n
            \text{ inputs)}\\
        \Delta &= \operatorname{GradWhitening}(\tilde G) = (\tilde G\tilde G^\top)^{-1/2}\tilde G
            \quad (= UV^\top \text{ for full-rank } \tilde G)\\
        \Delta &\leftarrow \frac{\lVert\tilde G\rVert_F}{\lVert\Delta\rVert_F}\,\Delta
            \quad\text{(rescale: RMS 1, since } \lVert\tilde G\rVert_F = \sqrt{mn})\\
        W &\leftarrow W(1-\eta\lambda) - \eta\,\Delta

    :math:`(\cdot)^{-1/2}` is the coupled Newton–Schulz iteration with Frobenius pre-scaling, in
    float32 (float64 for float64 params), ``ns_steps`` iterations (default 20; see
    :func:`gradkit.transforms.inverse_sqrt_newton_schulz`), applied to the Gram matrix of the
    shorter side (the same polar factor). Nothing is stored for matrices.

    Accuracy of the whitening (relative Frobenius error of the float32 result against the float64
    SVD (pseudo-inverse) polar factor of GradNorm(G), random gradients with log-normally scaled
    rows, printed by ``benchmarks/step_time.py``; in brackets with ``gradnorm_axis="long"``):

    ============  ==============  ==============  ==========  =====================
    shape          10 steps        20 steps        30 steps   Muon's quintic NS, 5
    ============  ==============  ==============  ==========  =====================
    512×2048       8e-7            8e-7            8e-7        0.20
    1536×512       9e-7 (2e-2)     8e-7 (4e-6)     8e-7        0.19
    512×512        0.15            5e-3            3e-4        0.30
    ============  ==============  ==============  ==========  =====================

    Square matrices converge slowest (their smallest singular values are the smallest); 20 steps
    is the default compromise (30 steps cost 1.5× as much), and "≥ 10 with Frobenius pre-scaling"
    is the minimum for non-square ones.

    What was checked and chosen (the SWAN PDF body was not reachable from here; the abstract, the
    ICML metadata — "FP32 to whiten", BF16 weights — the same authors' restatement in
    arXiv:2502.07752, App. B.7–B.8, and secondary restatements were):

    * **The GradNorm axis** (``gradnorm_axis=``). arXiv:2502.07752 eq. (30) restates SWAN's
      operator as :math:`\operatorname{GradNorm}(G) = (G - \bar g 1_n^\top)/(s 1_n^\top)` with
      ":math:`\bar g = \frac1n\sum_{i=1}^n G_{:,i}` the mean across rows; :math:`s` the standard
      deviation across rows; :math:`\bar g` and :math:`s` are m-dimensional column vectors": each
      of the :math:`m` rows is standardised over its :math:`n` entries. A restatement of SWAN
      for a linear layer's :math:`m\times n` gradient names these the "row-wise mean and standard
      deviation across the n input columns" ("GradNorm standardizes each row across the input
      dimension"), and three of the four public re-implementations found normalise ``dim=1``
      (the inputs) of torch's ``(out, in)`` weight (the fourth RMS-normalises the outputs).
      That is the default:

      - ``gradnorm_axis="input"`` (default): every row (output unit) of the ``(out, in)``
        gradient is standardised over the input dimension, whatever the shape.
      - ``gradnorm_axis="long"``: gradkit's earlier behaviour, kept bit for bit. A tall gradient
        (``out > in``) is transposed first, so the statistics run over the longer side (the
        output dimension for tall matrices; the same as ``"input"`` for wide ones). This is what
        eq. (30) gives under arXiv:2502.07752's own convention "we consider 2D matrix parameters
        W … of size m × n and m ≤ n" (its §2.1); whether the SWAN paper orients its matrices that
        way could not be checked. On a 64×16 gradient the two updates differ: cosine 0.94 for a
        Gaussian gradient, 0.75 with log-normally scaled rows.
      - Edge case of the default: a layer with one input (``out × 1``) has constant rows, so its
        GradNorm and its update are 0. Route such a param to AdamW (``exclude=`` in
        :func:`~gradkit.optim.matrix_param_groups`) or use ``"long"``.
    * **The whitening iteration.** arXiv:2502.07752 App. B.8 states the Newton–Schulz iteration
      SWAN uses as :math:`Y_0 = A/\lVert A\rVert_F`, :math:`Z_0 = I`,
      :math:`Y_{t+1} = \frac12 Y_t(3I - Z_tY_t)`, :math:`Z_{t+1} = \frac12(3I - Z_tY_t)Z_t`,
      :math:`Z_t \to A^{-1/2}\sqrt{\lVert A\rVert_F}` — exactly
      :func:`~gradkit.transforms.inverse_sqrt_newton_schulz` (pinned against an independent
      k-step reference in the tests). Re-implementations of the paper's Algorithm 2 write the
      factor ½ as a step size β (β = 0.5 is this iteration; some use β = 0.4–0.8 with 2–10
      steps, which does not converge to :math:`A^{-1/2}`) and pre-scale by
      :math:`\lVert G\rVert_F^2 = \operatorname{tr}A` instead of :math:`\lVert A\rVert_F`: the
      same limit; at 20 steps both agree with the SVD polar factor to 1e-13 on the 16×64,
      64×256, 128×512 and 32×32 matrices checked (at 10 steps the trace scaling is slower:
      2e-4 against 3e-15 at 128×512). The paper's default β and step count were not reachable;
      β is fixed at ½ here, ``ns_steps`` defaults to 20.
    * **Rescale** (``rescale=True``): the secondary sources state the optional rescale of Δ to the
      norm of :math:`\tilde G`; with it the update has RMS 1 (like Adam's early steps), without it
      :math:`UV^\top` has RMS :math:`1/\sqrt{\max(m,n)}`. ``rescale=False`` gives the plain
      whitened direction.
    * **Learning rate**: community code scales the SWAN group's lr to 0.05 × Adam's; not verified
      as the paper's setting. Use ``adamw_options={"lr": ...}`` in
      :func:`~gradkit.optim.matrix_param_groups` for a different AdamW lr.
    * **Centring and rank** (``square=``): centring the rows makes :math:`\tilde G 1_n = 0`, so
      :math:`\operatorname{rank}\tilde G \le n - 1`. When :math:`m \ge n` (square matrices, and
      with the default axis also tall ones) the shorter side's Gram matrix
      :math:`\tilde G^\top\tilde G` is singular and the polar factor is not unique; plain
      Newton–Schulz then lets the null direction grow by 1.5× per iteration (harmless in exact
      arithmetic, amplified round-off in float32). The paper's handling is unknown.

      - ``square="pinv"`` (default): pseudo-inverse semantics, :math:`\Delta = \tilde G\,
        (\tilde G^\top\tilde G)^{+1/2}` = :math:`U_rV_r^\top` over the non-zero singular values.
        It is computed exactly with the *known* null vector :math:`1_n/\sqrt n` of
        :math:`\tilde G^\top\tilde G`: Newton–Schulz runs on
        :math:`\tilde G^\top\tilde G + c\,11^\top/n` (``c`` = the mean non-zero eigenvalue), which is
        non-singular, and :math:`\tilde G 1 = 0` removes the added direction.
      - ``square="uncentered"``: where :math:`m \ge n`, GradNorm divides each row by its std
        without subtracting the mean, so :math:`\tilde G` is generically of full rank.

      Matrices with :math:`m < n` have full row rank after centring and are unaffected.
    * Tensors with more than 2 dims are flattened to ``shape[0] × rest``.
    * "NSDS" and "SWAN-0" (paper variants) are not implemented.

    Args:
        params: parameters or param groups, e.g. from :func:`~gradkit.optim.matrix_param_groups`.
        use_matrix_update: the groups' default routing flag: True, the matrix rule (≥2-D
            params only); False, AdamW.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        ns_steps: Newton–Schulz iterations (default 20, at least 10 is advised).
        weight_decay: decoupled weight decay λ (default 0), also for AdamW groups.
        betas: AdamW's (β1, β2) for ``use_matrix_update=False`` groups (default (0.9, 0.95)).
        eps: AdamW's ε; the std clamp of GradNorm and the norm clamps (default 1e-8).
        square: ``"pinv"`` (default) or ``"uncentered"``: the handling of the rank deficiency
            that centring causes when ``m >= n``.
        rescale: rescale the whitened direction to ‖GradNorm(G)‖_F (RMS 1; default True).
        gradnorm_axis: ``"input"`` (default: rows over the input dimension, the paper's form as
            restated) or ``"long"`` (over the longer side; gradkit's earlier behaviour).
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    Example:
        >>> import torch
        >>> from gradkit.optim import SWAN
        >>> w = torch.zeros(2, 4, requires_grad=True)
        >>> opt = SWAN([w], lr=0.1)
        >>> w.grad = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 1.0, 2.0]])
        >>> opt.step()
        >>> round(float(w.detach().square().mean().sqrt()), 4)  # RMS of the step: lr
        0.1
    """

    paper = "Ma, Gong, Scetbon, Meeds, SWAN: SGD with Normalization and Whitening Enables Stateless LLM Training, ICML 2025 (arXiv:2412.13148)"

    _kernel = SWAN_KERNEL
    _matrix_options = ("ns_steps", "square", "rescale", "gradnorm_axis")
    _validators = {
        **MatrixOptimizer._common_validators,
        "ns_steps": check.positive_int,
        "square": check.one_of(*SQUARE_MODES),
        "rescale": check.boolean,
        "gradnorm_axis": check.one_of(*GRADNORM_AXES),
    }

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3, ns_steps: int = 20,
        weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
        *, square: str = "pinv", rescale: bool = True, gradnorm_axis: str = "input",
        use_matrix_update: bool = True,
        maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))


def registry_spec() -> Any:
    """The registry entry for :class:`SWAN` (see :mod:`gradkit.registry`)."""
    from gradkit._specs import ErrorInput
    from gradkit.optim._entries import matrix_error_inputs, optimizer_entry
    from gradkit.optim._param_groups import matrix_param_groups

    return optimizer_entry(
        SWAN,
        "stateless GradNorm + Newton-Schulz GradWhitening for matrices, AdamW for the rest",
        [
            {},
            {"weight_decay": 0.1, "ns_steps": 12, "rescale": False},
            {"square": "uncentered"},
            {"gradnorm_axis": "long"},
        ],
        error_inputs=[
            *matrix_error_inputs(),
            ErrorInput({"ns_steps": 0}, ValueError, r"Invalid ns_steps: 0"),
            ErrorInput({"square": "svd"}, ValueError, r"Invalid square: 'svd'"),
            ErrorInput({"rescale": 1}, TypeError, r"Invalid rescale: 1"),
            ErrorInput({"gradnorm_axis": "rows"}, ValueError, r"Invalid gradnorm_axis: 'rows'"),
        ],
        hyperparams=(
            "lr",
            "ns_steps",
            "weight_decay",
            "betas",
            "eps",
            "square",
            "rescale",
            "gradnorm_axis",
        ),
        lr=0.01,
        param_groups_fn=matrix_param_groups,
    )
