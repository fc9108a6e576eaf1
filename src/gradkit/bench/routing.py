"""Parameter routing for matrix methods, optimizer chains and optimizer-state memory.

Matrix methods (Muon, SWAN, SinkGD, ARO) update the hidden weight matrices; embeddings, the
output head and every 1-D parameter go to AdamW. The split is
:func:`gradkit.optim.matrix_param_groups` (the policy all their papers and reference codes
share), used two ways (:attr:`gradkit.bench.methods.Method.routing`):

* ``"groups"``: the optimizer routes by param group itself (gradkit's matrix optimizers: a group
  with ``use_matrix_update=False`` gets AdamW inside the same optimizer);
* ``"chain"``: the matrices go to the optimizer class, the rest to a separate
  ``torch.optim.AdamW``; both are stepped together by an :class:`OptimizerChain`
  (``torch.optim.Muon`` accepts only 2-D parameters, and its documentation asks for this).

:func:`optimizer_state_bytes` measures what an optimizer keeps besides the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

__all__ = ["OptimizerChain", "build_routed", "optimizer_state_bytes", "split_matrix_params"]


class OptimizerChain:
    """Several optimizers stepped as one (over disjoint parameters).

    ``param_groups`` is the concatenation of the members' groups (the same dicts, so a
    schedule that writes ``group["lr"]`` reaches the member); ``state_dict`` holds one state
    dict per member.

    Example:
        >>> a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
        >>> chain = OptimizerChain([torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.2)])
        >>> (a.sum() + b.sum()).backward()
        >>> chain.step()
        >>> [round(float(p[0].flatten()[0]), 2) for p in (a, b)]
        [0.9, 0.8]
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        if not self.optimizers:
            raise ValueError("OptimizerChain needs at least one optimizer")

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The members' param groups, in order."""
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Step every member; a closure is evaluated once, by the first member."""
        loss = None
        for i, opt in enumerate(self.optimizers):
            result = opt.step(closure if i == 0 else None)
            loss = result if i == 0 else loss
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``zero_grad`` on every member."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizers": [member state dicts]}``."""
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        states = list(state_dict["optimizers"])
        if len(states) != len(self.optimizers):
            raise ValueError(
                f"state dict has {len(states)} optimizers, this chain has {len(self.optimizers)}"
            )
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)

    def __repr__(self) -> str:
        return f"OptimizerChain({', '.join(type(o).__name__ for o in self.optimizers)})"


def split_matrix_params(
    model: torch.nn.Module,
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """``(matrices, rest)`` of ``model`` by :func:`gradkit.optim.matrix_param_groups`."""
    from gradkit.optim import matrix_param_groups

    matrices: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for group in matrix_param_groups(model):
        (matrices if group["use_matrix_update"] else rest).extend(group["params"])
    return matrices, rest


def build_routed(
    cls: type[torch.optim.Optimizer],
    routing: str,
    model: torch.nn.Module,
    kwargs: Mapping[str, Any],
    aux: Mapping[str, Any],
) -> Any:
    """Build ``cls`` for ``model`` with matrix routing (see the module docstring).

    ``kwargs`` go to ``cls`` (the matrix group); ``aux`` holds the AdamW keyword arguments of
    the other parameters (``lr``, ``betas``, ``weight_decay``, ``eps``).
    """
    if routing == "groups":
        from gradkit.optim import matrix_param_groups

        return cls(matrix_param_groups(model, adamw_options=dict(aux)), **kwargs)
    if routing == "chain":
        matrices, rest = split_matrix_params(model)
        members: list[torch.optim.Optimizer] = []
        if matrices:
            members.append(cls(matrices, **kwargs))
        if rest:
            members.append(torch.optim.AdamW(rest, **aux))
        return OptimizerChain(members)
    raise ValueError(f"unknown routing {routing!r}; expected 'groups' or 'chain'")


def optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes of every tensor reachable from ``optimizer`` that is not one of its parameters.

    Walks the optimizer object's attributes (``state``, ``param_groups``, ``defaults`` and any
    other), into dicts, lists, tuples, sets and nested optimizers/chains; each storage is
    counted once. 0-d step counters count too; parameters (and views of them) do not.

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(10))
        >>> opt = torch.optim.Adam([p])
        >>> p.grad = torch.ones(10)
        >>> opt.step()
        >>> optimizer_state_bytes(opt)  # exp_avg, exp_avg_sq (2 × 40 bytes) and a 4-byte step
        84
    """
    params = [p for g in getattr(optimizer, "param_groups", []) for p in g["params"]]
    excluded = {_storage_key(p) for p in params}
    seen_objects: set[int] = set()
    seen_storages: set[tuple[int, int]] = set()
    total = 0

    def visit(obj: Any) -> None:
        nonlocal total
        if id(obj) in seen_objects:
            return
        seen_objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            key = _storage_key(obj)
            if key in excluded or key in seen_storages:
                return
            seen_storages.add(key)
            total += obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                visit(k)
                visit(v)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                visit(v)
        elif isinstance(obj, (torch.optim.Optimizer, OptimizerChain)):
            for v in vars(obj).values():
                visit(v)

    visit(optimizer)
    return total


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return (storage.data_ptr(), storage.nbytes())
