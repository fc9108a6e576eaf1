"""Diagnostics of gradient methods.

* :func:`directional_sharpness`: :math:`v^\\top H v/\\lVert v\\rVert^2` along an update direction
  from one Hessian-vector product (Pan & Li, 2023).
* :func:`step_direction`: the displacement an optimizer's next step would make, computed on a
  copy.
"""

from gradkit.diagnostics._sharpness import directional_sharpness, step_direction

__all__ = ["directional_sharpness", "step_direction"]
