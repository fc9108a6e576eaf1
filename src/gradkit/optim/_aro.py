"""ARO: Adaptively Rotated Optimization (rotated normed steepest descent for matrices)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gradkit import _validation as check
from gradkit.optim._base import ParamsT, hyperparams
from gradkit.optim._compile import Kernel, Scalars
from gradkit.optim._matrix_base import MatrixOptimizer, apply_matrix_update
from gradkit.transforms._matrix import compute_dtype, orthogonal_qr, sr_sinkhorn

__all__ = ["ARO", "aro_base", "aro_direction"]

Scalar = float | torch.Tensor
BASES = ("sinkhorn", "row_norm", "sign", "frobenius")
UPDATE_SCALES = ("rms", "dion_rms_norm", "none")
ROTATE_SIDES = ("smaller", "rows", "columns")


def aro_base(
    matrix: torch.Tensor, base: str, *, sinkhorn_iters: int = 5, eps: float = 1e-8
) -> torch.Tensor:
    """The base map ``f`` of ARO on ``(..., m, n)`` (see the module docstring)."""
    rows, cols = matrix.shape[-2], matrix.shape[-1]
    if base == "sinkhorn":
        return sr_sinkhorn(matrix, sinkhorn_iters, eps)
    if base == "row_norm":
        norms = torch.linalg.vector_norm(matrix, dim=-1, keepdim=True).clamp_min(eps)
        return matrix * (cols**0.5 / norms)
    if base == "sign":
        return torch.sign(matrix)
    if base == "frobenius":
        norm = torch.linalg.matrix_norm(matrix)[..., None, None].clamp_min(eps)
        return matrix * ((rows * cols) ** 0.5 / norm)
    raise ValueError(f"Invalid base: {base!r} (must be one of {', '.join(map(repr, BASES))})")


def aro_direction(
    momentum: torch.Tensor,
    rotation: torch.Tensor,
    *,
    base: str = "sinkhorn",
    sinkhorn_iters: int = 5,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One rotation update and the rotated direction: returns ``(U_t, R_t)`` from ``M_t``
    (``(m, n)``) and ``R_{t-1}`` (``(m, m)``), both computed in ``rotation``'s dtype."""
    m = momentum.to(rotation.dtype)
    inner = aro_base(rotation.mT @ m, base, sinkhorn_iters=sinkhorn_iters, eps=eps)
    new_rotation = orthogonal_qr(m @ inner.mT)
    direction = new_rotation @ aro_base(
        new_rotation.mT @ m, base, sinkhorn_iters=sinkhorn_iters, eps=eps
    )
    return direction, new_rotation


def _transposed(rotate: str, rows: int, cols: int) -> bool:
    """Whether ARO runs on the transpose (R acts on the columns)."""
    return rotate == "columns" or (rotate == "smaller" and rows > cols)


def _scale(direction: torch.Tensor, mode: str, target_rms: float, eps: float) -> torch.Tensor:
    if mode == "rms":
        rms = direction.square().mean().sqrt().clamp_min(eps)
        return direction * (target_rms / rms)
    if mode == "dion_rms_norm":
        return direction * (target_rms * max(direction.shape[-2], direction.shape[-1]) ** 0.5)
    return direction


def _aro_kernel(
    param: Tensor, grad: Tensor, momentum_buffer: Tensor, rotation: Tensor, s: Scalars
) -> None:
    """One matrix's ARO update, in place (params, momentum buffer and rotation)."""
    eps = s["eps"]
    momentum_buffer.mul_(s["momentum"]).add_(grad * (1 - s["momentum"]))
    matrix = momentum_buffer.reshape(momentum_buffer.shape[0], -1)
    transpose = _transposed(s["rotate"], matrix.shape[0], matrix.shape[1])
    if transpose:
        matrix = matrix.mT
    direction, new_rotation = aro_direction(
        matrix, rotation, base=s["base"], sinkhorn_iters=s["sinkhorn_iters"], eps=eps
    )
    rotation.copy_(new_rotation)
    if transpose:
        direction = direction.mT
    apply_matrix_update(param, _scale(direction, s["update_scale"], s["target_rms"], eps), s)


