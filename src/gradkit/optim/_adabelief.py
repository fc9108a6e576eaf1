"""AdaBelief: Adam whose second moment tracks the "belief" :math:`(g - m)^2` instead of :math:`g^2`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gradkit import _validation as check
from gradkit.optim._adamw import adam_hyper
from gradkit.optim._base import GradkitOptimizer, ParamsT, hyperparams
from gradkit.optim._compile import Kernel, KernelArgs, Scalars

__all__ = ["AdaBelief"]

#: Param dtypes updated in float32 with float32 state (as adabelief-pytorch 0.2.1 does).
_UPCAST_DTYPES = (torch.float16,)


class _StepTerms(NamedTuple):
    """Per-param scalars of one step; they depend on the step count only, never on data."""

    step_size: float  # lr/b1, lr*r_t/b1 or 0 (no update); the update is -step_size*m/denom
    sqrt_bc2: float  # divides sqrt(s): sqrt(b2) without rectification, 1 with it
    adaptive: float  # 1.0: divide by the adaptive denominator; 0.0: SGD-momentum step


def _step_terms(
    lr: float, beta1: float, beta2: float, step: int, rectify: bool, degenerated_to_sgd: bool
) -> _StepTerms:
    """The reference's per-step scalars, computed with its exact expressions."""
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    if not rectify:
        return _StepTerms(lr / bias_correction1, math.sqrt(bias_correction2), 1.0)
    beta2_t = beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
    if rho_t >= 5:
        step_size = math.sqrt(
            (1 - beta2_t)
            * (rho_t - 4)
            / (rho_inf - 4)
            * (rho_t - 2)
            / rho_t
            * rho_inf
            / (rho_inf - 2)
        ) / (1 - beta1**step)
        return _StepTerms(step_size * lr, 1.0, 1.0)
    if degenerated_to_sgd:
        return _StepTerms(1.0 / (1 - beta1**step) * lr, 1.0, 0.0)
    return _StepTerms(0.0, 1.0, 0.0)


def _decay_mode(weight_decay: float, weight_decouple: bool) -> str:
    if weight_decay == 0:
        return "none"
    return "decoupled" if weight_decouple else "coupled"


def _adabelief_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_var: Tensor,
    s_max: Tensor | None = None,
    *,
    s: Scalars,
) -> None:
    """One tensor's AdaBelief update, in place.

    The rectification branch is selected by the per-param scalars (see :func:`_step_terms`),
    so the kernel has no data-dependent control flow. Scalars may be Python floats (the
    for-loop reference) or 0-d tensors (the compiled path); only plain arithmetic is used so
    that both behave the same. ``step_size`` is the per-param step of :func:`_step_terms` for
    ``lr = 1``; ``decay`` (``"none"``, ``"coupled"``, ``"decoupled"``), ``fixed_decay``,
    ``use_max`` (divide by ``s_max``) and whether ``s_max`` is given (AMSGrad) are static.
    """
    lr, weight_decay, beta2, eps, adaptive = (
        s[k] for k in ("lr", "weight_decay", "beta2", "eps", "adaptive")
    )
    upcast = param.dtype in _UPCAST_DTYPES
    p = param.float() if upcast else param
    if upcast:
        grad = grad.float()
    if s["decay"] == "coupled":
        grad = grad + p * weight_decay
    elif s["decay"] == "decoupled":
        p = p * (1 - weight_decay if s["fixed_decay"] else 1 - lr * weight_decay)
    exp_avg.mul_(s["beta1"]).add_(grad * (1 - s["beta1"]))
    residual = grad - exp_avg
    exp_avg_var.mul_(beta2).add_(residual * residual * (1 - beta2))
    exp_avg_var.add_(eps)
    second = exp_avg_var
    if s_max is not None:  # AMSGrad
        s_max.copy_(torch.maximum(s_max, exp_avg_var))
        if s["use_max"]:
            second = s_max
    denom = second.sqrt() * s["inv_sqrt_bc2"] + eps
    denom = denom * adaptive + (1 - adaptive)  # exactly denom or exactly 1
    param.copy_(p + exp_avg * -(lr * s["step_size"]) / denom)


