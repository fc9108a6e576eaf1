"""The shared shell of the matrix optimizers (SWAN, SinkGD, ARO).

It adds to :class:`~gradkit.optim._base.GradkitOptimizer`:

* **routing by group**: a group with ``use_matrix_update=True`` (the default) gets the method's
  matrix rule; a group with ``use_matrix_update=False`` gets AdamW (``lr``, ``betas``, ``eps``,
  ``weight_decay`` of that group), as in Keller Jordan's ``MuonWithAuxAdam`` (``use_muon``).
  :func:`gradkit.optim.matrix_param_groups` builds such groups from a model;
* **eager checks** in ``add_param_group``: a matrix-group parameter with fewer than 2
  dimensions raises ``ValueError`` naming it; distributed parameters (``DTensor``, FSDP's
  ``FlatParameter``) raise ``NotImplementedError`` (not supported yet: the matrix rules need the
  whole matrix on one device);
* **whole-step skipping**: under ``nonfinite="skip"`` a non-finite gradient in any group skips
  the update of *all* groups (the routing splits one model into several groups, and a
  half-applied step would desynchronise them), like ``torch.amp.GradScaler``;
* **stateless matrices**: for methods without matrix state (SWAN, SinkGD) nothing at all is
  stored for matrix-group params, not even a step counter, so ``optimizer.state`` holds
  entries only for the AdamW group.

Matrices are the ``(shape[0], prod(shape[1:]))`` view of a parameter (conv kernels become
``out × in·kh·kw``); the update is reshaped back to the parameter's shape. Zero-size matrices
are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from gradkit import _validation as check
from gradkit.optim._adamw import ADAMW, adamw_args
from gradkit.optim._base import GradkitOptimizer
from gradkit.optim._compile import Kernel, KernelArgs, Scalars

__all__ = ["MatrixOptimizer", "apply_matrix_update", "check_not_distributed"]

_ADAMW_STATE = ("exp_avg", "exp_avg_sq")


def apply_matrix_update(param: torch.Tensor, direction: torch.Tensor, s: Scalars) -> None:
    """``W ← W(1 − ηλ) − η·direction``, the direction reshaped to the param's shape (the last
    step of every matrix kernel; ``s`` holds ``lr`` and ``weight_decay``)."""
    lr = s["lr"]
    param.mul_(1 - lr * s["weight_decay"])
    param.sub_((direction * lr).reshape(param.shape).to(param.dtype))


def check_not_distributed(param: torch.Tensor, where: str) -> None:
    """Raise ``NotImplementedError`` for a ``DTensor`` or an FSDP ``FlatParameter``."""
    kind = None
    if type(param).__name__ == "FlatParameter":
        kind = "an FSDP FlatParameter"
    else:
        try:
            from torch.distributed.tensor import DTensor
        except ImportError:  # torch built without distributed
            DTensor = None  # type: ignore[assignment,misc]
        if DTensor is not None and isinstance(param, DTensor):
            kind = "a DTensor (FSDP2 / tensor parallel)"
    if kind is not None:
        raise NotImplementedError(
            f"{where} is {kind}: sharded parameters are not supported yet by gradkit's matrix "
            "optimizers (the matrix update needs the full matrix on one device); use them with "
            "DDP or unsharded parameters"
        )


class MatrixOptimizer(GradkitOptimizer):
    """Base class of SWAN, SinkGD and ARO (see the module docstring)."""

    #: State tensors of matrix-group params (empty for stateless methods).
    _matrix_state_names: ClassVar[tuple[str, ...]] = ()
    #: The AdamW group's second moment (a matrix rule's own state has no sign constraint).
    _nonnegative_state = frozenset({"exp_avg_sq"})
    #: Group keys passed to the matrix kernel as shared hyper-parameters besides ``lr`` and
    #: ``weight_decay`` (0-d tensors in the fused graph).
    _matrix_hyper: ClassVar[tuple[str, ...]] = ()
    #: Group keys passed to the matrix kernel as static options besides ``eps``.
    _matrix_options: ClassVar[tuple[str, ...]] = ()
    _common_validators: ClassVar[Mapping[str, check.Check]] = {"eps": check.positive}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        name = type(self).__name__
        index = len(self.param_groups)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for position, tensor in enumerate(group["params"]):
                where = f"{name}: param {position} of group {index}"
                check_not_distributed(tensor, where)
                if group["use_matrix_update"] and tensor.ndim < 2:
                    raise ValueError(
                        f"{where} has shape {tuple(tensor.shape)}, but a group with "
                        "use_matrix_update=True needs parameters with at least 2 dimensions; "
                        "put biases, norm gains and scalars in a group with "
                        "use_matrix_update=False (AdamW), e.g. with "
                        "gradkit.optim.matrix_param_groups(model)"
                    )
        except (ValueError, NotImplementedError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step (see :meth:`GradkitOptimizer.step`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group_index, group in enumerate(self.param_groups):
            if group["nonfinite"] != "skip":
                continue
            _, grads = self._collect(group, group_index)
            if not self._finite(group_index, group, grads):
                self.skipped_steps += 1
                return loss
        super().step()
        return loss

    def _state_names_for(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        return self._matrix_state_names if group["use_matrix_update"] else _ADAMW_STATE

    def _stateless(self, group: Mapping[str, Any]) -> bool:
        return bool(group["use_matrix_update"]) and not self._matrix_state_names

    def _init_state(self, param: torch.Tensor, group: Mapping[str, Any]) -> dict[str, Any]:
        if self._stateless(group):
            # Nothing is stored for stateless matrices; the base class's step bookkeeping
            # works on this throw-away dict.
            return {"step": torch.tensor(0, dtype=torch.int64)}
        return super()._init_state(param, group)

    def _kernel_for(self, group: Mapping[str, Any]) -> Kernel:
        return self._kernel if group["use_matrix_update"] else ADAMW

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        if not group["use_matrix_update"]:
            return adamw_args(group, steps)
        hyper = ("lr", "weight_decay", *self._matrix_hyper)
        return KernelArgs(
            hyper={name: group[name] for name in hyper},
            static={name: group[name] for name in ("eps", *self._matrix_options)},
        )
