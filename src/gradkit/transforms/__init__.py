"""Reusable gradient transforms shared by several methods.

* :func:`radial_projection` / :func:`is_scale_invariant`: AdamP/SGDP's projection of an update
  onto the tangent space of scale-invariant weights (Heo et al., ICLR 2021).
* :func:`grad_norm`, :func:`whiten_newton_schulz`, :func:`inverse_sqrt_newton_schulz`,
  :func:`sr_sinkhorn`, :func:`sr_sinkhorn_factored`, :func:`orthogonal_qr`, :func:`as_matrix`:
  the matrix kernels of SWAN, SinkGD and ARO (GradNorm, Newton–Schulz whitening, SR-Sinkhorn,
  sign-fixed QR).
* :func:`hessian_vector_product`, :func:`hutchinson_diagonal`, :func:`gnb_gradient`,
  :func:`gnb_diagonal`, :func:`sample_labels`: Hessian-vector products and the diagonal-Hessian
  estimators of Sophia (Liu et al., ICLR 2024).
* :func:`coordinate_clip`, :func:`clip_thresholds`, :class:`CoordinateClip`: coordinate-wise
  clipping of an update direction (Pan & Li, 2023), as a function and as a wrapper around any
  optimizer.
"""

from gradkit.transforms._coordinate_clip import CoordinateClip, clip_thresholds, coordinate_clip
from gradkit.transforms._hessian import (
    gnb_diagonal,
    gnb_gradient,
    hessian_vector_product,
    hutchinson_diagonal,
    sample_labels,
)
from gradkit.transforms._matrix import (
    as_matrix,
    grad_norm,
    inverse_sqrt_newton_schulz,
    orthogonal_qr,
    sr_sinkhorn,
    sr_sinkhorn_factored,
    whiten_newton_schulz,
)
from gradkit.transforms._radial_projection import is_scale_invariant, radial_projection

__all__ = [
    "CoordinateClip",
    "as_matrix",
    "clip_thresholds",
    "coordinate_clip",
    "gnb_diagonal",
    "gnb_gradient",
    "grad_norm",
    "hessian_vector_product",
    "hutchinson_diagonal",
    "inverse_sqrt_newton_schulz",
    "is_scale_invariant",
    "orthogonal_qr",
    "radial_projection",
    "sample_labels",
    "sr_sinkhorn",
    "sr_sinkhorn_factored",
    "whiten_newton_schulz",
]