def _adabelief_foreach(lists: list[list[Tensor]], s: Scalars) -> None:
    lr, beta1, beta2, eps = s["lr"], s["beta1"], s["beta2"], s["eps"]
    weight_decay, decay = s["weight_decay"], s["decay"]
    p: list[Tensor] = lists[0]
    g: list[Tensor] | tuple[Tensor, ...] = lists[1]
    m, v = lists[2], lists[3]
    upcast = p[0].dtype in _UPCAST_DTYPES
    # float16: work on float32 copies (the state is float32), round back at the end.
    work = [x.float() for x in p] if upcast else p
    # Fresh foreach outputs cost page faults on CPU, so at most one scratch list is allocated
    # per step (a private copy of the gradient when one is needed anyway) and reused for the
    # residual, the denominator and the SGD step.
    private = upcast
    if upcast:
        g = [x.to(torch.float32, copy=True) for x in g]
    if decay == "coupled":
        if private:
            torch._foreach_add_(g, work, alpha=weight_decay)
        else:
            g = torch._foreach_add(g, work, alpha=weight_decay)
            private = True
    elif decay == "decoupled":
        torch._foreach_mul_(work, 1 - weight_decay if s["fixed_decay"] else 1 - lr * weight_decay)
    torch._foreach_mul_(m, beta1)
    torch._foreach_add_(m, g, alpha=1 - beta1)
    if private:  # g is ours and no longer needed: turn it into the residual in place
        torch._foreach_sub_(g, m)
        scratch = list(g)
    else:
        scratch = list(torch._foreach_sub(g, m))
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, scratch, scratch, value=1 - beta2)
    torch._foreach_add_(v, eps)
    second = v
    if len(lists) == 5:  # AMSGrad
        torch._foreach_maximum_(lists[4], v)
        if s["use_max"]:
            second = lists[4]
    step_sizes, inv_sqrt_bc2s = s["step_size"], s["inv_sqrt_bc2"]
    adaptive = [k for k, flag in enumerate(s["adaptive"]) if flag]
    plain = [k for k, flag in enumerate(s["adaptive"]) if not flag and step_sizes[k] != 0]
    if adaptive:
        denom = [scratch[k] for k in adaptive]
        torch._foreach_copy_(denom, [second[k] for k in adaptive])
        torch._foreach_sqrt_(denom)
        torch._foreach_mul_(denom, [inv_sqrt_bc2s[k] for k in adaptive])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(
            [work[k] for k in adaptive],
            [m[k] for k in adaptive],
            denom,
            [-(lr * step_sizes[k]) for k in adaptive],
        )
    if plain:  # rectify=True, rho_t < 5, degenerated_to_sgd: SGD with momentum
        update = [scratch[k] for k in plain]
        torch._foreach_copy_(update, [m[k] for k in plain])
        torch._foreach_mul_(update, [-(lr * step_sizes[k]) for k in plain])
        torch._foreach_add_([work[k] for k in plain], update)
    if upcast:
        torch._foreach_copy_(p, work)


ADABELIEF_KERNEL = Kernel("AdaBelief", _adabelief_kernel, foreach=_adabelief_foreach)


