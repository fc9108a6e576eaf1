"""The shared optimizer shell.

Every gradkit optimizer is a thin subclass of :class:`GradkitOptimizer`. The shell owns what
is the same for all methods, so that a method module holds only its math:

* hyper-parameter validation for every param group (constructor arguments and per-group
  overrides alike), with messages that name the value;
* gradient collection: params whose ``.grad`` is ``None`` are skipped entirely (no state
  change, no weight decay), sparse gradients raise ``TypeError``, complex params raise
  ``TypeError`` unless the method supports them;
* the **non-finite gradient policy** (``nonfinite=``):

  - ``"raise"`` (default): before anything is modified, a step whose gradients contain NaN or
    ±inf raises :class:`NonFiniteGradientError` naming the param. Params and state are left
    exactly as they were, so the caller can skip the batch and go on.
  - ``"skip"``: the group's update is skipped silently (like ``torch.amp.GradScaler`` does);
    ``optimizer.skipped_steps`` counts such steps (not saved in ``state_dict``).
  - ``"ignore"``: no check (``torch.optim`` behaviour; saves one read of the gradients).

* lazy state initialisation, the per-param ``step`` counter (a 0-d ``int64`` tensor, exact for
  any number of steps), and the choice between the three implementations of the update:
  the for-loop reference, ``foreach`` (default) and ``fused`` (``torch.compile``);
* ``load_state_dict`` compatibility: a checkpoint saved before a hyper-parameter existed loads
  and the new hyper-parameter takes its default; a float ``step`` is converted.

A subclass declares its hyper-parameters (names and defaults in its constructor's signature,
passed on with :func:`hyperparams`; validation in ``_validators``), ``_state_names`` (the
per-param state tensors, zero-initialised), its per-tensor ``_kernel``
(:class:`~gradkit.optim._compile.Kernel`, which owns the for-loop / foreach / fused dispatch and
``maximize``) and ``_kernel_args(group, steps, impl)``, the kernel's scalars for a param group
(:class:`~gradkit.optim._compile.KernelArgs`: shared hyper-parameters, per-tensor scalars such as
bias corrections, static flags).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, cast

import torch
from torch.optim.optimizer import required

from gradkit import _validation as check
from gradkit.optim import _checkpoint as checkpoint
from gradkit.optim._compile import Kernel, KernelArgs

__all__ = ["GradkitOptimizer", "NonFiniteGradientError", "ParamsT", "hyperparams"]

ParamsT = Iterable[torch.Tensor] | Iterable[dict[str, Any]]

#: Validators by name, shared by every gradkit optimizer (a class's ``_validators`` add to and
#: override them); a hyper-parameter whose default is a ``bool`` is checked with
#: :func:`~gradkit._validation.boolean` unless a validator is named.
COMMON_VALIDATORS: dict[str, check.Check] = {
    "lr": check.nonnegative,
    "betas": check.betas,
    "eps": check.nonnegative,
    "weight_decay": check.nonnegative,
    "maximize": check.boolean,
    "foreach": check.optional_boolean,
    "fused": check.optional_boolean,
    "nonfinite": check.nonfinite_policy,
}


def hyperparams(arguments: Mapping[str, Any], *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The ``defaults`` of an optimizer from its constructor's ``locals()``: every argument but
    ``self``, ``params`` and ``exclude`` (the signature is the one declaration of the names and
    defaults)."""
    skipped = {"self", "params", "__class__", *exclude}
    return {name: value for name, value in arguments.items() if name not in skipped}


@functools.cache
def _bool_hyperparams(init: Callable[..., None]) -> frozenset[str]:
    """The arguments of a constructor ``init`` whose declared default is a ``bool``."""
    parameters = inspect.signature(init).parameters.values()
    return frozenset(p.name for p in parameters if isinstance(p.default, bool))


#: Param dtypes whose state and update arithmetic run in float32 under ``upcast=True``.
LOW_PRECISION = (torch.float16, torch.bfloat16)


class NonFiniteGradientError(ValueError):
    """A gradient contains NaN or ±inf and the group's policy is ``nonfinite="raise"``."""


