"""The aggregator shell shared by every :mod:`gradkit.mtl` method.

An *aggregator* maps the Jacobian ``G`` (a ``K × P`` tensor whose row ``k`` is task ``k``'s
gradient with respect to the ``P`` shared parameters, flattened) to one update vector ``d`` of
length ``P``, which :func:`gradkit.mtl.mtl_backward` writes into ``.grad``.

Each method is a small pure function on tensors (the math, tested directly) plus a thin
:class:`Aggregator` subclass that validates the input, holds hyper-parameters and, for
stateful methods, the state that ``state_dict()`` / ``load_state_dict()`` save and restore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

__all__ = ["Aggregator", "check_jacobian"]


def check_jacobian(jacobian: Any, *, min_tasks: int = 1, owner: str = "aggregator") -> None:
    """Validate a ``K × P`` Jacobian; raise ``TypeError``/``ValueError`` naming the problem.

    Checks: a dense real floating-point ``torch.Tensor``, 2-D, ``K >= min_tasks``, ``P >= 1``
    and every entry finite (the message names the offending task rows).
    """
    if not isinstance(jacobian, torch.Tensor):
        raise TypeError(
            f"Invalid jacobian for {owner}: expected a torch.Tensor of shape [K, P], "
            f"got {type(jacobian).__name__}"
        )
    if jacobian.layout != torch.strided:
        raise TypeError(f"Invalid jacobian for {owner}: layout {jacobian.layout} (must be dense)")
    if jacobian.dim() != 2:
        raise ValueError(
            f"Invalid jacobian shape for {owner}: {tuple(jacobian.shape)} "
            "(must be 2-D: [tasks K, shared params P])"
        )
    if not jacobian.is_floating_point():
        raise TypeError(
            f"Invalid jacobian dtype for {owner}: {jacobian.dtype} (must be a real floating dtype)"
        )
    k, p = jacobian.shape
    if k < min_tasks:
        raise ValueError(
            f"Invalid number of tasks for {owner}: {k} (must be >= {min_tasks}; "
            f"the jacobian has shape {tuple(jacobian.shape)})"
        )
    if p < 1:
        raise ValueError(
            f"Invalid jacobian shape for {owner}: {tuple(jacobian.shape)} (no shared parameters)"
        )
    finite = torch.isfinite(jacobian).all(dim=1)
    if not bool(finite.all()):
        bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
        raise ValueError(
            f"Non-finite gradient (NaN or ±inf) for task(s) {bad} in the jacobian given to {owner}"
        )


class Aggregator:
    """Base class: ``aggregator(jacobian [K, P]) -> update [P]``.

    Subclasses implement :meth:`_aggregate` (on an already validated Jacobian) and list their
    hyper-parameters in :meth:`hyperparameters` (used by ``repr``). Stateless aggregators
    inherit the empty :meth:`state_dict`; stateful ones override both state methods so that a
    checkpoint (``torch.save`` then ``torch.load(weights_only=True)``) resumes exactly.
    :func:`gradkit.testing.check_aggregator` certifies a subclass.

    Example:
        >>> import torch
        >>> from gradkit.mtl import Aggregator
        >>> class Normalised(Aggregator):
        ...     hyperparameter_names = ("eps",)
        ...     def __init__(self, eps: float = 1e-12) -> None:
        ...         self.eps = eps
        ...     def _aggregate(self, jacobian):
        ...         norms = jacobian.norm(dim=1, keepdim=True) + self.eps
        ...         return (jacobian / norms).mean(dim=0)
        >>> Normalised()(torch.tensor([[3.0, 4.0], [0.0, -2.0]])).tolist()
        [0.30000001192092896, -0.09999999403953552]
        >>> Normalised()
        Normalised(eps=1e-12)
    """

    #: Fewest tasks the method accepts.
    min_tasks: ClassVar[int] = 1
    #: Names of the constructor arguments, stored as attributes of the same name (``repr``).
    hyperparameter_names: ClassVar[tuple[str, ...]] = ()

    def __call__(self, jacobian: torch.Tensor) -> torch.Tensor:
        check_jacobian(jacobian, min_tasks=self.min_tasks, owner=type(self).__name__)
        return self._aggregate(jacobian)

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments, as stored (shown by ``repr``)."""
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    def state_dict(self) -> dict[str, Any]:
        """The aggregator's state (empty for stateless aggregators)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (stateless: only an empty mapping is accepted)."""
        self._check_state_dict(state_dict, ())
        if state_dict:
            raise ValueError(
                f"Invalid state_dict for {type(self).__name__}: it is stateless, "
                f"got keys {sorted(state_dict)}"
            )

    def _check_state_dict(self, state_dict: Any, keys: tuple[str, ...]) -> None:
        """A mapping holding at least ``keys``; else ``TypeError``/``ValueError`` naming them."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"Invalid state_dict for {type(self).__name__}: expected a mapping, "
                f"got {type(state_dict).__name__}"
            )
        missing = set(keys) - set(state_dict)
        if missing:
            raise ValueError(
                f"Invalid state_dict for {type(self).__name__}: missing keys {sorted(missing)}"
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"
