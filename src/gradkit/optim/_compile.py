"""The one step path of every gradkit optimizer: a per-tensor kernel and its three drivers.

A method writes its math once, as a **kernel**: a function that updates one parameter and its
state tensors in place, ``kernel(param, grad, *state, s=scalars)``, ``s`` a dict. :class:`Kernel` runs it over
a param group in one of three ways:

* ``"forloop"`` (the reference): the kernel, eagerly, tensor by tensor, with Python floats;
* ``"foreach"`` (the default): the method's optional hand-written multi-tensor form, on
  same-device, same-dtype, cache-sized chunks (:func:`~gradkit.optim._foreach.foreach_chunks`),
  where one was measured faster than the kernel loop; otherwise the kernel loop;
* ``"fused"``: the kernel loop inside one ``torch.compile``'d graph. Inductor fuses each
  tensor's chain of elementwise ops into a single kernel, so the step reads and writes every
  state tensor once.

The scalars a kernel takes come in three kinds (:class:`KernelArgs`), so that the compiled graph
neither recompiles nor synchronises when they change:

* ``hyper``: shared by every tensor (``lr``, betas, ...): Python floats eagerly, 0-d float64
  tensors in the graph (an LR scheduler changing ``lr`` does not recompile);
* ``per_tensor``: one float per param (bias corrections, which depend on each param's step
  count): lists eagerly, 1-d float64 tensors indexed inside the graph;
* ``static``: flags and options that select code (``decay``, ``nesterov``, ...); the graph
  specialises on them.

``maximize`` is applied by the drivers (the kernel sees the negated gradient), and ``p.grad`` is
never modified. If the compiler is unavailable (no C compiler, an unsupported platform), the
first fused step warns and falls back to the for-loop; the fall-back is per kernel and permanent
for the process. The tests assert that compilation really happened (``tests/test_fused.py``),
so a silent fall-back cannot pass them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradkit.optim._foreach import foreach_chunks

__all__ = ["ONE_READ_PASS", "Kernel", "KernelArgs", "Scalars", "compiled_step", "scalar_tensor"]

_FALLBACK: set[str] = set()

Lists = Sequence[list[torch.Tensor]]
#: The scalars of a kernel call: the hyper, per-tensor and static entries of :class:`KernelArgs`
#: in one dict (a per-tensor entry holds the one tensor's value, or in a foreach form the list).
Scalars = dict[str, Any]
#: ``foreach(lists, s)`` on one chunk; ``lists[1]`` (the gradients) is already negated under
#: ``maximize`` and may be modified only if the form made it itself.
ForeachForm = Callable[[list[list[torch.Tensor]], Scalars], None]
#: Inductor options, as ``torch.compile(options=...)`` takes them.
CompileOptions = dict[str, str | int | bool | Callable[..., Any]]


def scalar_tensor(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d float64 tensor on ``like``'s device (a tensor is detached, not copied
    when it already matches)."""
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(()).to(device=like.device, dtype=torch.float64)
    return torch.tensor(value, dtype=torch.float64, device=like.device)


@dataclass(frozen=True)
class KernelArgs:
    """The scalars of one kernel call over a param group (see the module docstring)."""

    hyper: dict[str, Any] = field(default_factory=dict)
    per_tensor: dict[str, list[float]] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)


def _kernel_loop(
    kernel: Callable[..., None],
    skip_empty: bool,
    lists: Lists,
    hyper: dict[str, Any],
    per_tensor: dict[str, Any],
    static: dict[str, Any],
    maximize: bool,
) -> None:
    """``kernel`` over every index of the parallel ``lists`` (eager, or traced by the compiler:
    ``per_tensor`` values are then 1-d tensors and ``v[i]`` a 0-d tensor in the graph)."""
    for i in range(len(lists[0])):
        if skip_empty and lists[0][i].numel() == 0:
            continue
        tensors = [lst[i] for lst in lists]
        if maximize:
            tensors[1] = -tensors[1]
        kernel(*tensors, s={**hyper, **{k: v[i] for k, v in per_tensor.items()}, **static})


