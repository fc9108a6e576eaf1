"""Which parameters count as matrices: the routing policy of SWAN, SinkGD and ARO.

:func:`matrix_param_groups` returns the param groups for one of the matrix optimizers:

* **matrix group** (``use_matrix_update=True``): every parameter with ``ndim >= 2`` that is not
  excluded below: ``nn.Linear`` weights, conv kernels (updated as ``out × in·kh·kw`` matrices,
  the update reshaped back to the kernel's shape), and any other ≥2-D parameter;
* **AdamW group** (``use_matrix_update=False``), updated by AdamW inside the same optimizer:

  - every parameter with ``ndim < 2`` (biases, norm gains, scalars, zero-size vectors);
  - ``nn.Embedding``/``nn.EmbeddingBag`` weights (also when tied to a ``Linear``: a tensor shared
    by an embedding and a head goes to AdamW once);
  - the **output head**: with ``head="auto"`` the *last* trainable ``nn.Linear`` in
    ``model.modules()`` order (registration order: the classifier of an MLP/CNN, ``lm_head`` of a GPT registered
    after its blocks); ``head=None`` keeps it in the matrix group; a module, a parameter, or a
    module/parameter name (``"lm_head"``) picks it explicitly;
  - anything in ``exclude`` (modules, parameters or their qualified names).

This is the policy all sources agree on (the SWAN, SinkGD and ARO papers' practice, Keller
Jordan's ``MuonWithAuxAdam``, microsoft/dion): hidden matrices get the matrix rule, the rest
AdamW. Frozen parameters (``requires_grad=False``) are left out. A 2-D parameter that is not an
``nn.Embedding`` weight — e.g. a positional embedding stored as a bare ``nn.Parameter`` — counts
as a matrix; route it to AdamW with ``exclude=["pos_emb"]``. The group flag is the analogue of
``use_muon`` in Keller Jordan's ``MuonWithAuxAdam`` and pytorch_optimizer's ``Muon``
(``torch.optim.Muon`` itself accepts 2-D params only and needs a separate AdamW).

Given an iterable of tensors (or of param-group dicts) instead of a module, the routing is by
``ndim`` only (there is no module to recognise embeddings or a head); each input group is
split in two, keeping its own keys. The conformance suite uses this form.

Example:
    >>> import torch
    >>> from gradkit.optim import SinkGD, matrix_param_groups
    >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8),
    ...                             torch.nn.LayerNorm(8), torch.nn.Linear(8, 10))
    >>> groups = matrix_param_groups(model, adamw_options={"lr": 3e-4})
    >>> [(g["use_matrix_update"], len(g["params"])) for g in groups]
    [(True, 1), (False, 6)]
    >>> optimizer = SinkGD(groups, lr=0.02)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["matrix_param_groups"]

_Selector = nn.Module | torch.Tensor | str


def matrix_param_groups(
    model: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    head: _Selector | None = "auto",
    exclude: Iterable[_Selector] = (),
    matrix_options: Mapping[str, Any] | None = None,
    adamw_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Split parameters into a matrix group and an AdamW group (see the module docstring).

    The policy of the matrix optimizers' papers (SWAN arXiv:2412.13148, SinkGD arXiv:2502.06742,
    ARO arXiv:2602.09006) and of the reference implementations Keller Jordan's
    ``MuonWithAuxAdam`` (flag ``use_muon``) and microsoft/dion: hidden ≥2-D weights get the
    matrix rule; embeddings, the output head and params with fewer than 2 dims get AdamW. Deviation: none in
    routing; the flag is named ``use_matrix_update``.

    Args:
        model: a module, or an iterable of parameters or of param-group dicts.
        head: the output head to route to AdamW: ``"auto"`` (the last ``nn.Linear``), ``None``
            (no head), or a module, parameter or name. Only for a module.
        exclude: further modules, parameters or qualified names to route to AdamW. Only for a
            module.
        matrix_options / adamw_options: extra keys for the matrix group / the AdamW group (e.g.
            ``{"lr": 3e-4, "weight_decay": 0.0}``); they override the optimizer's defaults.

    Returns:
        ``[matrix_group, adamw_group]`` (empty groups are left out) for a module; for an iterable
        of groups, each group split in the same way.

    Raises:
        TypeError: if ``model`` is a single tensor or a selector has an unsupported type.
        ValueError: if a named ``head``/``exclude`` entry matches nothing in ``model``.

    Example:
        >>> import torch
        >>> from gradkit.optim import matrix_param_groups
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        >>> [len(g["params"]) for g in matrix_param_groups(model)]  # hidden weight | the rest
        [1, 3]
    """
    matrix_extra = dict(matrix_options or {})
    adamw_extra = dict(adamw_options or {})
    if isinstance(model, torch.Tensor):
        raise TypeError(
            "matrix_param_groups expects a module or an iterable of Tensors/dicts, got a Tensor"
        )
    if isinstance(model, nn.Module):
        return _from_module(model, head, exclude, matrix_extra, adamw_extra)
    if head != "auto" or tuple(exclude):
        raise ValueError("head= and exclude= need a module, not an iterable of params")
    items = list(model)
    groups = items if items and isinstance(items[0], dict) else [{"params": items}]
    result: list[dict[str, Any]] = []
    for group in groups:
        if not isinstance(group, dict):
            raise TypeError("mixed params and param-group dicts in matrix_param_groups")
        params = group["params"]
        tensors = [params] if isinstance(params, torch.Tensor) else list(params)
        keys = {k: v for k, v in group.items() if k != "params"}
        matrices = [t for t in tensors if t.ndim >= 2]
        others = [t for t in tensors if t.ndim < 2]
        if matrices:
            result.append({"params": matrices, **keys, **matrix_extra, "use_matrix_update": True})
        if others:
            result.append({"params": others, **keys, **adamw_extra, "use_matrix_update": False})
    return result


def _from_module(
    model: nn.Module,
    head: _Selector | None,
    exclude: Iterable[_Selector],
    matrix_extra: dict[str, Any],
    adamw_extra: dict[str, Any],
) -> list[dict[str, Any]]:
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    to_adamw: set[int] = set()

    def mark(selector: _Selector, what: str) -> None:
        if isinstance(selector, str):
            if selector in modules:
                selector = modules[selector]
            elif selector in params:
                selector = params[selector]
            else:
                raise ValueError(f"{what} {selector!r} is neither a module nor a parameter name")
        if isinstance(selector, nn.Module):
            to_adamw.update(id(p) for p in selector.parameters())
        elif isinstance(selector, torch.Tensor):
            to_adamw.add(id(selector))
        else:
            raise TypeError(
                f"{what} must be a module, a parameter or a name, got {type(selector).__name__}"
            )

    for module in modules.values():
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            to_adamw.add(id(module.weight))
    if head == "auto":
        linears = [
            m for m in modules.values() if isinstance(m, nn.Linear) and m.weight.requires_grad
        ]
        if linears:
            mark(linears[-1], "head")
    elif head is not None:
        mark(head, "head")
    for selector in exclude:
        mark(selector, "exclude")

    matrices: list[torch.Tensor] = []
    others: list[torch.Tensor] = []
    for param in model.parameters():  # deduplicated: a tied weight appears once
        if not param.requires_grad:
            continue
        if param.ndim >= 2 and id(param) not in to_adamw:
            matrices.append(param)
        else:
            others.append(param)
    groups = []
    if matrices:
        groups.append({"params": matrices, **matrix_extra, "use_matrix_update": True})
    if others:
        groups.append({"params": others, **adamw_extra, "use_matrix_update": False})
    return groups
