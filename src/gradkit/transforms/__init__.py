"""Reusable gradient transforms shared by several methods.

* :func:`radial_projection` / :func:`is_scale_invariant`: AdamP/SGDP's projection of an update
  onto the tangent space of scale-invariant weights (Heo et al., ICLR 2021).
"""

from gradkit.transforms._radial_projection import is_scale_invariant, radial_projection

__all__ = ["is_scale_invariant", "radial_projection"]
