"""Sophia's curvature refresh from a model output, and the registry entries of SophiaG/H."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch

from gradkit import _validation as check
from gradkit._specs import ErrorInput
from gradkit.optim._entries import optimizer_entry
from gradkit.optim._sophia import SophiaG, SophiaH, _Sophia
from gradkit.transforms._hessian import gnb_gradient, hutchinson_diagonal

__all__ = ["registry_specs", "sophia_refresh"]


def _clip_total_norm(grads: list[torch.Tensor | None], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` semantics on a list (in place, ``None`` skipped)."""
    present = [g for g in grads if g is not None]
    if not present:
        return
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().double()) for g in present])
    )
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in present:
        g.mul_(coefficient.to(g.dtype))


#: The GNB gradient's clipping norm in the official recipe (``train_sophiag.py``).
OFFICIAL_MAX_GRAD_NORM = 1.0


def sophia_refresh(
    optimizer: SophiaG | SophiaH,
    *,
    logits: torch.Tensor | None = None,
    loss: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_grad_norm: float | str | None = "official",
    n_samples: int = 1,
    distribution: str = "gaussian",
) -> torch.Tensor:
    r"""Refresh a Sophia optimizer's curvature from a model output; ``p.grad`` is not touched.

    Pass exactly one of:

    * ``logits`` (shape ``(..., V)`` with their graph, e.g. ``model(x)`` of shape ``(B, T, V)``):
      the **Gauss–Newton–Bartlett** estimator. Labels are sampled from ``softmax(logits)``, the
      mean cross-entropy over all positions is differentiated, and for :class:`SophiaG`
      ``update_hessian(ĝ)`` stores ĝ⊙ĝ (official units; ``bs`` should equal the number of
      positions, a ``UserWarning`` says when a group's differs), for :class:`SophiaH` the
      paper-units diagonal ``n·ĝ⊙ĝ``.
    * ``loss`` (a scalar with its graph, the real training loss on a batch): the **Hutchinson**
      estimator ``u⊙Hu`` (SophiaH only: SophiaG's units are those of GNB).

    Call it every ``k`` steps (the official recipe: ``k = 10``, after that iteration's step, on
    a fresh batch; ĝ is clipped to norm 1.0 by default, as in that recipe).

    Paper: Liu et al., *Sophia*, ICLR 2024, arXiv:2305.14342 (Algorithms 1–3). Reference
    implementation: the GNB refresh of the official ``train_sophiag.py`` (Liuhong99/Sophia
    @a7e1572), which back-propagates the sampled-label loss into ``p.grad`` and calls
    ``update_hessian()``. Deviation: the same estimate is taken with ``torch.autograd.grad``, so
    ``p.grad`` keeps the training gradient.

    Args:
        optimizer: a :class:`SophiaG` or :class:`SophiaH`.
        logits / loss: see above.
        generator: random generator for label sampling / Hutchinson probes.
        max_grad_norm: clip ĝ to this total norm before squaring (GNB only).
            ``"official"`` (default): 1.0 for GNB, as the official ``train_sophiag.py`` clips
            (no clipping for Hutchinson, which the recipe does not clip); a float: that norm
            (GNB only); ``None``: no clipping (gradkit's default before 0.2).
        n_samples / distribution: Hutchinson probes (see
            :func:`~gradkit.transforms.hutchinson_diagonal`).

    Returns:
        The detached loss that was differentiated (the sampled-label cross-entropy for GNB).

    Example:
        >>> import torch
        >>> from gradkit.optim import SophiaG, sophia_refresh
        >>> model = torch.nn.Linear(4, 3)
        >>> opt = SophiaG(model.parameters(), bs=8)
        >>> x = torch.randn(2, 4, 4)                 # (B=2, T=4, features)
        >>> _ = sophia_refresh(opt, logits=model(x))  # 8 label positions = bs
        >>> sorted(opt.state[model.weight])
        ['exp_avg', 'hessian', 'step']
    """
    if not isinstance(optimizer, _Sophia):
        raise TypeError(
            f"sophia_refresh expects a SophiaG or SophiaH optimizer, got {type(optimizer).__name__}"
        )
    if (logits is None) == (loss is None):
        raise ValueError("sophia_refresh: pass exactly one of logits= (GNB) or loss= (Hutchinson)")
    official = isinstance(max_grad_norm, str)
    if official and max_grad_norm != "official":
        raise ValueError(
            f"Invalid max_grad_norm: {max_grad_norm!r} (a positive number, None or 'official')"
        )
    if max_grad_norm is not None and not official:
        check.positive("max_grad_norm", max_grad_norm)
    params = optimizer._all_params()
    name = type(optimizer).__name__
    if logits is not None:
        grads, positions, sampled_loss = gnb_gradient(logits, params, generator=generator)
        if max_grad_norm is not None:
            _clip_total_norm(grads, OFFICIAL_MAX_GRAD_NORM if official else float(max_grad_norm))
        if isinstance(optimizer, SophiaG):
            mismatched = sorted(
                {float(g["bs"]) for g in optimizer.param_groups if float(g["bs"]) != positions}
            )
            if mismatched:
                warnings.warn(
                    f"sophia_refresh: the GNB loss averages {positions} label positions but the "
                    f"optimizer's bs is {mismatched}; bs should equal the number of positions "
                    "(rho * bs * h is then the paper's gamma * h_GNB)",
                    UserWarning,
                    stacklevel=2,
                )
            optimizer.update_hessian(grads)
        else:
            optimizer.update_hessian([None if g is None else g * g * positions for g in grads])
        return sampled_loss
    loss = cast(torch.Tensor, loss)  # exactly one of logits / loss is set (checked above)
    if isinstance(optimizer, SophiaG):
        raise ValueError(
            f"sophia_refresh: {name} uses the Gauss–Newton–Bartlett estimator; pass logits= "
            "(use SophiaH for the Hutchinson estimator on a loss)"
        )
    if max_grad_norm is not None and not official:
        raise ValueError("sophia_refresh: max_grad_norm applies to the GNB estimator only")
    estimates = hutchinson_diagonal(
        loss, params, n_samples=n_samples, distribution=distribution, generator=generator
    )
    optimizer.update_hessian(estimates)
    return loss.detach()