class Kernel:
    """A method's per-tensor kernel with its for-loop, foreach and fused drivers.

    Args:
        name: the method's name (warnings, the compiled function's name).
        fn: the kernel, ``fn(param, grad, *state, s=scalars)``, in place (``s``: :data:`Scalars`).
        foreach: optional hand-written multi-tensor form of the same math (see
            :data:`ForeachForm`); without it ``impl="foreach"`` runs the kernel loop.
        skip_empty: skip params with no elements (matrix kernels).
        compile_options: Inductor options of the fused graph (default: no per-call size
            asserts on the inputs, which Dynamo's guards already check; e.g.
            :data:`ONE_READ_PASS`).
    """

    def __init__(
        self, name: str, fn: Callable[..., None], *, foreach: ForeachForm | None = None,
        skip_empty: bool = False, compile_options: CompileOptions | None = None,
    ) -> None:  # fmt: skip
        self.name, self.fn, self.foreach, self.skip_empty = name, fn, foreach, skip_empty

        def loop(*args: Any) -> None:  # (lists, hyper, per_tensor, static, maximize)
            _kernel_loop(fn, skip_empty, *args)

        loop.__name__ = f"{name.lower().replace(' ', '_')}_kernel_loop"
        options: CompileOptions = (
            {"size_asserts": False} if compile_options is None else compile_options
        )
        self._compiled = compiled_step(name, loop, loop, options=options)

    def __call__(self, lists: Lists, args: KernelArgs, impl: str, *, maximize: bool) -> None:
        """Update every param of ``lists = [params, grads, *state]`` with ``impl``."""
        if impl not in ("forloop", "foreach", "fused"):
            raise ValueError(f"Invalid impl: {impl!r} (must be 'forloop', 'foreach' or 'fused')")
        if not lists[0]:
            return
        if impl == "fused":
            like = lists[0][0]
            tensors = {k: scalar_tensor(v, like) for k, v in args.hyper.items()}
            per_tensor = {
                k: torch.tensor(v, dtype=torch.float64, device=like.device)
                for k, v in args.per_tensor.items()
            }
            self._compiled(_lift_0d(lists), tensors, per_tensor, args.static, maximize)
            return
        hyper = {k: float(v) for k, v in args.hyper.items()}
        if impl == "forloop" or self.foreach is None:
            _kernel_loop(
                self.fn, self.skip_empty, lists, hyper, args.per_tensor, args.static, maximize
            )
            return
        for chunk, indices in foreach_chunks(list(lists)):
            if maximize:
                chunk[1] = list(torch._foreach_neg(chunk[1]))
            chunk_scalars = {k: [v[i] for i in indices] for k, v in args.per_tensor.items()}
            self.foreach(chunk, {**hyper, **chunk_scalars, **args.static})


#: Inductor options for kernels whose update needs per-row reductions of itself before it can
#: be applied (AdamP, SGDP). By default Inductor stores such an update (a full-size temporary,
#: freshly allocated and page-faulted every step) between the reduction and the apply loop; with
#: these thresholds it recomputes it instead, so the step is two passes over the inputs (one
#: read pass for the reductions, one read-write pass) and allocates nothing full-size.
ONE_READ_PASS: CompileOptions = {
    "size_asserts": False,
    "realize_reads_threshold": 64,
    "realize_opcount_threshold": 256,
    "realize_acc_reads_threshold": 64,
}


def compiled_step(
    name: str,
    fn: Callable[..., None],
    eager: Callable[..., None],
    *,
    backend: Any = "inductor",
    options: CompileOptions | None = None,
) -> Callable[..., None]:
    """Wrap ``fn`` with ``torch.compile``; on a compiler failure warn once and run ``eager``.

    Args:
        name: method name for the warning.
        fn: the function to compile (a loop over a per-tensor kernel).
        eager: what to run instead if compilation fails (the for-loop reference).
        backend: the ``torch.compile`` backend (tests pass a failing one).
        options: Inductor options (``torch.compile(options=...)``).
    """
    compiled: Callable[..., None] | None = None  # built on first use: importing dynamo is slow

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        nonlocal compiled
        if name in _FALLBACK:
            eager(*args, **kwargs)
            return
        try:
            with warnings.catch_warnings():
                # torch's own deprecation notices while it compiles (torch.jit.script_method
                # inside Inductor) say nothing to a gradkit user; compiling takes ~10-20 s once
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
                if compiled is None:
                    compiled = torch.compile(fn, dynamic=False, backend=backend, options=options)
                compiled(*args, **kwargs)
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


def _lift_0d(lists: Lists) -> list[list[torch.Tensor]]:
    """Pass 0-d tensors as 1-element views.

    torch 2.13's ``torch.compile`` on CPU drops in-place updates of 0-d tensors that arrive
    inside a list (the update is computed but never written back), so a 0-d param or its state
    would silently stay put. A ``view(1)`` shares the storage, so the update lands. (State
    tensors have their param's shape, so the params tell whether any list needs lifting.)
    """
    if all(param.ndim for param in lists[0]):
        return list(lists)
    return [[t.view(1) if t.ndim == 0 else t for t in lst] for lst in lists]


def _is_compiler_failure(error: Exception) -> bool:
    """True for errors that mean "no working compiler here", not a bug in the step."""
    from torch._dynamo.exc import BackendCompilerFailed

    if isinstance(error, BackendCompilerFailed | OSError):
        return True
    return type(error).__name__ in {"InvalidCxxCompiler", "CppCompileError"}