#: ARO's kernel. ``fused`` compiles the per-matrix loop (the QR stays a library call inside the
#: graph); ``forloop`` and ``foreach`` are the same eager loop. The time is in the matmuls and
#: the QR, so on CPU ``fused`` showed no consistent gain over ``foreach`` (the default) in
#: ``benchmarks/step_time.py`` on a loaded 2-core machine.
ARO_KERNEL = Kernel("ARO", _aro_kernel, skip_empty=True)


class ARO(MatrixOptimizer):
    r"""ARO (Gong et al., 2026): momentum, an adaptive rotation from a QR, and a base map
    (SR-Sinkhorn by default) for matrices; AdamW for groups with ``use_matrix_update=False``.

    Paper: Gong, Zazo, Luo, Wang, Hensman, Ma. *ARO: A New Lens On Matrix Optimization For
    Large Models.* arXiv:2602.09006, 2026.

    Reference implementation: no author code was found; microsoft/dion has an ARO on its
    unmerged ``dev/aro`` branch (read for the spec, not copied). The deviation from it (which
    side is rotated, ``rotate=``) is explained below.

    For a weight :math:`W \in \mathbb{R}^{m\times n}` (conv kernels as ``out × in·kh·kw``) with
    gradient :math:`G`, momentum :math:`M`, an orthogonal rotation :math:`R \in \mathbb{R}^{m\times m}`
    (initialised to :math:`I`; by default the matrix is first oriented so that :math:`m \le n`, see
    ``rotate`` below) and a base map :math:`f` (the "inner optimizer"):

    .. math::

        M_t &= \beta M_{t-1} + (1-\beta) G_t\\
        R_t &= \operatorname{QR_Q}\!\big(M_t\, f(R_{t-1}^\top M_t)^\top\big)\\
        U_t &= R_t\, f(R_t^\top M_t)\\
        W &\leftarrow W(1-\eta\lambda) - \eta\, s(U_t)

    The rotation maximises the one-step decrease :math:`\langle M, R f(R^\top M)\rangle` with the
    inner :math:`R` frozen at :math:`R_{t-1}` (an orthogonal Procrustes problem, solved by the Q factor
    of a QR, which the paper prefers to the polar factor for noise robustness).

    Base maps (``base=``), each on an :math:`m\times n` matrix :math:`X`:

    * ``"sinkhorn"`` (default, "ARO-Sinkhorn", the paper's best variant): SR-Sinkhorn with
      ``sinkhorn_iters`` = 5 (:func:`gradkit.transforms.sr_sinkhorn`);
    * ``"row_norm"``: :math:`\sqrt n\,\operatorname{diag}(1/\lVert X_{i,:}\rVert)X`; then the rotation
      is a power iteration :math:`R_t = \operatorname{QR_Q}(MM^\top R_{t-1})` towards the left
      singular vectors and :math:`U \to \sqrt n\,UV^\top` for a fixed :math:`M` (Muon's direction);
    * ``"sign"``: :math:`\operatorname{sign}(X)`;
    * ``"frobenius"``: :math:`\sqrt{mn}\,X/\lVert X\rVert_F`; rotation-equivariant, so ARO is a
      no-op (:math:`U = f(M)`), kept for testing.

    **QR signs.** :func:`gradkit.transforms.orthogonal_qr` fixes the signs (diagonal of R ≥ 0).
    For the bases above, flipping column signs of R does not change :math:`U` anyway, because
    :math:`f(DX) = Df(X)` for a diagonal ±1 matrix :math:`D` (the tests check both).

    **Update scale** (``update_scale=``, :math:`s`):

    * ``"rms"`` (default): :math:`s(U) = \text{target\_rms}\cdot U/\operatorname{RMS}(U)` with
      ``target_rms=0.2``, the paper's practice (all non-Adam updates normalised to RMS 0.2 so that
      AdamW's learning rate transfers);
    * ``"dion_rms_norm"``: dion's ``rms_norm`` mode, :math:`s(U) = 0.2\sqrt{\max(m,n)}\,U`
      (designed for orthogonalised outputs of RMS :math:`1/\sqrt{\max(m,n)}`; Sinkhorn outputs have
      RMS 1, so this step is :math:`\sqrt{\max(m,n)}` times larger than ``"rms"``);
    * ``"none"``: :math:`s(U) = U`.

    **Which side is rotated** (``rotate=``):

    * ``"smaller"`` (default): the shorter side (rows on ties), i.e. ARO on :math:`W` if
      :math:`m \le n`, else on :math:`W^\top`;
    * ``"rows"``: always :math:`m\times m` (``m = shape[0]``), as in dion's ``dev/aro`` branch;
    * ``"columns"``: always :math:`n\times n` (ARO on :math:`W^\top`).

    Why ``"smaller"`` is the default (a deviation from dion, kept behind the flag): when the
    rotated side is longer than the other, :math:`M` has rank below the size of R, the cross
    matrix is rank-deficient, the extra columns of R are fixed by round-off, and the rows of
    :math:`R^\top M` along them are pure round-off — which the row/Sinkhorn base map then scales
    up to full norm. Measured on a 64×16 momentum (float32 and float64, 3 steps): with
    ``"rows"`` only 50 % of the update's norm lies in the column space of :math:`M`; with
    ``"smaller"`` 99 %. It is also cheaper (R has :math:`\min(m,n)^2` entries) and, for the
    usual transformer matrices (qkv and MLP-up ``(k·d, d)``, MLP-down ``(d, 4d)``), it rotates the
    residual-stream dimension, which is the paper's practice (the paper also transposes square
    Q/K/V projections; use a group with ``rotate="columns"`` for that). The same round-off
    amplification affects any momentum whose rank is below the rotated size (e.g. a gradient
    from fewer samples than the matrix's shorter side): a known limitation of the method.

    State per matrix: ``momentum_buffer`` (param shape and dtype), ``rotation`` (float32, float64
    for float64 params; :math:`m^2` or :math:`n^2` entries) and ``step``. R, the products that
    build the cross matrix and the QR run in float32 at least. Cost per step: about four
    :math:`m\times m\times n` matmuls plus one :math:`m\times m` QR.

    Defaults: lr 1e-3 (with RMS-0.2 updates, in the range of AdamW's lr), momentum β = 0.95
    (dion), weight_decay 0, base ``"sinkhorn"``. Non-matrix parameters
    (``use_matrix_update=False`` groups) get AdamW; see :func:`~gradkit.optim.matrix_param_groups`.

    Args:
        params: parameters or param groups, e.g. from :func:`~gradkit.optim.matrix_param_groups`.
        use_matrix_update: the groups' default routing flag: True, the matrix rule (≥2-D
            params only); False, AdamW.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        momentum: β of the momentum M (default 0.95).
        weight_decay: decoupled weight decay λ (default 0), also for AdamW groups.
        betas: AdamW's (β1, β2) for ``use_matrix_update=False`` groups (default (0.9, 0.95)).
        eps: AdamW's ε, and the norm clamps of the base maps (default 1e-8).
        base: ``"sinkhorn"`` (default), ``"row_norm"``, ``"sign"`` or ``"frobenius"``.
        sinkhorn_iters: L of the SR-Sinkhorn base (default 5).
        update_scale: ``"rms"`` (default), ``"dion_rms_norm"`` or ``"none"``.
        target_rms: the RMS of the update before η for ``"rms"`` (default 0.2), and the factor
            of ``"dion_rms_norm"``.
        rotate: ``"smaller"`` (default), ``"rows"`` or ``"columns"``: which side R acts on.
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    Example:
        >>> import torch
        >>> from gradkit.optim import ARO
        >>> w = torch.nn.Parameter(torch.zeros(3, 5))
        >>> opt = ARO([w], lr=0.1)
        >>> w.grad = torch.arange(15.0).reshape(3, 5).sin()
        >>> opt.step()
        >>> r = opt.state[w]["rotation"]
        >>> torch.allclose(r.T @ r, torch.eye(3), atol=1e-6)
        True
        >>> round(float(w.detach().square().mean().sqrt()), 4)  # RMS of the step: 0.2 · lr
        0.02
    """

    paper = "Gong, Zazo, Luo, Wang, Hensman, Ma, ARO: A New Lens On Matrix Optimization For Large Models (arXiv:2602.09006)"

    _matrix_state_names = ("momentum_buffer", "rotation")
    _kernel = ARO_KERNEL
    _matrix_hyper = ("momentum",)
    _matrix_options = (
        "base",
        "sinkhorn_iters",
        "update_scale",
        "target_rms",
        "rotate",
    )
    _validators = {
        **MatrixOptimizer._common_validators,
        "momentum": check.unit_interval,
        "base": check.one_of(*BASES),
        "sinkhorn_iters": check.positive_int,
        "update_scale": check.one_of(*UPDATE_SCALES),
        "target_rms": check.positive,
        "rotate": check.one_of(*ROTATE_SIDES),
    }

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3, momentum: float = 0.95,
        weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
        *, base: str = "sinkhorn", sinkhorn_iters: int = 5, update_scale: str = "rms",
        target_rms: float = 0.2, rotate: str = "smaller", use_matrix_update: bool = True,
        maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(params, hyperparams(locals()))

    def _state_shape(
        self, param: torch.Tensor, group: Mapping[str, Any], name: str
    ) -> tuple[int, ...] | None:
        if name != "rotation" or not group["use_matrix_update"]:
            return super()._state_shape(param, group, name)
        rows = param.shape[0]
        cols = param.numel() // rows if rows else 0
        size = cols if _transposed(group["rotate"], rows, cols) else rows
        return (size, size)

    def _state_dtype(self, param: torch.Tensor, group: Mapping[str, Any], name: str) -> torch.dtype:
        """Rotations stay in float32 (float64 for float64 params) through a checkpoint:
        ``torch.optim.Optimizer.load_state_dict`` would cast them to a bf16/fp16 param's dtype."""
        if name == "rotation" and group["use_matrix_update"]:
            return compute_dtype(param.dtype)
        return super()._state_dtype(param, group, name)

    def _init_state(self, param: torch.Tensor, group: Mapping[str, Any]) -> dict[str, Any]:
        if not group["use_matrix_update"]:
            return super()._init_state(param, group)
        state = self.state[param]
        if "step" not in state:
            state["step"] = torch.tensor(0, dtype=torch.int64)
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(
                param,
                dtype=self._state_dtype(param, group, "momentum_buffer"),
                memory_format=torch.preserve_format,
            )
        if "rotation" not in state:
            rows = param.shape[0]
            cols = param.numel() // rows if rows else 0
            size = cols if _transposed(group["rotate"], rows, cols) else rows
            state["rotation"] = torch.eye(
                size, dtype=compute_dtype(param.dtype), device=param.device
            )
        return state


