"""GCond: gradient conductor, accumulate-then-resolve (Limarenko & Studenikina, arXiv 2509.07252)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from gradkit import _validation as check
from gradkit.mtl._backward import (
    accumulate_grad,
    report_unused,
    resolve_task_params,
    task_gradients,
    write_shared,
)
from gradkit.mtl._base import Aggregator, check_jacobian

__all__ = ["GCond", "conflict_angle"]

DOMINANCE_MODES = ("code", "readme")
HEAD_PARAM_MODES = ("joint", "passthrough")
LEGACY_HISTORY_MODES = ("code", "every_pair")
STATE_KEYS = (
    "step",
    "num_tasks",
    "norm_ema",
    "prev",
    "momentum",
    "history",
    "acc_sum",
    "acc_count",
)


def conflict_angle(c: float, thresholds: tuple[float, float, float], power: float) -> float:
    r"""The smooth logic's effective angle α(c) for cosine ``c`` (``t_crit < t_main < t_weak``):

    .. math::
        \alpha = \begin{cases}
          \frac\pi2\big(1 - \mathrm{clip}(\frac{c - t_m}{t_w - t_m}, 0, 1)\big) & c \ge t_m\\
          \frac\pi2 + \frac\pi2 \big(\frac{c - t_m}{t_c - t_m}\big)^p & t_c < c < t_m\\
          \pi & c \le t_c
        \end{cases}
    """
    t_crit, t_main, t_weak = thresholds
    if c >= t_main:
        return (math.pi / 2) * (1.0 - min(max((c - t_main) / (t_weak - t_main), 0.0), 1.0))
    if c > t_crit:
        return math.pi / 2 + (math.pi / 2) * ((c - t_main) / (t_crit - t_main)) ** power
    return math.pi


class GCond(Aggregator):
    r"""GCond (Limarenko, Studenikina et al., "GCond: Gradient Conflict Resolution via
    Accumulation-based Stabilization for Large-Scale Multi-Task Learning", arXiv 2509.07252;
    official code AlevLab-dev/GCond ``grad_conductor.py``).

    **Accumulate**: :meth:`accumulate` adds Jacobian rows (all tasks, or the tasks named in
    ``tasks=``); :meth:`step` averages each task's rows over the batches it saw and weights
    them, :math:`\hat g_k = \lambda_k \operatorname{mean}_a g_k(\theta; b_a)`. :meth:`backward`
    drives this from a loss function and a batch iterator over ``A = accumulation_steps``
    batches: classic mode (``stochastic=False``) runs all ``K`` losses on every batch (``A·K``
    backward passes); stochastic mode (code default) gives each task ``A/K`` fresh batches
    (``A`` backward passes, requires ``A % K == 0``).

    **Resolve** (:meth:`step`): per-task norm EMA :math:`\bar n_k \leftarrow
    \max(\beta_n \bar n_k + (1-\beta_n)\|\hat g_k\|, \epsilon)` (init 1); optional norm cap;
    then at most ``max_iters`` (default ``2K``) times: take the pair ``(i, j)`` with the lowest
    cosine ``c < t_weak`` (zero gradients skipped) and resolve it in place. The winner is the
    dominant task's *opponent* if one task won the last ``dominance_window`` arbitrations
    (``dominance_mode="code"``; ``"readme"`` makes the dominant task win), otherwise the task
    with the higher score :math:`0.8\max(0, \cos(\hat g_k, \hat g_k^{prev})) + 0.2\, s_k`,
    :math:`s_k = \frac{\|\hat g_k\|/\bar n_k}{\|\hat g_i\|/\bar n_i + \|\hat g_j\|/\bar n_j}`
    (ties: ``i``). Smooth logic (default), with :func:`conflict_angle` α and
    :math:`\delta = \langle g_w, g_l\rangle`, simultaneously:

    .. math:: g_w \leftarrow g_w - \sin\alpha\,\frac{\delta}{\|g_l\|^2} g_l,\qquad
              g_l \leftarrow g_l - \sin(\min(\alpha, \tfrac\pi2))\,\frac{\delta}{\|g_w\|^2} g_w

    Legacy logic (``use_smooth_logic=False``): ``c < t_crit`` zeroes the loser; ``c < t_main``
    projects the loser onto the winner's normal plane; ``c < t_weak`` projects both
    simultaneously. As in the official code, only the first two zones run the arbitration and
    record a winner in the dominance history; the symmetric weak zone records nothing
    (``legacy_history="every_pair"`` keeps gradkit's earlier behaviour, which arbitrated and
    recorded a winner for every resolved pair). Finally :math:`d_{raw} = \sum_k \hat g_k`, momentum
    :math:`m \leftarrow \beta m + (1-\beta) d_{raw}` and the output is :math:`m/(1-\beta^t)`
    (or :math:`d_{raw}` with ``return_raw_grad=True``). The post-projection :math:`\hat g_k`
    become the "previous" gradients of the next stability score (code behaviour).

    Defaults follow the official code: thresholds (−0.8, −0.5, 0.0), ``remap_power=2``,
    ``momentum_beta=0.85``, ``dominance_window=3``, ``tie_breaking_weights=(0.8, 0.2)``,
    ``norm_ema_beta=0.95``, ``eps=1e-8``, ``stochastic=True``, except the buffers: float32 by
    default (the code's bfloat16 is ``buffer_dtype=torch.bfloat16``). The README recommends
    an optimizer without momentum on top (e.g. AdamW ``betas=(0.0, 0.95)``).

    **Task-specific params** (:meth:`backward`, ``head_params=``): the official code takes its
    gradients w.r.t. all trainable params of the model and resolves conflicts, applies the
    momentum and writes ``.grad`` over that one vector, heads included (a head's entries are 0
    in the other tasks' gradients). ``head_params="joint"`` (default) does the same;
    ``"passthrough"`` is gradkit's earlier behaviour (heads get ``λ_k`` × the mean of their
    own gradients, unresolved and without momentum). Note that :func:`~gradkit.mtl.mtl_backward`
    with a ``GCond`` aggregator follows TorchJD's convention instead: only the shared params'
    Jacobian reaches the aggregator and heads get their own gradients; use :meth:`backward`
    for the official semantics.

    ``aggregator(jacobian)`` is ``accumulate`` + ``step``. Stateful (:meth:`state_dict`
    round-trips the norm EMA, previous gradients, momentum, arbitration history and any pending
    accumulation); permutation invariant; accepts ``K >= 1`` (one task: the momentum of its
    gradient).

    Paper: arXiv:2509.07252. Reference implementation: the official code
    (AlevLab-dev/GCond, ``grad_conductor.py``).

    Deviations: float32 buffers by default (``buffer_dtype``; the code uses bfloat16); the
    code's ``+ eps`` in the projection denominators is left out (zero-norm gradients are
    skipped before any projection); ``dominance_window`` must be ≥ 1 (the code accepts 0, no
    history). Not implemented: the Lion/LARS trust-ratio output mode and ``freeze_bn`` (the caller controls
    ``model.train()/eval()``).

    Example:
        >>> import torch
        >>> from gradkit.mtl import GCond
        >>> gcond = GCond()
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # cosine -0.71: a conflict to resolve
        >>> [round(x, 4) for x in gcond(jac).tolist()]
        [0.2326, 1.5]
        >>> gcond.step_count, gcond.history  # task 1 won the arbitration
        (1, [1])
    """

    hyperparameter_names = (
        "accumulation_steps",
        "stochastic",
        "loss_weights",
        "thresholds",
        "remap_power",
        "use_smooth_logic",
        "max_iters",
        "dominance_window",
        "dominance_mode",
        "tie_breaking_weights",
        "norm_ema_beta",
        "norm_cap",
        "momentum_beta",
        "return_raw_grad",
        "buffer_dtype",
        "eps",
        "head_params",
        "legacy_history",
    )

    def __init__(
        self,
        accumulation_steps: int = 1,
        *,
        stochastic: bool = True,
        loss_weights: Sequence[float] | None = None,
        thresholds: tuple[float, float, float] = (-0.8, -0.5, 0.0),
        remap_power: float = 2.0,
        use_smooth_logic: bool = True,
        max_iters: int | None = None,
        dominance_window: int = 3,
        dominance_mode: str = "code",
        tie_breaking_weights: tuple[float, float] = (0.8, 0.2),
        norm_ema_beta: float = 0.95,
        norm_cap: float | None = None,
        momentum_beta: float = 0.85,
        return_raw_grad: bool = False,
        buffer_dtype: torch.dtype = torch.float32,
        eps: float = 1e-8,
        head_params: str = "joint",
        legacy_history: str = "code",
    ) -> None:
        for name, value in (
            ("accumulation_steps", accumulation_steps),
            ("dominance_window", dominance_window),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
        if max_iters is not None and (
            isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 0
        ):
            raise ValueError(f"Invalid max_iters: {max_iters!r} (must be None or an int >= 0)")
        if len(thresholds) != 3 or not thresholds[0] < thresholds[1] < thresholds[2]:
            raise ValueError(f"Invalid thresholds: {thresholds!r} (need t_crit < t_main < t_weak)")
        if dominance_mode not in DOMINANCE_MODES:
            raise ValueError(
                f"Invalid dominance_mode: {dominance_mode!r} (must be one of {DOMINANCE_MODES})"
            )
        if head_params not in HEAD_PARAM_MODES:
            raise ValueError(
                f"Invalid head_params: {head_params!r} (must be one of {HEAD_PARAM_MODES})"
            )
        if legacy_history not in LEGACY_HISTORY_MODES:
            raise ValueError(
                f"Invalid legacy_history: {legacy_history!r} (must be one of "
                f"{LEGACY_HISTORY_MODES})"
            )
        if len(tie_breaking_weights) != 2:
            raise ValueError(f"Invalid tie_breaking_weights: {tie_breaking_weights!r}")
        if loss_weights is not None:
            for i, w in enumerate(loss_weights):
                check.nonnegative(f"loss_weights[{i}]", w)
        check.positive("remap_power", remap_power)
        check.unit_interval("norm_ema_beta", norm_ema_beta)
        check.unit_interval("momentum_beta", momentum_beta)
        check.positive("eps", eps)
        if norm_cap is not None:
            check.positive("norm_cap", norm_cap)
        if buffer_dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            raise TypeError(f"Invalid buffer_dtype: {buffer_dtype} (must be a float dtype)")
        self.accumulation_steps = accumulation_steps
        self.stochastic = bool(stochastic)
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self.thresholds = tuple(float(t) for t in thresholds)
        self.remap_power = float(remap_power)
        self.use_smooth_logic = bool(use_smooth_logic)
        self.max_iters = max_iters
        self.dominance_window = dominance_window
        self.dominance_mode = dominance_mode
        self.tie_breaking_weights = (float(tie_breaking_weights[0]), float(tie_breaking_weights[1]))
        self.norm_ema_beta = float(norm_ema_beta)
        self.norm_cap = None if norm_cap is None else float(norm_cap)
        self.momentum_beta = float(momentum_beta)
        self.return_raw_grad = bool(return_raw_grad)
        self.buffer_dtype = buffer_dtype
        self.eps = float(eps)
        self.head_params = head_params
        self.legacy_history = legacy_history
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all state and any pending accumulation."""
        self.step_count = 0
        self.num_tasks: int | None = None if self.loss_weights is None else len(self.loss_weights)
        self.norm_ema: list[float] | None = None
        self.prev: torch.Tensor | None = None
        self.momentum: torch.Tensor | None = None
        self.history: list[int] = []
        self.acc_sum: torch.Tensor | None = None
        self.acc_count: list[int] = []

    def state_dict(self) -> dict[str, Any]:
        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clone()

        return {
            "step": torch.tensor(self.step_count, dtype=torch.int64),
            "num_tasks": self.num_tasks,
            "norm_ema": None
            if self.norm_ema is None
            else torch.tensor(self.norm_ema, dtype=torch.float64),
            "prev": opt(self.prev),
            "momentum": opt(self.momentum),
            "history": torch.tensor(self.history, dtype=torch.int64),
            "acc_sum": opt(self.acc_sum),
            "acc_count": torch.tensor(self.acc_count, dtype=torch.int64),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._check_state_dict(state_dict, STATE_KEYS)

        def opt(t: Any) -> torch.Tensor | None:
            return None if t is None else torch.as_tensor(t).clone()

        self.step_count = int(state_dict["step"])
        n = state_dict["num_tasks"]
        self.num_tasks = None if n is None else int(n)
        ema = state_dict["norm_ema"]
        self.norm_ema = None if ema is None else [float(x) for x in ema.tolist()]
        self.prev = opt(state_dict["prev"])
        self.momentum = opt(state_dict["momentum"])
        self.history = [int(x) for x in state_dict["history"].tolist()]
        self.acc_sum = opt(state_dict["acc_sum"])
        self.acc_count = [int(x) for x in state_dict["acc_count"].tolist()]

    # ------------------------------------------------------------------ accumulation
    def accumulate(self, jacobian: torch.Tensor, tasks: Sequence[int] | None = None) -> None:
        """Add one batch's gradients: ``jacobian`` has one row per task (``tasks=None``) or
        one row per task listed in ``tasks`` (stochastic accumulation)."""
        check_jacobian(jacobian, owner="GCond")
        if tasks is None:
            if self.num_tasks is not None and jacobian.shape[0] != self.num_tasks:
                raise ValueError(
                    f"Invalid jacobian for GCond: {jacobian.shape[0]} rows for "
                    f"{self.num_tasks} tasks"
                )
            self.num_tasks = jacobian.shape[0]
            rows = list(range(self.num_tasks))
        else:
            rows = [int(t) for t in tasks]
            if self.num_tasks is None:
                raise ValueError(
                    "GCond.accumulate(tasks=...) needs the number of tasks: give loss_weights "
                    "or accumulate a full jacobian first"
                )
            if len(rows) != jacobian.shape[0] or len(set(rows)) != len(rows):
                raise ValueError(
                    f"Invalid tasks: {list(tasks)} for a jacobian with {jacobian.shape[0]} rows "
                    "(need one distinct task index per row)"
                )
            for t in rows:
                if not 0 <= t < self.num_tasks:
                    raise ValueError(f"Invalid task index: {t} (must be in [0, {self.num_tasks}))")
        k, p = self.num_tasks, jacobian.shape[1]
        if self.acc_sum is None:
            self.acc_sum = torch.zeros(k, p, dtype=self.buffer_dtype, device=jacobian.device)
            self.acc_count = [0] * k
        elif self.acc_sum.shape[1] != p:
            raise ValueError(
                f"Invalid jacobian for GCond: {p} columns, the pending accumulation has "
                f"{self.acc_sum.shape[1]}"
            )
        idx = torch.tensor(rows, device=jacobian.device)
        self.acc_sum.index_add_(0, idx, jacobian.to(self.buffer_dtype))
        for t in rows:
            self.acc_count[t] += 1

    # ------------------------------------------------------------------ resolution
    def _arbitrate(self, i: int, j: int, g: torch.Tensor, norms: list[float]) -> tuple[int, int]:
        w = self.dominance_window
        recent = self.history[-w:]
        if len(recent) == w and len(set(recent)) == 1 and recent[0] in (i, j):
            dominant = recent[0]
            other = j if dominant == i else i
            winner = other if self.dominance_mode == "code" else dominant
        else:
            assert self.norm_ema is not None
            rel = {t: norms[t] / self.norm_ema[t] for t in (i, j)}
            total = rel[i] + rel[j]
            scores = {}
            for t in (i, j):
                stab = 0.0
                if self.prev is not None:
                    prev = self.prev[t].float()
                    denom = float(prev.norm()) * norms[t]
                    if denom > 0:
                        stab = max(0.0, float(g[t] @ prev) / denom)
                strength = rel[t] / total if total > 0 else 0.0
                scores[t] = (
                    self.tie_breaking_weights[0] * stab + self.tie_breaking_weights[1] * strength
                )
            winner = i if scores[i] >= scores[j] else j
        self.history.append(winner)
        self.history = self.history[-w:]
        return winner, (j if winner == i else i)

    def _resolve_pair(self, g: torch.Tensor, w: int, lo: int, c: float) -> None:
        gw, gl = g[w].clone(), g[lo].clone()
        delta = float(gw @ gl)
        nw2, nl2 = float(gw @ gw), float(gl @ gl)
        t_crit, t_main, _ = self.thresholds
        if self.use_smooth_logic:
            alpha = conflict_angle(c, self.thresholds, self.remap_power)  # type: ignore[arg-type]
            g[w] = gw - math.sin(alpha) * delta / nl2 * gl
            g[lo] = gl - math.sin(min(alpha, math.pi / 2)) * delta / nw2 * gw
        elif c < t_crit:
            g[lo] = 0.0
        elif c < t_main:
            g[lo] = gl - delta / nw2 * gw
        else:
            g[w] = gw - delta / nl2 * gl
            g[lo] = gl - delta / nw2 * gw

    def step(self) -> torch.Tensor:
        """Resolve the accumulated gradients and return the update (clears the accumulation)."""
        if self.acc_sum is None or self.num_tasks is None:
            raise ValueError("GCond.step() called with nothing accumulated")
        missing = [t for t, n in enumerate(self.acc_count) if n == 0]
        if missing:
            raise ValueError(f"GCond.step(): no gradient accumulated for task(s) {missing}")
        k = self.num_tasks
        lam = self.loss_weights or [1.0] * k
        if len(lam) != k:
            raise ValueError(f"Invalid loss_weights: {len(lam)} weights for {k} tasks")
        scale = torch.tensor(
            [lam[t] / self.acc_count[t] for t in range(k)],
            dtype=torch.float32,
            device=self.acc_sum.device,
        )
        g = self.acc_sum.float() * scale[:, None]
        self.acc_sum, self.acc_count = None, []
        if self.prev is not None and self.prev.shape != g.shape:
            raise ValueError(
                f"Invalid jacobian for GCond: shape {tuple(g.shape)}, the state has "
                f"{tuple(self.prev.shape)} (call reset())"
            )
        norms = g.double().norm(dim=1).tolist()
        if self.norm_ema is None:
            self.norm_ema = [1.0] * k
        b = self.norm_ema_beta
        self.norm_ema = [
            max(b * e + (1 - b) * n, self.eps) for e, n in zip(self.norm_ema, norms, strict=True)
        ]
        if self.norm_cap is not None:
            for t in range(k):
                if norms[t] > self.norm_cap:
                    g[t] *= self.norm_cap / norms[t]
        max_iters = 2 * k if self.max_iters is None else self.max_iters
        t_weak = self.thresholds[2]
        for _ in range(max_iters):
            n = g.double().norm(dim=1)
            gram = g.double() @ g.double().T
            best: tuple[float, int, int] | None = None
            for i in range(k):
                for j in range(i + 1, k):
                    if n[i] <= 0 or n[j] <= 0:
                        continue
                    c = float(gram[i, j] / (n[i] * n[j]))
                    if c < t_weak and (best is None or c < best[0]):
                        best = (c, i, j)
            if best is None:
                break
            c, i, j = best
            if self.use_smooth_logic or c < self.thresholds[1] or self.legacy_history != "code":
                winner, loser = self._arbitrate(i, j, g, n.tolist())
            else:
                # Legacy weak zone (t_main <= c < t_weak): a symmetric projection, so the
                # official code runs no arbitration and records no winner there.
                winner, loser = i, j
            self._resolve_pair(g, winner, loser, c)
        raw = g.sum(dim=0)
        self.prev = g.to(self.buffer_dtype)
        self.step_count += 1
        beta = self.momentum_beta
        m = (1 - beta) * raw
        if self.momentum is not None:
            m = m + beta * self.momentum.float()
        self.momentum = m.to(self.buffer_dtype)
        if self.return_raw_grad:
            return raw
        return self.momentum.float() / (1 - beta**self.step_count)

    def _aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        self.accumulate(jacobian)
        return self.step().to(jacobian.dtype)

    # ------------------------------------------------------------------ helper
    def backward(
        self,
        loss_fn: Callable[[Any], Sequence[torch.Tensor]],
        batches: Iterable[Any],
        shared_params: Iterable[torch.Tensor],
        *,
        task_params: Sequence[Iterable[torch.Tensor]] | None = None,
        unused: str = "warn",
    ) -> torch.Tensor:
        """Accumulate over ``accumulation_steps`` batches drawn from ``batches`` (``loss_fn(batch)``
        returns the ``K`` task losses), resolve, and accumulate the update into ``.grad``.

        ``head_params="joint"`` (default, the official code, which resolves and smooths "all
        trainable parameters" as one vector): each task's gradient is taken w.r.t. the shared
        params *and* every task's own params (``task_params``, or inferred: the leaves a loss
        reaches that are not shared), zeros where a loss does not reach a param; conflict
        resolution, momentum and the update cover that whole vector, and every param that some
        task reached gets its slice. The update returned is ``[shared..., own params...]``
        (each task's own params in task order, a param listed twice counted once).
        ``head_params="passthrough"`` (gradkit's earlier behaviour): only the shared params are
        resolved and smoothed; task ``k``'s own params get ``λ_k`` × the mean of its gradients
        (no conflict resolution, no momentum) and the update returned covers the shared params.

        Backward passes: ``A·K`` (classic) or ``A`` (stochastic: batch ``a`` serves task
        ``a // (A/K)`` only; ``A % K == 0`` required). Returns the update.
        """
        shared = list(shared_params)
        it = iter(batches)
        a_steps = self.accumulation_steps
        joint = self.head_params == "joint"
        head_sums: dict[tuple[int, int], torch.Tensor] = {}
        heads: list[list[torch.Tensor]] | None = None
        params: list[torch.Tensor] = shared
        counts: list[int] = []
        missed: dict[int, int] = {}
        passes = 0
        for a in range(a_steps):
            try:
                batch = next(it)
            except StopIteration:
                raise ValueError(
                    f"batches ran out after {a} of accumulation_steps={a_steps} batches"
                ) from None
            losses = list(loss_fn(batch))
            k = len(losses)
            if heads is None:
                if self.stochastic and a_steps % k:
                    raise ValueError(
                        f"Invalid accumulation_steps: {a_steps} (stochastic mode needs a "
                        f"multiple of the number of tasks, {k})"
                    )
                if self.num_tasks is None:
                    self.num_tasks = k
                elif self.num_tasks != k:
                    raise ValueError(f"loss_fn returned {k} losses for {self.num_tasks} tasks")
                heads = resolve_task_params(losses, shared, task_params)
                counts = [0] * k
                if joint:
                    params = list(shared)
                    seen = {id(p) for p in shared}
                    for p in (p for head in heads for p in head):
                        if id(p) not in seen:
                            seen.add(id(p))
                            params.append(p)
            tasks = [a // (a_steps // k)] if self.stochastic else list(range(k))
            if joint:
                no_heads: list[list[torch.Tensor]] = [[] for _ in range(k)]
                rows, _, missing = task_gradients(losses, tasks, params, no_heads, False)
                passes += len(tasks)
                for _, i in missing:
                    missed[i] = missed.get(i, 0) + 1
                report_unused([(t, i) for t, i in missing if i < len(shared)], unused)
                self.accumulate(rows, tasks=tasks if self.stochastic else None)
                continue
            rows, head_grads, missing = task_gradients(losses, tasks, shared, heads, False)
            report_unused(missing, unused)
            self.accumulate(rows, tasks=tasks if self.stochastic else None)
            for t, grads in zip(tasks, head_grads, strict=True):
                counts[t] += 1
                for i, hg in enumerate(grads):
                    if hg is not None:
                        key = (t, i)
                        head_sums[key] = head_sums[key] + hg if key in head_sums else hg
        update = self.step()
        assert heads is not None
        if joint:
            write_shared(params, update, {i for i, n in missed.items() if n == passes})
            return update
        write_shared(shared, update, set())
        lam = self.loss_weights or [1.0] * len(heads)
        for (t, i), s in head_sums.items():
            accumulate_grad(heads[t][i], s * (lam[t] / counts[t]))
        return update
