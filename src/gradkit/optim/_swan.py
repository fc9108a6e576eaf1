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

__all__ = ["SWAN", "swan_direction"]

Scalar = float | torch.Tensor
SQUARE_MODES = ("pinv", "uncentered")


def swan_direction(
    grad: torch.Tensor,
    *,
    ns_steps: int = 20,
    eps: float = 1e-8,
    square: str = "pinv",
    rescale: bool = True,
) -> torch.Tensor:
    """SWAN's update direction for one gradient matrix ``(m, n)`` (see the module docstring).

    Returns a tensor of the same shape, in the computation dtype (float32 or float64).
    """
    transposed = grad.shape[-2] > grad.shape[-1]
    g = grad.mT if transposed else grad
    rows, cols = g.shape[-2], g.shape[-1]
    is_square = rows == cols
    normed = grad_norm(g, eps, center=not (is_square and square == "uncentered"))
    if is_square and square == "pinv":
        gram = normed.mT @ normed
        trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(-1)[..., None, None]
        fill = trace / max(cols - 1, 1) / cols  # c·(1/√n)(1/√n)ᵀ, c = mean non-zero eigenvalue
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
    options = {k: s[k] for k in ("ns_steps", "eps", "square", "rescale")}
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

    For a weight gradient :math:`G \in \mathbb{R}^{m\times n}` (conv kernels as ``out × in·kh·kw``),
    oriented so that :math:`m \le n` (transposed otherwise, and the update transposed back):

    .. math::

        \tilde G &= \operatorname{GradNorm}(G) = (G - \bar g 1^\top) \oslash (s 1^\top)
            \quad\text{(row mean } \bar g\text{, population std } s\text{ over the } n \text{ columns)}\\
        \Delta &= \operatorname{GradWhitening}(\tilde G) = (\tilde G\tilde G^\top)^{-1/2}\tilde G
            \quad (= UV^\top \text{ for full-rank } \tilde G)\\
        \Delta &\leftarrow \frac{\lVert\tilde G\rVert_F}{\lVert\Delta\rVert_F}\,\Delta
            \quad\text{(rescale: RMS 1, since } \lVert\tilde G\rVert_F = \sqrt{mn})\\
        W &\leftarrow W(1-\eta\lambda) - \eta\,\Delta

    :math:`(\cdot)^{-1/2}` is the coupled Newton–Schulz iteration with Frobenius pre-scaling, in
    float32 (float64 for float64 params), ``ns_steps`` iterations (default 20; see
    :func:`gradkit.transforms.inverse_sqrt_newton_schulz`). Nothing is stored for matrices.

    Accuracy of the whitening (relative Frobenius error of the float32 result against the float64
    SVD polar factor of GradNorm(G), random gradients with log-normally scaled rows, printed by
    ``benchmarks/step_time.py``):

    ============  ==========  ==========  ==========  =====================
    shape          10 steps    20 steps    30 steps   Muon's quintic NS, 5
    ============  ==========  ==========  ==========  =====================
    512×2048       8e-7        8e-7        8e-7        0.20
    1536×512       2e-2        4e-6        4e-6        0.19
    512×512        0.15        5e-3        3e-4        0.30
    ============  ==========  ==========  ==========  =====================

    Square matrices converge slowest (their smallest singular values are the smallest); 20 steps
    is the default compromise (30 steps cost 1.5× as much), and "≥ 10 with Frobenius pre-scaling"
    is the minimum for non-square ones.

    What was checked and chosen (the PDF body was not reachable from here; the abstract, the
    ICML metadata — "FP32 to whiten", BF16 weights — and two secondary restatements were):

    * **Rescale** (``rescale=True``): the secondary sources state the optional rescale of Δ to the
      norm of :math:`\tilde G`; with it the update has RMS 1 (like Adam's early steps), without it
      :math:`UV^\top` has RMS :math:`1/\sqrt n`. ``rescale=False`` gives the plain whitened direction.
    * **Learning rate**: community code scales the SWAN group's lr to 0.05 × Adam's; not verified
      as the paper's setting. Use ``adamw_options={"lr": ...}`` in
      :func:`~gradkit.optim.matrix_param_groups` for a different AdamW lr.
    * **Centring and square matrices** (``square=``): centring the rows makes
      :math:`\tilde G 1 = 0`, so for a square matrix (after orientation :math:`m = n`)
      :math:`\tilde G\tilde G^\top` is singular and the polar factor is not unique; plain
      Newton–Schulz then lets the null direction grow by 1.5× per iteration (harmless in exact
      arithmetic, amplified round-off in float32). The paper's handling is unknown.

      - ``square="pinv"`` (default): pseudo-inverse semantics, :math:`\Delta = \tilde G\,
        (\tilde G^\top\tilde G)^{+1/2}` = :math:`U_rV_r^\top` over the non-zero singular values.
        It is computed exactly with the *known* null vector :math:`1/\sqrt n` of
        :math:`\tilde G^\top\tilde G`: Newton–Schulz runs on
        :math:`\tilde G^\top\tilde G + c\,11^\top/n` (``c`` = the mean non-zero eigenvalue), which is
        non-singular, and :math:`\tilde G 1 = 0` removes the added direction.
      - ``square="uncentered"``: for square matrices only, GradNorm divides each row by its std
        without subtracting the mean, so :math:`\tilde G` is generically full rank.

      Non-square matrices (:math:`m < n`) have full row rank after centring and are unaffected.
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
        square: ``"pinv"`` (default) or ``"uncentered"``: the handling of square matrices.
        rescale: rescale the whitened direction to ‖GradNorm(G)‖_F (RMS 1; default True).
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
    _matrix_options = ("ns_steps", "square", "rescale")
    _validators = {
        **MatrixOptimizer._common_validators,
        "ns_steps": check.positive_int,
        "square": check.one_of(*SQUARE_MODES),
        "rescale": check.boolean,
    }

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3, ns_steps: int = 20,
        weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
        *, square: str = "pinv", rescale: bool = True, use_matrix_update: bool = True,
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
        ],
        error_inputs=[
            *matrix_error_inputs(),
            ErrorInput({"ns_steps": 0}, ValueError, r"Invalid ns_steps: 0"),
            ErrorInput({"square": "svd"}, ValueError, r"Invalid square: 'svd'"),
            ErrorInput({"rescale": 1}, TypeError, r"Invalid rescale: 1"),
        ],
        hyperparams=("lr", "ns_steps", "weight_decay", "betas", "eps", "square", "rescale"),
        lr=0.01,
        param_groups_fn=matrix_param_groups,
    )
