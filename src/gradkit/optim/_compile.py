"""The ``fused=True`` path: one ``torch.compile``'d graph per optimizer step.

A method's fused step is its per-tensor kernel (the same function the for-loop reference
calls) run over every parameter inside one compiled function. Inductor fuses each tensor's
chain of elementwise ops into a single kernel, so the step reads and writes every state
tensor once. Hyper-parameters and per-parameter bias corrections enter the graph as 0-d or
1-d tensors, so an LR scheduler changing ``lr`` does not trigger a recompile.

If the compiler is unavailable (no C compiler, an unsupported platform), the first fused step
warns and falls back to the for-loop reference; the fall-back is per function and permanent
for the process. The tests assert that compilation really happened (see
``tests/test_fused.py``), so a silent fall-back cannot pass them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["compiled_kernel_loop", "compiled_step", "for_each_tensor", "scalar_tensor"]

_FALLBACK: set[str] = set()


def scalar_tensor(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d float64 tensor on ``like``'s device (a tensor is detached, not copied
    when it already matches)."""
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(()).to(device=like.device, dtype=torch.float64)
    return torch.tensor(value, dtype=torch.float64, device=like.device)


def per_tensor(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """Per-parameter scalars as a 1-d float64 tensor (indexed inside the compiled graph)."""
    return torch.tensor(values, dtype=torch.float64, device=like.device)


def compiled_step(
    name: str, fn: Callable[..., None], eager: Callable[..., None], *, backend: Any = "inductor"
) -> Callable[..., None]:
    """Wrap ``fn`` with ``torch.compile``; on a compiler failure warn once and run ``eager``.

    Args:
        name: method name for the warning.
        fn: the function to compile (a loop over a per-tensor kernel).
        eager: what to run instead if compilation fails (the for-loop reference).
        backend: the ``torch.compile`` backend (tests pass a failing one).
    """
    compiled: Callable[..., None] | None = None  # built on first use: importing dynamo is slow

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        nonlocal compiled
        if name in _FALLBACK:
            eager(*args, **kwargs)
            return
        if compiled is None:
            compiled = torch.compile(fn, dynamic=False, backend=backend)
        try:
            compiled(*[_lift_0d(arg) for arg in args], **kwargs)
        except Exception as error:  # compiler missing or broken: fall back loudly
            if not _is_compiler_failure(error):
                raise
            _FALLBACK.add(name)
            warnings.warn(
                f"{name}: fused=True needs torch.compile, which failed here "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                "falling back to the for-loop implementation",
                RuntimeWarning,
                stacklevel=3,
            )
            eager(*args, **kwargs)

    return run


def for_each_tensor(
    kernel: Callable[..., None],
    lists: Sequence[list[torch.Tensor]],
    scalars: dict[str, Any],
    *,
    skip_empty: bool = False,
) -> None:
    """Call ``kernel(*(lst[i] for lst in lists), **scalars)`` for every index ``i``.

    ``lists`` are parallel lists (params, grads, state tensors); ``scalars`` are the keyword
    arguments every call shares (floats, 0-d tensors, flags). With ``skip_empty`` an index whose
    first tensor has no elements is skipped.
    """
    for i in range(len(lists[0])):
        if skip_empty and lists[0][i].numel() == 0:
            continue
        kernel(*(lst[i] for lst in lists), **scalars)


def compiled_kernel_loop(
    name: str, kernel: Callable[..., None], *, skip_empty: bool = False
) -> Callable[[Sequence[list[torch.Tensor]], dict[str, Any]], None]:
    """The fused step of a per-tensor ``kernel``: :func:`for_each_tensor` compiled into one
    graph by :func:`compiled_step` (the same loop, eager, is the fall-back).

    Call it as ``loop([params, grads, ...], {"lr": lr_tensor, "maximize": False, ...})``; pass
    hyper-parameters that schedulers change as 0-d tensors (:func:`scalar_tensor`) so that a new
    value does not recompile.
    """

    def loop(lists: Sequence[list[torch.Tensor]], scalars: dict[str, Any]) -> None:
        for_each_tensor(kernel, lists, scalars, skip_empty=skip_empty)

    loop.__name__ = f"{name.lower()}_kernel_loop"
    return compiled_step(name, loop, loop)


def _lift_0d(arg: Any) -> Any:
    """Pass 0-d tensors in a list as 1-element views.

    torch 2.13's ``torch.compile`` on CPU drops in-place updates of 0-d tensors that arrive
    inside a list (the update is computed but never written back), so a 0-d param or its state
    would silently stay put. A ``view(1)`` shares the storage, so the update lands.
    """
    if isinstance(arg, list | tuple) and arg and all(isinstance(t, list) for t in arg):
        return [_lift_0d(t) for t in arg]  # parallel lists (compiled_kernel_loop)
    if isinstance(arg, list) and any(isinstance(t, torch.Tensor) and t.ndim == 0 for t in arg):
        return [t.view(1) if isinstance(t, torch.Tensor) and t.ndim == 0 else t for t in arg]
    return arg


def _is_compiler_failure(error: Exception) -> bool:
    """True for errors that mean "no working compiler here", not a bug in the step."""
    from torch._dynamo.exc import BackendCompilerFailed

    if isinstance(error, BackendCompilerFailed | OSError):
        return True
    return type(error).__name__ in {"InvalidCxxCompiler", "CppCompileError"}