def _probe_seed(optimizer: torch.optim.Optimizer, shape: torch.Size) -> int:
    steps = [
        int(s["step"]) for s in optimizer.state.values() if isinstance(s, dict) and "step" in s
    ]
    return (
        7919 * (max(steps) if steps else 0)
        + 104729 * len(shape)
        + sum((i + 1) * d for i, d in enumerate(shape))
    )


def _conformance_refresh_g(
    optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]
) -> None:
    """Conformance hook for SophiaG: the toy problem is a regression, so ĝ is the data-loss
    gradient (an empirical-Fisher stand-in for GNB); it exercises the same curvature path."""
    sophia = cast(SophiaG, optimizer)
    params = sophia._all_params()
    wanted = [p for p in params if p.requires_grad]
    with torch.enable_grad():
        found = torch.autograd.grad(loss_fn(), wanted, allow_unused=True)
    by_id = {id(p): g for p, g in zip(wanted, found, strict=True)}
    sophia.update_hessian([by_id.get(id(p)) for p in params])


def _conformance_refresh_h(
    optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]
) -> None:
    """Conformance hook for SophiaH: a block-wise Hutchinson estimate ``u_i ⊙ (H_ii u_i)`` per
    param tensor (unbiased for the diagonal like the full-vector estimate). Probes are seeded
    from the step count and the param's shape, and the block form does not depend on which
    other params the optimizer holds, so twin optimizers (checkpoint, deepcopy, the per-group
    split) draw identical estimates."""
    sophia = cast(SophiaH, optimizer)
    params = sophia._all_params()
    estimates: list[torch.Tensor | None] = []
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        for param, grad in zip(params, grads, strict=True):
            seed = _probe_seed(sophia, param.shape)
            probe = torch.randn(
                param.shape, generator=torch.Generator().manual_seed(seed), dtype=param.dtype
            )
            if not grad.requires_grad:  # constant gradient: zero Hessian block
                estimates.append(torch.zeros_like(param))
                continue
            (block,) = torch.autograd.grad(
                grad, param, grad_outputs=probe, retain_graph=True, allow_unused=True
            )
            estimates.append(torch.zeros_like(param) if block is None else probe * block)
    sophia.update_hessian(estimates)


def registry_specs() -> list[Any]:
    """The registry entries of :class:`SophiaG` and :class:`SophiaH`."""

    common_errors = [
        ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
        ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
        ErrorInput({"lr": "0.1"}, TypeError, r"Invalid lr: '0\.1'"),
        ErrorInput({"betas": (1.0, 0.99)}, ValueError, r"Invalid betas\[0\]: 1\.0"),
        ErrorInput({"betas": (0.9, -0.1)}, ValueError, r"Invalid betas\[1\]: -0\.1"),
        ErrorInput({"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1"),
    ]
    return [
        optimizer_entry(
            SophiaG,
            "clipped momentum / (rho * bs * EMA of GNB curvature); official SophiaG",
            [
                {},
                {"bs": 8, "rho": 0.05, "weight_decay": 0.0},
                {"betas": (0.9, 0.95), "weight_decay": 0.2, "bs": 64, "rho": 0.02},
            ],
            error_inputs=[
                *common_errors,
                ErrorInput({"rho": -0.04}, ValueError, r"Invalid rho: -0\.04 \(must be >= 0\)"),
                ErrorInput({"bs": 0}, ValueError, r"Invalid bs: 0 \(must be > 0\)"),
                ErrorInput({"bs": "5120"}, TypeError, r"Invalid bs: '5120'"),
            ],
            hyperparams=("lr", "betas", "rho", "weight_decay", "bs"),
            hessian_refresh=_conformance_refresh_g,
            lr=0.01,
        ),
        optimizer_entry(
            SophiaH,
            "clip(momentum / max(gamma * h, eps), 1) with Hutchinson curvature",
            [
                {},
                {"gamma": 0.05, "weight_decay": 0.1, "betas": (0.9, 0.95)},
            ],
            error_inputs=[
                *common_errors,
                ErrorInput({"gamma": -1.0}, ValueError, r"Invalid gamma: -1\.0 \(must be >= 0\)"),
                ErrorInput({"eps": 0.0}, ValueError, r"Invalid eps: 0\.0 \(must be > 0\)"),
            ],
            hyperparams=("lr", "betas", "gamma", "eps", "weight_decay"),
            hessian_refresh=_conformance_refresh_h,
            lr=0.01,
        ),
    ]
