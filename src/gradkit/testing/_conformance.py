"""The optimizer conformance suite (the ``torch.optim`` conventions, as executable checks).

Each check is a plain function ``check_xxx(spec) -> None`` that raises ``AssertionError`` with a
message saying what broke; they live by topic in :mod:`gradkit.testing._optimizer_numerics` and
:mod:`gradkit.testing._optimizer_api`. :func:`conformance_checks` lists them for one registry
entry (so a test module can parametrize over them) and :func:`check_optimizer` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradkit._specs import ErrorInput, OptimizerSpec
from gradkit.testing._harness import configs_of, run_named_checks
from gradkit.testing._optimizer_api import (
    check_add_param_group,
    check_closure,
    check_deepcopy_and_repr,
    check_error_inputs,
    check_no_grad_step_is_noop,
    check_nonfinite_policy,
    check_param_groups,
)
from gradkit.testing._optimizer_numerics import (
    check_checkpoint_resumes_exactly,
    check_configs_have_no_impl_flags,
    check_goes_right_direction,
    check_impl_matches_forloop,
    check_low_precision_params,
    check_tensor_lr,
)
from gradkit.testing._optimizer_torch import (
    check_foreach_under_no_grad,
    check_hooks,
    check_load_onto_another_dtype,
    check_lr_only_in_param_groups,
)

__all__ = [
    "check_add_param_group",
    "check_checkpoint_resumes_exactly",
    "check_closure",
    "check_configs_have_no_impl_flags",
    "check_deepcopy_and_repr",
    "check_error_inputs",
    "check_foreach_under_no_grad",
    "check_goes_right_direction",
    "check_hooks",
    "check_impl_matches_forloop",
    "check_load_onto_another_dtype",
    "check_low_precision_params",
    "check_lr_only_in_param_groups",
    "check_no_grad_step_is_noop",
    "check_nonfinite_policy",
    "check_optimizer",
    "check_param_groups",
    "check_tensor_lr",
    "conformance_checks",
]


def conformance_checks(
    spec: OptimizerSpec, *, fused: bool = True
) -> list[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for ``spec``; each ``check()`` raises ``AssertionError`` on failure.

    Args:
        spec: the registry entry (or one built by :func:`check_optimizer`).
        fused: include the compiled-path check (slow: it runs ``torch.compile``). It uses the
            first configuration only, to keep compile time down.
    """
    checks: list[tuple[str, Callable[[], None]]] = [
        ("configs_have_no_impl_flags", lambda: check_configs_have_no_impl_flags(spec)),
        ("goes_right_direction", lambda: check_goes_right_direction(spec)),
        ("foreach_matches_forloop", lambda: check_impl_matches_forloop(spec, "foreach")),
        ("checkpoint_resumes_exactly", lambda: check_checkpoint_resumes_exactly(spec)),
        ("tensor_lr", lambda: check_tensor_lr(spec)),
        ("low_precision_params", lambda: check_low_precision_params(spec)),
        ("param_groups", lambda: check_param_groups(spec)),
        ("add_param_group", lambda: check_add_param_group(spec)),
        ("no_grad_step_is_noop", lambda: check_no_grad_step_is_noop(spec)),
        ("deepcopy_and_repr", lambda: check_deepcopy_and_repr(spec)),
        ("error_inputs", lambda: check_error_inputs(spec)),
        ("nonfinite_policy", lambda: check_nonfinite_policy(spec)),
        ("closure", lambda: check_closure(spec)),
        ("hooks", lambda: check_hooks(spec)),
        ("load_onto_another_dtype", lambda: check_load_onto_another_dtype(spec)),
        ("lr_only_in_param_groups", lambda: check_lr_only_in_param_groups(spec)),
        ("foreach_under_no_grad", lambda: check_foreach_under_no_grad(spec)),
    ]
    if fused and "fused" in spec.supported_impls:
        checks.append(
            (
                "fused_matches_forloop",
                lambda: check_impl_matches_forloop(spec, "fused", configs_of(spec)[:1]),
            )
        )
    return checks


def check_optimizer(
    optimizer: type[torch.optim.Optimizer] | OptimizerSpec,
    *,
    configs: Sequence[dict[str, Any]] = ({},),
    error_inputs: Sequence[ErrorInput] = (),
    lr: float = 1e-2,
    hyperparams: Sequence[str] = ("lr",),
    supported_impls: tuple[str, ...] = (),
    supports_complex: bool = False,
    supports_sparse: bool = False,
    requires_closure: bool = False,
    has_weight_decay: bool = True,
    validates_group_overrides: bool = True,
    hessian_refresh: Callable[..., None] | None = None,
    param_groups_fn: Callable[[Any], list[dict[str, Any]]] | None = None,
    fused: bool = True,
) -> None:
    """Run the gradkit conformance suite on an optimizer class; raise ``AssertionError`` on the
    first failure, naming the check.

    The suite checks the ``torch.optim`` conventions: the loss moves the right way (also under
    ``maximize`` and LR schedulers), ``foreach``/``fused`` match the for-loop, checkpoints
    resume bit-for-bit through ``torch.load(weights_only=True)``, tensor ``lr``, param groups,
    no-op steps, ``deepcopy``/``repr``, error messages, the non-finite policy and closures.

    Args:
        optimizer: the class to certify, or a full :class:`~gradkit.registry.OptimizerSpec`
            (then the other arguments are ignored).
        configs: keyword-argument sets to test (never ``foreach``/``fused``).
        error_inputs: constructor calls that must raise.
        lr: a learning rate that makes 20 steps move the loss.
        hyperparams: names that ``repr`` must show.
        supported_impls: which of ``"foreach"``, ``"fused"`` the class accepts.
        supports_complex / supports_sparse / requires_closure / has_weight_decay: capabilities.
        validates_group_overrides: expect per-group hyper-parameters to be validated (pass
            ``False`` for ``torch.optim`` classes, which validate only the constructor).
        hessian_refresh: ``hook(optimizer, loss_fn)`` for second-order methods, called before
            every step; ``loss_fn()`` returns the step's scalar loss with its autograd graph
            (no backward run), so the hook can compute gradients or Hessian-vector products.
        param_groups_fn: routes the suite's params into the groups the optimizer needs (e.g.
            :func:`gradkit.optim.matrix_param_groups` for matrix optimizers).
        fused: run the compiled-path check.

    Example:
        >>> import torch
        >>> from gradkit.testing import check_optimizer
        >>> check_optimizer(torch.optim.SGD, lr=0.1, configs=[{"momentum": 0.9}],
        ...                 supported_impls=("foreach",), supports_complex=True,
        ...                 supports_sparse=True, validates_group_overrides=False)
    """
    if isinstance(optimizer, OptimizerSpec):
        spec = optimizer
    else:
        spec = OptimizerSpec(
            name=optimizer.__name__,
            cls=optimizer,
            paper="",
            summary="",
            configs=list(configs),
            error_inputs=list(error_inputs),
            hyperparams=tuple(hyperparams),
            supported_impls=supported_impls,
            supports_complex=supports_complex,
            supports_sparse=supports_sparse,
            requires_closure=requires_closure,
            hessian_refresh=hessian_refresh,
            param_groups_fn=param_groups_fn,
            lr=lr,
            has_weight_decay=has_weight_decay,
            validates_group_overrides=validates_group_overrides,
        )
    run_named_checks(conformance_checks(spec, fused=fused))