class AdaBelief(GradkitOptimizer):
    r"""AdaBelief (Zhuang et al., NeurIPS 2020), following ``adabelief-pytorch==0.2.1``.

    Paper: Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris, Duncan. *AdaBelief Optimizer:
    Adapting Stepsizes by the Belief in Observed Gradients.* NeurIPS 2020, arXiv:2010.07468.

    Reference implementation: semantics follow the authors' package ``adabelief-pytorch==0.2.1`` (identical to
    ``pypi_packages/adabelief_pytorch0.2.1`` in juntang-zhuang/Adabelief-Optimizer @2855178), against
    which the tests check parity over every combination of its flags. Per element, with state
    :math:`m, s` (and :math:`s_{max}` for AMSGrad) initialised to 0, :math:`t` counted from 1,
    :math:`b_1 = 1-\beta_1^t` and :math:`b_2 = 1-\beta_2^t`, one step is, in this order:

    .. math::

        &\text{weight decay:}\quad
            \theta \leftarrow \theta(1-\eta\lambda) \text{ (decoupled, default)}, \quad
            \theta \leftarrow \theta(1-\lambda) \text{ (fixed\_decay)}, \quad
            g \leftarrow g + \lambda\theta \text{ (weight\_decouple=False)}\\
        &m \leftarrow \beta_1 m + (1-\beta_1) g\\
        &s \leftarrow \beta_2 s + (1-\beta_2)(g - m)^2 \quad\text{(with the updated } m)\\
        &s \leftarrow s + \epsilon \quad\text{(in place: } \epsilon \text{ accumulates in the state)}\\
        &s_{max} \leftarrow \max(s_{max}, s) \quad\text{(amsgrad only)}

    Then, without rectification (``rectify=False``, the setting of the paper's experiments), with
    :math:`\hat s = s_{max}` under AMSGrad and :math:`\hat s = s` otherwise:

    .. math::

        \theta \leftarrow \theta - \frac{\eta}{b_1}\,\frac{m}{\sqrt{\hat s}/\sqrt{b_2} + \epsilon}

    With rectification (``rectify=True``, the package default; RAdam's rule):
    :math:`\rho_\infty = 2/(1-\beta_2) - 1`, :math:`\rho_t = \rho_\infty - 2t\beta_2^t/b_2`, and

    .. math::

        \rho_t \ge 5:&\quad \theta \leftarrow \theta - \frac{\eta\, r_t}{b_1}\,\frac{m}{\sqrt{s} + \epsilon},
            \qquad r_t = \sqrt{\frac{b_2(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}\\
        \rho_t < 5:&\quad \theta \leftarrow \theta - \frac{\eta}{b_1} m
            \quad\text{if degenerated\_to\_sgd, else no update}

    Notes on the reference code, all replicated:

    * ε enters twice: it is added to :math:`s` in place every step (steady-state contribution
      :math:`\approx\epsilon/(1-\beta_2)`) and again to the denominator. AdaBelief's ε therefore plays
      the role of Adam's ε²: the README recommends 1e-8 where SGD beats Adam (CNNs) and 1e-16
      (the default) or 1e-12 for Transformers, GANs and RNNs.
    * The rectified branch divides by :math:`\sqrt{s}`, **not** :math:`\sqrt{s_{max}}`, even with
      ``amsgrad=True`` (:math:`s_{max}` is still maintained); :math:`b_2` sits inside :math:`r_t`.
    * With :math:`\beta_2 = 0.999`, :math:`\rho_t < 5` for :math:`t \le 5`, so with the default
      ``rectify=True`` the first five steps are un-normalised SGD-momentum steps whose size scales
      with the raw gradient (step 1 is exactly :math:`-\eta g`).
    * The AMSGrad order is the 0.2.x one (``s += ε`` then ``s_max = max(s_max, s)``); 0.0.5 and
      0.1.0 took the max first. Coupled L2 decay is applied before the moments (0.1.0 applied it
      after them, so it had no effect; that bug is not reproduced).
    * ``fixed_decay`` only matters with ``weight_decouple=True``.

    Paper vs code: the paper's results were produced with ``rectify=False`` and ``amsgrad=False``
    ("rectification ... never used to produce results in the paper"); the package, and therefore
    gradkit, defaults to ``rectify=True``. Pass ``rectify=False`` for the paper's algorithm.

    Deviations from the reference (documented and tested):

    * The reference adds the coupled L2 term to ``p.grad`` in place; gradkit never modifies
      ``p.grad``.
    * The reference caches :math:`(\rho_t, r_t)` in ``group['buffer'][step % 10]``, keyed on the
      step number only, and that buffer is shared by every group that had the default ``betas`` at
      construction and by every group added later with ``add_param_group``. Two groups sharing it
      with different ``betas`` (e.g. an added group with its own ``betas``, or one group's
      ``betas`` changed after construction) can get each other's :math:`r_t`. gradkit computes
      :math:`\rho_t, r_t` for each param from its own step count and its group's current betas,
      with no cache. Elsewhere the two agree, including params of one group with different step
      counts (a layer frozen for a while) and betas changed in place for all groups.
    * Like 0.2.1, a ``float16`` param is updated in ``float32`` and rounded back to ``float16`` once
      per step, and its state is ``float32`` (an AdaBelief state in ``float16`` underflows: ε=1e-16
      is 0 there). gradkit keeps that ``float32`` state across ``state_dict`` round trips, where
      ``torch.optim`` would cast it to the param's dtype. ``bfloat16`` params are computed in
      ``bfloat16``, as in the reference.
    * The rectification flags are per param group (the reference stores ``weight_decouple``,
      ``fixed_decay``, ``rectify`` and ``degenerated_to_sgd`` on the optimizer); a negative
      ``weight_decay`` is rejected (the reference does not check it); ``print_change_log`` is
      accepted for drop-in compatibility and ignored: gradkit never prints.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate η (default 1e-3). May be a 0-d tensor.
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε, added to the second moment in place every step and to the denominator
            (default 1e-16; the README recommends 1e-8 where SGD generalises better than Adam).
        weight_decay: decay coefficient λ (default 0).
        amsgrad: keep the running maximum of the second moment and divide by it (default
            False). The rectified branch still divides by the current second moment.
        weight_decouple: decoupled decay θ ← θ(1 − ηλ) as in AdamW (default True); False adds
            λθ to the gradient (coupled L2) before the moments.
        fixed_decay: with ``weight_decouple``, decay by θ ← θ(1 − λ), independent of η
            (default False).
        rectify: RAdam-style rectification (default True, as in the package; the paper's
            experiments used False).
        degenerated_to_sgd: with ``rectify``, take an SGD-momentum step while ρ_t < 5 (the
            first 5 steps for β2 = 0.999) instead of no step (default True).
        print_change_log: accepted for compatibility with the reference and ignored; gradkit
            never prints.
        maximize, foreach, fused, nonfinite: as for every :class:`GradkitOptimizer`.

    State per param: ``step``, ``exp_avg`` (m), ``exp_avg_var`` (s, including the accumulated
    ε) and, with ``amsgrad``, ``max_exp_avg_var``; ``float32`` for ``float16`` params.

    Example:
        >>> import torch
        >>> from gradkit.optim import AdaBelief
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = AdaBelief([w], lr=0.1)  # rectify=True: step 1 is exactly -lr * g
        >>> w.grad = torch.tensor([0.5, -0.5])
        >>> opt.step()
        >>> w.detach()
        tensor([ 0.9500, -1.9500])
        >>> v = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = AdaBelief([v], lr=0.1, rectify=False)  # step 1 is about -(lr / beta1) * sign(g)
        >>> v.grad = torch.tensor([0.5, -0.5])
        >>> opt.step()
        >>> v.detach()
        tensor([ 0.8889, -1.8889])
    """

    _state_names = ("exp_avg", "exp_avg_var")
    _nonnegative_state = frozenset({"exp_avg_var", "max_exp_avg_var"})
    _kernel = ADABELIEF_KERNEL
    paper = "Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, NeurIPS 2020 (arXiv:2010.07468)"

    def __init__(
        self, params: ParamsT, lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16, weight_decay: float = 0.0,
        amsgrad: bool = False, weight_decouple: bool = True, fixed_decay: bool = False,
        rectify: bool = True, degenerated_to_sgd: bool = True, print_change_log: bool = True,
        *, maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        nonfinite: str = "raise", upcast: bool = True,
    ) -> None:  # fmt: skip
        check.boolean("print_change_log", print_change_log)
        super().__init__(params, hyperparams(locals(), exclude=["print_change_log"]))

    def _state_names_for(self, group: Any) -> tuple[str, ...]:
        if group["amsgrad"]:
            return (*self._state_names, "max_exp_avg_var")
        return self._state_names

    def _init_state(self, param: torch.Tensor, group: Any) -> dict[str, Any]:
        if param.dtype in _UPCAST_DTYPES:
            state = self.state[param]
            for name in self._state_names_for(group):
                if name not in state:
                    state[name] = torch.zeros_like(
                        param, dtype=torch.float32, memory_format=torch.preserve_format
                    )
        return super()._init_state(param, group)

    def _state_dtype(self, param: torch.Tensor, group: Any, name: str) -> torch.dtype:
        """The ``float32`` state of ``float16`` params stays ``float32`` through a checkpoint
        (``torch.optim`` would cast it to the param's dtype)."""
        if param.dtype in _UPCAST_DTYPES:
            return torch.float32
        return super()._state_dtype(param, group, name)

    def _kernel_args(self, group: Mapping[str, Any], steps: list[int], impl: str) -> KernelArgs:
        hyper = adam_hyper(group)
        rectify, sgd = group["rectify"], group["degenerated_to_sgd"]
        terms = [
            _step_terms(1.0, hyper["beta1"], hyper["beta2"], step, rectify, sgd) for step in steps
        ]
        return KernelArgs(
            hyper=hyper,
            per_tensor={
                "step_size": [term.step_size for term in terms],
                "inv_sqrt_bc2": [1.0 / term.sqrt_bc2 for term in terms],
                "adaptive": [term.adaptive for term in terms],
            },
            static={
                "decay": _decay_mode(group["weight_decay"], group["weight_decouple"]),
                "fixed_decay": group["fixed_decay"],
                "use_max": group["amsgrad"] and not rectify,
            },
        )