class GradkitOptimizer(torch.optim.Optimizer):
    """Base class of the gradkit optimizers (see the module docstring).

    Every subclass accepts these keyword arguments besides its own hyper-parameters:

    * ``maximize``: maximize the objective instead of minimizing it (default False).
    * ``foreach``: the ``torch._foreach`` implementation (the default when ``None``); ``False``
      runs the for-loop reference.
    * ``fused``: the single compiled-graph implementation (``torch.compile``; default off).
    * ``nonfinite``: ``"raise"`` (default), ``"skip"`` or ``"ignore"``: the policy for NaN/inf
      gradients.
    * ``upcast``: ``True`` (default): for float16/bfloat16 params the state is kept in float32
      and the update is computed in float32 on copies of the param and its gradient, then
      rounded once into the param (memory: 4 bytes per state element instead of 2, plus a
      float32 copy of each low-precision param and gradient during the step). ``False``:
      torch's convention, state and arithmetic in the param's dtype (Adam-like methods then
      overflow float16: ``g²`` of ordinary gradients underflows and ``1/√v`` explodes).
    """

    #: Per-param state tensors, zero-initialised like the param, besides ``step``.
    _state_names: ClassVar[tuple[str, ...]] = ()
    #: ``name -> check`` for the method's own hyper-parameters (beside :data:`COMMON_VALIDATORS`
    #: and the ``bool`` rule).
    _validators: ClassVar[Mapping[str, check.Check]] = {}
    #: Whether complex params are supported.
    _supports_complex: ClassVar[bool] = False
    #: The paper the method comes from, with its arXiv id (shown by the registry).
    paper: ClassVar[str] = ""
    #: The method's per-tensor kernel (its math) with its drivers.
    _kernel: ClassVar[Kernel]
    #: State tensors whose entries must be ``>= 0`` (checked when a checkpoint is loaded).
    _nonnegative_state: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {torch.typename(params)}"
            )
        self.skipped_steps = 0
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups and validation
    def _validate_group(self, group: Mapping[str, Any], where: str = "") -> None:
        validators = {**COMMON_VALIDATORS, **self._validators}
        for name, value in group.items():
            validate = validators.get(name)
            if validate is None and name in _bool_hyperparams(type(self).__init__):
                validate = check.boolean
            if validate is None:
                continue
            if where and isinstance(value, torch.Tensor) and value.device.type != "cpu":
                continue  # at step time, reading an accelerator tensor would sync
            try:
                validate(name, value)
            except (TypeError, ValueError) as error:
                if not where:
                    raise
                raise type(error)(f"{type(self).__name__} {where}: {error}") from None
        if group.get("fused") and group.get("foreach"):
            raise ValueError("Invalid fused/foreach: `fused` and `foreach` cannot both be True")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        merged = {**self.defaults, **param_group}
        for name, value in merged.items():
            if value is required:
                raise ValueError(
                    f"{type(self).__name__}: param group {len(self.param_groups)} did not specify "
                    f"a value of the required hyper-parameter {name!r} (give it to the "
                    "constructor or in every param group)"
                )
        self._validate_group(merged)
        params = param_group["params"]
        tensors = [params] if isinstance(params, torch.Tensor) else list(params)
        name = type(self).__name__
        for tensor in tensors:
            if (
                isinstance(tensor, torch.Tensor)
                and tensor.is_complex()
                and not self._supports_complex
            ):
                raise TypeError(
                    f"{name} does not support complex parameters (got {tensor.dtype}); "
                    "optimize torch.view_as_real(param) instead"
                )
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        loading = self.__dict__.get("_gradkit_loading")
        if loading is not None:  # inside load_state_dict: check before anything is replaced
            strict, captured = loading
            self._prepare_loaded(state, strict, captured.get("state_dict"))
        had_differentiable = "differentiable" in self.__dict__.get("defaults", {})
        super().__setstate__(state)
        if not had_differentiable:
            self.defaults.pop("differentiable", None)
        self.__dict__.setdefault("skipped_steps", 0)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, plus ``"gradkit": {"optimizer": class name, "format": 1}`` so that
        :meth:`load_state_dict` can refuse a checkpoint of another optimizer."""
        state_dict = super().state_dict()
        state_dict[checkpoint.MARKER_KEY] = {
            "optimizer": type(self).__name__,
            "format": checkpoint.FORMAT,
        }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any], *, strict: bool = True) -> None:
        """Load a checkpoint, validating it first (see :mod:`gradkit.optim._checkpoint`).

        Hyper-parameters missing from an older checkpoint take their current defaults; a float
        ``step`` (torch's convention) is converted to ``int64``. The state is checked before
        anything is replaced: a checkpoint of another optimizer class, unknown or missing state
        keys, wrong shapes, non-finite values or values outside their domain raise a
        ``ValueError``/``TypeError`` naming the param and the key, and the optimizer is left as
        it was. Load-state-dict post-hooks run after these fix-ups.

        Args:
            state_dict: the output of :meth:`state_dict` (``torch.load`` of a checkpoint).
            strict: refuse checkpoints of another class and unknown or missing state keys
                (default). ``strict=False`` drops unknown keys and re-initialises missing ones,
                with a warning; values are validated either way.
        """
        checkpoint.check_marker(self, state_dict, strict)
        captured: dict[str, Any] = {}

        def capture(optimizer: Any, final: dict[str, Any]) -> None:
            captured["state_dict"] = final  # after the user's pre-hooks, before torch's casts

        defaults = dict(self.defaults)
        handle = self.register_load_state_dict_pre_hook(capture)
        self.__dict__["_gradkit_loading"] = (strict, captured)
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()
            self.__dict__.pop("_gradkit_loading", None)
        self.defaults = defaults  # torch's __setstate__ adds `differentiable`, which we lack

    def _prepare_loaded(self, state: dict[str, Any], strict: bool, raw: Any) -> None:
        """Validate and fix up what torch's ``load_state_dict`` is about to install."""
        name = type(self).__name__
        saved_groups = raw["param_groups"] if isinstance(raw, Mapping) else None
        saved_state = raw["state"] if isinstance(raw, Mapping) else {}
        for group_index, group in enumerate(state["param_groups"]):
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            self._validate_group(group)
            saved_ids = saved_groups[group_index]["params"] if saved_groups else []
            for position, param in enumerate(group["params"]):
                param_state = state["state"].get(param)
                if param_state is None:
                    continue
                where = f"{name}.load_state_dict: param {position} of group {group_index}"
                checkpoint.check_param_state(self, param, param_state, group, where, strict)
                saved = saved_state.get(saved_ids[position], {}) if saved_ids else {}
                for key, value in param_state.items():
                    if key == "step":
                        continue
                    dtype = self._state_dtype(param, group, key)
                    if value.dtype != dtype:
                        source = saved.get(key, value) if isinstance(saved, Mapping) else value
                        param_state[key] = source.detach().to(
                            device=param.device, dtype=dtype, copy=True
                        )

    # ------------------------------------------------------------------ state
    def _state_names_for(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """State tensors a param of ``group`` needs (override when it depends on a flag)."""
        return self._state_names

    def _extra_state_names_for(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """Optional state tensors a param of ``group`` may have besides the required ones."""
        return ()

    def _state_shape(
        self, param: torch.Tensor, group: Mapping[str, Any], name: str
    ) -> tuple[int, ...] | None:
        """The shape state tensor ``name`` must have (``None``: not checked)."""
        return tuple(param.shape)

    def _state_dtype(self, param: torch.Tensor, group: Mapping[str, Any], name: str) -> torch.dtype:
        """The dtype state tensor ``name`` is kept in: ``float32`` for float16/bfloat16 params
        under ``upcast=True`` (the default), else the param's (torch's convention)."""
        if param.dtype in LOW_PRECISION and group.get("upcast", True):
            return torch.float32
        return param.dtype

    def _init_state(self, param: torch.Tensor, group: Mapping[str, Any]) -> dict[str, Any]:
        state = self.state[param]
        if "step" not in state:
            state["step"] = torch.tensor(0, dtype=torch.int64)
        for name in self._state_names_for(group):
            if name not in state:  # also fills a buffer a newly enabled flag needs
                state[name] = torch.zeros_like(
                    param,
                    dtype=self._state_dtype(param, group, name),
                    memory_format=torch.preserve_format,
                )
        return state

    # ------------------------------------------------------------------ step
    def _collect(
        self, group: dict[str, Any], group_index: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        for index, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"(param {index} of group {group_index}); use torch.optim.SparseAdam"
                )
            params.append(param)
            grads.append(grad)
        return params, grads

    def _finite(self, group_index: int, group: dict[str, Any], grads: list[torch.Tensor]) -> bool:
        """Whether all ``grads`` are finite; raises under the ``"raise"`` policy."""
        # meta tensors have no values to check (a model being traced or sized); empty ones none
        grads = [grad for grad in grads if grad.numel() and grad.device.type != "meta"]
        if group["nonfinite"] == "ignore" or not grads:
            return True
        if all(self._all_finite(tensors) for tensors in self._by_device_and_dtype(grads)):
            return True
        if group["nonfinite"] == "skip":
            return False
        for index, param in enumerate(group["params"]):
            grad = param.grad
            if grad is not None and not bool(torch.isfinite(grad).all()):
                kind = "NaN" if bool(torch.isnan(grad).any()) else "inf"
                raise NonFiniteGradientError(
                    f"{type(self).__name__}: the gradient of param {index} of group {group_index} "
                    f"(shape {tuple(param.shape)}) contains {kind}"
                    f"{self._nonfinite_cause(param)}; this step was not applied and params and "
                    "state were not changed by it. Pass nonfinite='skip' to skip such steps, or "
                    "nonfinite='ignore' to disable the check."
                )
        raise AssertionError("unreachable: a non-finite norm without a non-finite gradient")

    def _nonfinite_cause(self, param: torch.Tensor) -> str:
        """What else is non-finite: the param itself or its state (a likely cause)."""
        if not bool(torch.isfinite(param).all()):
            return (
                " because the param itself is already non-finite (an earlier update or a "
                "loaded state made it so, not this gradient)"
            )
        bad = [
            key
            for key, value in self.state.get(param, {}).items()
            if isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ]
        if bad:
            return f" and the optimizer state {bad} of this param is non-finite too"
        return ""

    @staticmethod
    def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype(
            [cast(list[torch.Tensor | None], tensors)]
        )
        return [cast(list[torch.Tensor], lists[0]) for lists, _ in grouped.values()]

    @staticmethod
    def _all_finite(tensors: list[torch.Tensor]) -> bool:
        """Whether every element is finite, with one cheap pass in the common case.

        The L2 norm of a tensor is finite when all its elements are (NaN and ±inf propagate), and
        ``torch._foreach_norm(·, 2)`` is a fast vectorised kernel (the ∞-norm is ~100× slower on
        CPU). A non-finite norm can also come from overflow of finite values, so only then the
        exact element-wise test decides.
        """
        norms = torch._foreach_norm(tensors, 2.0)
        if bool(torch.stack(norms).isfinite().all()):
            return True
        return all(bool(torch.isfinite(tensor).all()) for tensor in tensors)

    @staticmethod
    def _impl(group: Mapping[str, Any]) -> str:
        if group.get("fused"):
            return "fused"
        if group.get("foreach") is False:
            return "forloop"
        return "foreach"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it is
                called with gradients enabled.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        batches = []
        for group_index, group in enumerate(self.param_groups):
            self._validate_group(group, where=f"param group {group_index}")  # may have changed
            params, grads = self._collect(group, group_index)
            if params:
                batches.append((group_index, group, params, grads))
        # All checks happen before any param or state is touched.
        runnable = []
        for group_index, group, params, grads in batches:
            if self._finite(group_index, group, grads):
                runnable.append((group, params, grads))
            else:
                self.skipped_steps += 1
        for group, params, grads in runnable:
            states = [self._init_state(param, group) for param in params]
            counters = [state["step"] for state in states]
            torch._foreach_add_(counters, 1)
            steps = [int(step) for step in torch.stack(counters).tolist()]
            names = self._state_names_for(group)
            state_lists = {name: [state[name] for state in states] for name in names}
            self._update(group, params, grads, state_lists, steps, self._impl(group))
        return loss

    def _kernel_for(self, group: Mapping[str, Any]) -> Kernel:
        """The kernel that updates ``group`` (override to route groups to different kernels)."""
        return self._kernel

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        """The kernel's scalars for ``group`` (``steps``: each param's count after this step)."""
        raise NotImplementedError

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, list[torch.Tensor]],
        steps: list[int],
        impl: str,
    ) -> None:
        """Apply the method's update to ``params`` (``steps`` are already incremented)."""
        upcast = group.get("upcast", True) and any(p.dtype in LOW_PRECISION for p in params)
        work = [p.float() if upcast and p.dtype in LOW_PRECISION else p for p in params]
        if upcast:  # the math in float32 on copies; the result is rounded once into the param
            grads = [g.float() if g.dtype in LOW_PRECISION else g for g in grads]
        lists = [work, grads, *(state[name] for name in self._state_names_for(group))]
        args = self._kernel_args(group, steps, impl)
        self._kernel_for(group)(lists, args, impl, maximize=group["maximize"])
        for param, computed in zip(params, work, strict=True):
            if computed is not param:
                param.copy_(computed)