def registry_spec() -> Any:
    """The registry entry for :class:`ARO` (see :mod:`gradkit.registry`)."""
    from gradkit._specs import ErrorInput
    from gradkit.optim._entries import matrix_error_inputs, optimizer_entry
    from gradkit.optim._param_groups import matrix_param_groups

    return optimizer_entry(
        ARO,
        "momentum, a QR rotation chosen for the base map, and SR-Sinkhorn for matrices (RMS 0.2 updates), AdamW for the rest",
        [
            {},
            {"weight_decay": 0.1, "momentum": 0.9, "base": "row_norm", "rotate": "rows"},
            {"update_scale": "dion_rms_norm", "base": "sign", "target_rms": 0.1},
        ],
        error_inputs=[
            *matrix_error_inputs(),
            ErrorInput({"momentum": 1.0}, ValueError, r"Invalid momentum: 1\.0"),
            ErrorInput({"base": "adam"}, ValueError, r"Invalid base: 'adam'"),
            ErrorInput({"update_scale": "x"}, ValueError, r"Invalid update_scale: 'x'"),
            ErrorInput({"target_rms": 0.0}, ValueError, r"Invalid target_rms: 0\.0"),
            ErrorInput({"rotate": "both"}, ValueError, r"Invalid rotate: 'both'"),
        ],
        hyperparams=("lr", "momentum", "weight_decay", "betas", "eps", "base", "update_scale"),
        lr=0.01,
        param_groups_fn=matrix_param_groups,
    )