def registry_spec() -> Any:
    """The registry entry for :class:`AdaBelief` (see :mod:`gradkit.registry`)."""
    from gradkit._specs import ErrorInput
    from gradkit.optim._entries import optimizer_entry

    return optimizer_entry(
        AdaBelief,
        "Adam with the second moment of (g - m) instead of g; RAdam rectification by default",
        [
            {},
            {"rectify": False},
            {"rectify": False, "amsgrad": True, "eps": 1e-8},
            {"amsgrad": True, "weight_decay": 1e-2},
            {"rectify": False, "weight_decouple": False, "weight_decay": 1e-2},
            {"fixed_decay": True, "weight_decay": 1e-3, "degenerated_to_sgd": False, "eps": 1e-8},
        ],
        error_inputs=[
            ErrorInput({"lr": -1.0}, ValueError, r"Invalid lr: -1\.0 \(must be >= 0\)"),
            ErrorInput({"lr": float("nan")}, ValueError, r"Invalid lr: nan \(must be finite\)"),
            ErrorInput({"lr": "0.1"}, TypeError, r"Invalid lr: '0\.1'"),
            ErrorInput(
                {"betas": (1.0, 0.999)},
                ValueError,
                r"Invalid betas\[0\]: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput({"betas": (-0.1, 0.999)}, ValueError, r"Invalid betas\[0\]: -0\.1"),
            ErrorInput(
                {"betas": (0.9, 1.0)},
                ValueError,
                r"Invalid betas\[1\]: 1\.0 \(must be in \[0, 1\)\)",
            ),
            ErrorInput({"betas": (0.9, -0.1)}, ValueError, r"Invalid betas\[1\]: -0\.1"),
            ErrorInput({"betas": 0.9}, ValueError, r"Invalid betas: 0\.9 \(expected a pair"),
            ErrorInput({"eps": -1e-16}, ValueError, r"Invalid eps: -1e-16 \(must be >= 0\)"),
            ErrorInput(
                {"weight_decay": -0.1}, ValueError, r"Invalid weight_decay: -0\.1 \(must be >= 0\)"
            ),
            ErrorInput(
                {"amsgrad": 1}, TypeError, r"Invalid amsgrad: 1 \(expected a bool, got int\)"
            ),
            ErrorInput(
                {"weight_decouple": "yes"},
                TypeError,
                r"Invalid weight_decouple: 'yes' \(expected a bool",
            ),
            ErrorInput(
                {"fixed_decay": None}, TypeError, r"Invalid fixed_decay: None \(expected a bool"
            ),
            ErrorInput(
                {"rectify": 0}, TypeError, r"Invalid rectify: 0 \(expected a bool, got int\)"
            ),
            ErrorInput(
                {"degenerated_to_sgd": 1.0},
                TypeError,
                r"Invalid degenerated_to_sgd: 1\.0 \(expected a bool",
            ),
            ErrorInput({"maximize": 1}, TypeError, r"Invalid maximize: 1 \(expected a bool"),
        ],
        hyperparams=(
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "amsgrad",
            "weight_decouple",
            "fixed_decay",
            "rectify",
            "degenerated_to_sgd",
        ),
        lr=1e-2,
    )
