"""Count the tensor memory an object keeps alive (optimizer state, caches, hyper-parameters).

:func:`reachable_tensors` walks an object graph — ``__dict__`` attributes, ``__slots__``,
dicts (keys and values), lists, tuples, sets — and returns every tensor it reaches, except the
ones in ``exclude`` (typically the model's parameters) and except what hangs off a tensor
(``.grad`` is the model's, not the optimizer's). Modules, classes and functions are not
entered. :func:`state_bytes` sums the bytes of the distinct storages of those tensors, so a
view is counted once with its base.

This counts everything an optimizer holds — ``state``, ``param_groups``, ``defaults``, buffers
cached on the object — not only ``optimizer.state``.

Example:
    >>> import torch
    >>> from gradkit.testing import state_bytes
    >>> w = torch.nn.Parameter(torch.zeros(3, 4))
    >>> opt = torch.optim.Adam([w])
    >>> w.grad = torch.ones(3, 4)
    >>> opt.step()
    >>> state_bytes(opt, exclude=[w])  # exp_avg + exp_avg_sq (48 B each) + a 4-byte step
    100
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["reachable_tensors", "state_bytes"]

_OPAQUE = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    str,
    bytes,
    int,
    float,
    complex,
)


def reachable_tensors(root: Any, exclude: Iterable[torch.Tensor] = ()) -> list[torch.Tensor]:
    """Every tensor reachable from ``root`` (see the module docstring), each once."""
    excluded = {id(t) for t in exclude}
    seen: set[int] = set()
    found: list[torch.Tensor] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if id(obj) not in excluded:
                found.append(obj)
            continue
        if isinstance(obj, _OPAQUE) or obj is None:
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.append(attributes)
            for slot in getattr(type(obj), "__slots__", ()):
                if isinstance(slot, str) and hasattr(obj, slot):
                    stack.append(getattr(obj, slot))
    return found


def state_bytes(root: Any, exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages of :func:`reachable_tensors` (``root``, ``exclude``).

    A storage shared with an excluded tensor (a parameter's view) is not counted."""
    exclude = list(exclude)
    skip = {t.untyped_storage().data_ptr() for t in exclude if t.numel()}
    total = 0
    counted: set[int] = set()
    for tensor in reachable_tensors(root, exclude):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if tensor.numel() and key in skip:
            continue
        if key in counted and key != 0:
            continue
        counted.add(key)
        total += storage.nbytes()
    return total
