"""The two-objective toy of CAGrad and Nash-MTL (spec B1): Adam on the aggregated gradient.

Formulas (Cranial-XIX/CAGrad ``toy.py``, AvivNavon/nash-mtl ``experiments/toy/problem.py``),
θ = (x1, x2), LOWER = 5e-6::

    f1 = log(max(|0.5(−x1−7) − tanh(−x2)|, LOWER)) + 6
    f2 = log(max(|0.5(−x1+3) + tanh(−x2) + 2|, LOWER)) + 6
    c1 = max(tanh(0.5 x2), 0);   c2 = max(tanh(−0.5 x2), 0)
    f1_sq = ((−x1+7)² + 0.1(−x2−8)²)/10 − 20
    f2_sq = ((−x1−7)² + 0.1(−x2−8)²)/10 − 20
    L1 = scale·(f1·c1 + f1_sq·c2);   L2 = f2·c1 + f2_sq·c2

Two settings: ``toy_cagrad`` (scale 1, the CAGrad paper's three starts) and ``toy_nash`` (the
imbalanced Nash-MTL setting, scale 0.1 on L1, five starts).

Pareto set. For x2 < 0 (where both losses are far below their values for x2 > 0) the losses
are c2(x2)·q_k(x1, x2) with quadratic q_k. A point is Pareto-stationary iff it minimises a
weighted sum w1·L1/scale + w2·L2 with w ∝ (7 + x1, 7 − x1), which reduces to
x2*(x1) = argmin_{x2} tanh(−x2/2)·((49 − x1²)/10 − 20 + 0.01(x2 + 8)²) for x1 ∈ [−7, 7]; the set
does not depend on ``scale``. :func:`pareto_set` solves this 1-D problem by ternary search on a
grid of x1 (spacing 0.005): x2*(0) = −8.3551 (the spec's average-loss optimum ≈ (0, −8.3552)), x2*(±7) =
−8.4345. The distance of a point to the set is its distance to the nearest grid point (error
below 0.003).

Each run starts from every start point at once (one θ row per start; Adam is element-wise, so
this is the same as separate runs) and uses one aggregator instance per start. The aggregator
sees the 2×2 Jacobian of (L1, L2) at its start's θ and Adam steps on its output.

A loss weighting (GradNorm) also runs with one instance per start. Its shared layer W is θ
itself (the toy's only parameter, all of it shared), so n_i = ‖∇_θ L_i‖ is the norm of row i of
the closed-form Jacobian, and Adam steps on ∇_θ Σ_i w_i L_i = Σ_i w_i ∇L_i, the weights of the
step before their update (``GradNorm.update(values, norms)``, the same update as
``GradNorm.step``; autograd would cost 3 ms a step). GradNorm's loss ratio L_i(t)/L_i(0) needs
losses ≥ 0, but the toy's losses are negative near the Pareto set; the weighting sees
L_i − :data:`LOSS_FLOOR`·scale_i (L1 and L2 lie above −20·scale and −20), a constant shift that
changes no gradient. The toy is full-batch, so one step is one epoch: the weighting's
``end_epoch()`` is called after every step (LibMTL's variant: plain sum at step 0, L_i(0) =
the step-0 losses, GradNorm from step 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.families import AggregatorMethod, WeightingMethod, as_function
from gradkit.bench.methods import BenchMethod
from gradkit.bench.tasks.base import Outcome, Task

__all__ = [
    "LOSS_FLOOR",
    "LOWER",
    "TOY_SETTINGS",
    "ToySetting",
    "ToyTask",
    "distance_to_pareto",
    "pareto_set",
    "toy_jacobian",
    "toy_losses",
]

LOWER = 5e-6
#: A lower bound of the toy's losses (per unit of ``scale``): f_sq ≥ −20 and c2 < 1 for x2 < 0,
#: f ≥ log(LOWER) + 6 ≈ −6.2 and c1 < 1 for x2 > 0. A loss weighting sees L_i − LOSS_FLOOR·s_i.
LOSS_FLOOR = -20.0
#: A run "reaches" the Pareto set when its final distance is below this.
REACH_TOL = 0.1
#: Trajectory points kept per start for the plots.
TRAJECTORY_POINTS = 400


def toy_losses(
    theta: torch.Tensor, scale: float = 1.0, scale_both: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, L2) at ``theta[..., 0] = x1``, ``theta[..., 1] = x2`` (formulas in the module doc)."""
    x1, x2 = theta[..., 0], theta[..., 1]
    f1 = torch.log(torch.clamp(torch.abs(0.5 * (-x1 - 7) - torch.tanh(-x2)), min=LOWER)) + 6
    f2 = torch.log(torch.clamp(torch.abs(0.5 * (-x1 + 3) + torch.tanh(-x2) + 2), min=LOWER)) + 6
    c1 = torch.clamp(torch.tanh(0.5 * x2), min=0)
    c2 = torch.clamp(torch.tanh(-0.5 * x2), min=0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    l1 = scale * (f1 * c1 + f1_sq * c2)
    l2 = f2 * c1 + f2_sq * c2
    return l1 * scale_both, l2 * scale_both


def toy_jacobian(theta: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """∂(L1, L2)/∂(x1, x2) at each row of ``theta`` ``[..., 2]`` → ``[..., 2 (loss), 2 (x)]``.

    Closed form of :func:`toy_losses`'s gradient with torch's autograd conventions at the kinks
    (``clamp(t, min=m)`` passes the gradient where ``t >= m``; ``abs`` has gradient 0 at 0), so
    it matches ``torch.autograd`` exactly; about 10× faster than autograd for the tiny toy.
    """
    x1, x2 = theta[..., 0], theta[..., 1]
    t2 = np.tanh(x2)
    th = np.tanh(0.5 * x2)
    u1 = -0.5 * x1 - 3.5 + t2  # 0.5(−x1−7) − tanh(−x2)
    u2 = -0.5 * x1 + 3.5 - t2  # 0.5(−x1+3) + tanh(−x2) + 2
    a1, a2 = np.abs(u1), np.abs(u2)
    f1 = np.log(np.maximum(a1, LOWER)) + 6
    f2 = np.log(np.maximum(a2, LOWER)) + 6
    # d log(max(|u|, LOWER)) / du
    with np.errstate(divide="ignore", invalid="ignore"):
        k1 = np.where(a1 >= LOWER, np.sign(u1) / np.where(a1 > 0, a1, 1.0), 0.0)
        k2 = np.where(a2 >= LOWER, np.sign(u2) / np.where(a2 > 0, a2, 1.0), 0.0)
    sech2 = 1.0 - t2**2
    c1 = np.maximum(th, 0.0)
    c2 = np.maximum(-th, 0.0)
    dth = 0.5 * (1.0 - th**2)
    dc1 = np.where(th >= 0, dth, 0.0)
    dc2 = np.where(-th >= 0, -dth, 0.0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    dsq2 = 0.02 * (x2 + 8)
    out = np.empty((*np.shape(x1), 2, 2))
    out[..., 0, 0] = scale * (-0.5 * k1 * c1 + 0.2 * (x1 - 7) * c2)
    out[..., 0, 1] = scale * (k1 * sech2 * c1 + f1 * dc1 + dsq2 * c2 + f1_sq * dc2)
    out[..., 1, 0] = -0.5 * k2 * c1 + 0.2 * (x1 + 7) * c2
    out[..., 1, 1] = -k2 * sech2 * c1 + f2 * dc1 + dsq2 * c2 + f2_sq * dc2
    return out


@functools.lru_cache(maxsize=1)
def pareto_set(spacing: float = 0.005) -> np.ndarray:
    """Points ``(x1, x2*(x1))`` of the Pareto set, x1 from −7 to 7 every ``spacing``."""
    n = round(14 / spacing) + 1
    x1 = np.linspace(-7.0, 7.0, n)
    a = (49.0 - x1**2) / 10.0 - 20.0

    def f(x2: np.ndarray) -> np.ndarray:
        return np.tanh(-0.5 * x2) * (a + 0.01 * (x2 + 8.0) ** 2)

    lo, hi = np.full(n, -12.0), np.full(n, -6.0)  # f is unimodal there
    for _ in range(100):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        left = f(m1) < f(m2)
        hi = np.where(left, m2, hi)
        lo = np.where(left, lo, m1)
    return np.stack([x1, (lo + hi) / 2], axis=1)


def distance_to_pareto(points: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row ``(x1, x2)`` of ``points`` (any leading shape) to the set
    (NaN for non-finite points)."""
    pts = np.asarray(points, dtype=float)
    flat = pts.reshape(-1, 2)
    finite = np.isfinite(flat).all(axis=1)
    flat = np.where(finite[:, None], flat, 0.0)
    ref = pareto_set()
    out = np.empty(flat.shape[0])
    for i in range(0, flat.shape[0], 2048):
        chunk = flat[i : i + 2048]
        d2 = ((chunk[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
        out[i : i + 2048] = np.sqrt(d2.min(axis=1))
    out[~finite] = np.nan  # a diverged point has no distance
    return out.reshape(pts.shape[:-1])


class ToySetting:
    """One toy configuration: loss scale, start points and method options (LibMTL's GradNorm
    steps its weights with the network's lr, as LibMTL's optimizer does)."""

    def __init__(
        self,
        name: str,
        scale: float,
        starts: Sequence[tuple[float, float]],
        options: Mapping[str, Mapping[str, Any]],
        source: str,
        steps: int,
    ) -> None:
        self.name, self.scale, self.source, self.steps = name, scale, source, steps
        self.starts = tuple((float(a), float(b)) for a, b in starts)
        self.options = {k: dict(v) for k, v in options.items()}


#: Adam learning rate: 3× the papers' lr 1e-3, with 40 000 (CAGrad setting) and 30 000
#: (Nash-MTL setting) steps. Measured with stand-in aggregators: at lr 1e-3 CAGrad needs
#: 60 000–80 000 steps to reach the Pareto set from the CAGrad starts (the paper runs
#: 100 000); at 3e-3 it takes 24 000–30 000 (40 000 leave a margin for other CAGrad solvers)
#: while Mean stays stuck in the valleys near x1 = ±5 as at 1e-3 (crawling ~0.04 per 1 000
#: steps, it would leave them after ~60 000); at 5e-3 or 1e-2 Mean escapes them, which changes
#: the qualitative picture. On the Nash-MTL setting 12 000 steps (≈ its 35 000 at 1e-3) stop
#: every method short somewhere, 30 000 separate them.
LR = 3e-3
SMOKE_STEPS = 30

#: The two settings of the spec (B1).
TOY_SETTINGS: dict[str, ToySetting] = {
    "toy_cagrad": ToySetting(
        "toy_cagrad",
        1.0,
        [(-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0)],
        {"cagrad": {"c": 0.5}, "samgs": {"gamma": 0.1}, "gradnorm_libmtl": {"lr": LR}},
        "CAGrad paper setting: scale 1, three starts; CAGrad c = 0.5",
        40_000,
    ),
    "toy_nash": ToySetting(
        "toy_nash",
        0.1,
        [(-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)],
        {"cagrad": {"c": 0.4}, "samgs": {"gamma": 0.1}, "gradnorm_libmtl": {"lr": LR}},
        "Nash-MTL imbalanced setting: L1 scaled by 0.1, five starts; CAGrad c = 0.4",
        30_000,
    ),
}


class ToyTask(Task[BenchMethod]):
    """Adam (lr 3e-3) on the aggregated (or loss-weighted) gradient of the toy from every start.

    ``final_loss`` and ``metrics["pareto_distance"]`` are the largest final distance to the
    Pareto set over the starts; ``metrics["reached"]`` counts the starts that end within
    :data:`REACH_TOL`; ``dist_s<i>``, ``x1_s<i>``, ``x2_s<i>``, ``l1_s<i>``, ``l2_s<i>`` give
    start ``i``'s final distance, point and losses. The curve is the largest distance over the
    starts after every step; the record's ``artifacts["trajectory"]`` keeps the path from every
    start (``[points][starts][2]``, at most :data:`TRAJECTORY_POINTS` + 1 points) for the plot.
    A loss weighting also gives ``w1_s<i>``, ``w2_s<i>`` (start ``i``'s final weights) and
    ``artifacts["weights"]`` (``[points][starts][2]``, the weights used at the same steps as
    the trajectory's points, the last one at the last step).
    """

    deterministic = True
    loss_name = "max distance to Pareto set"
    higher_is_better: ClassVar[Mapping[str, bool]] = {
        "pareto_distance": False,
        "mean_distance": False,
        "reached": True,
    }
    optimum = None

    def __init__(self, setting: ToySetting) -> None:
        self.setting = setting
        self.name = setting.name
        n = len(setting.starts)
        starts = ", ".join(f"({a:g}, {b:g})" for a, b in setting.starts)
        self.description = (
            f"Two-objective toy (CAGrad/Nash-MTL), {setting.source}; starts {starts}; Adam "
            f"lr {LR:g} on the aggregated (or loss-weighted) gradient; pareto_distance = "
            f"largest final distance to the Pareto set over the {n} starts, reached = starts "
            f"ending within {REACH_TOL:g} of it"
        )
        self.metrics = (
            "pareto_distance",
            "mean_distance",
            "reached",
            *(f"dist_s{i}" for i in range(n)),
        )

    def default_steps(self, smoke: bool) -> int:
        """40 000 (``toy_cagrad``) or 30 000 (``toy_nash``) steps at lr 3e-3 (the papers:
        100 000 and 35 000 at lr 1e-3); 30 in smoke mode."""
        return SMOKE_STEPS if smoke else self.setting.steps

    def hyperparams(self, method: BenchMethod) -> dict[str, Any]:
        """Adam lr 3e-3, default betas."""
        return {"lr": LR}

    def _directions(
        self, method: AggregatorMethod | WeightingMethod
    ) -> tuple[Any, list[Any], str, dict[str, Any]]:
        """One aggregator or weighting per start: (aggregate or ``None``, weightings, the
        prefix of their options in the record, the options used)."""
        options = self.setting.options.get(method.name, {})
        used: dict[str, Any] = {}
        if isinstance(method, AggregatorMethod):
            aggs = []
            for _ in self.setting.starts:
                agg, used = method.build_aggregator(options)
                aggs.append(as_function(agg))

            def aggregate(jac: torch.Tensor) -> torch.Tensor:
                return torch.stack([agg(jac[s]) for s, agg in enumerate(aggs)])

            return aggregate, [], "aggregator", used
        weightings = []
        for _ in self.setting.starts:
            weighting, used = method.build_weighting(2, options)
            weightings.append(weighting)
        return None, weightings, "weighting", used

    def run(self, method: BenchMethod, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Run all starts with ``method``'s aggregator or loss weighting; see the class doc."""
        if not isinstance(method, (AggregatorMethod, WeightingMethod)):
            raise BenchConfigError(
                f"{method.name} is a {method.kind}: the toy runs aggregators and loss weightings"
            )
        setting = self.setting
        aggregate, weightings, prefix, kwargs = self._directions(method)
        theta = torch.tensor(setting.starts, dtype=torch.float64, requires_grad=True)
        optimizer, used = method.build([theta], self.hyperparams(method))
        path = np.empty((steps + 1, len(setting.starts), 2))
        path[0] = theta.detach().numpy()
        weights = np.ones((steps, len(setting.starts), 2))
        offset = -LOSS_FLOOR * np.array([setting.scale, 1.0])
        status = "ok"
        for k in range(steps):
            jac = toy_jacobian(path[k], setting.scale)  # [S, K=2, P=2]
            if aggregate is not None:
                update = aggregate(torch.from_numpy(jac))
            else:
                with torch.no_grad():
                    l1, l2 = toy_losses(torch.from_numpy(path[k]), setting.scale)
                values = np.stack([l1.numpy(), l2.numpy()], axis=1) + offset
                norms = np.linalg.norm(jac, axis=2)  # ‖∇_θ L_i‖ per start and task
                for s, weighting in enumerate(weightings):
                    weights[k, s] = weighting.update(values[s], norms[s]).numpy()
                    weighting.end_epoch()  # full batch: one step is one epoch
                update = torch.from_numpy(np.einsum("sk,skp->sp", weights[k], jac))
            theta.grad = update.to(theta.dtype).reshape(theta.shape)
            optimizer.step()
            path[k + 1] = theta.detach().numpy()
            if not np.isfinite(path[k + 1]).all():
                status = "diverged"
                path = path[: k + 2]
                weights = weights[: k + 1]
                break
        with torch.no_grad():
            l1, l2 = toy_losses(theta, setting.scale)
        dist = distance_to_pareto(path)
        worst = dist.max(axis=1)
        final = dist[-1]
        metrics: dict[str, float | None] = {
            "pareto_distance": float(final.max()),
            "mean_distance": float(final.mean()),
            "reached": float((final < REACH_TOL).sum()),  # NaN (diverged) counts as not reached
        }
        for i in range(len(setting.starts)):
            metrics[f"dist_s{i}"] = float(final[i])
            metrics[f"x1_s{i}"] = float(path[-1, i, 0])
            metrics[f"x2_s{i}"] = float(path[-1, i, 1])
            metrics[f"l1_s{i}"] = float(l1[i])
            metrics[f"l2_s{i}"] = float(l2[i])
        stride = max(1, math.ceil(path.shape[0] / TRAJECTORY_POINTS))
        keep = np.concatenate([path[::stride], path[-1:]])
        artifacts: dict[str, Any] = {"trajectory": keep.tolist()}
        for i, weighting in enumerate(weightings):
            final_w = weighting.weights.tolist()
            metrics[f"w1_s{i}"], metrics[f"w2_s{i}"] = final_w[0], final_w[1]
        if weightings and len(weights):
            artifacts["weights"] = np.concatenate([weights[::stride], weights[-1:]]).tolist()
        used = {**used, **{f"{prefix}.{k}": v for k, v in kwargs.items()}}
        outcome = Outcome(
            float(worst[-1]),
            [float(v) for v in worst],
            metrics=metrics,
            status=status,
            artifacts=artifacts,
        )
        return outcome, used


def plot_trajectories(
    setting: ToySetting,
    runs: Mapping[str, tuple[np.ndarray | None, Any]],
    path: Any,
    title: str = "",
) -> Any:
    """One panel per method: the trajectories from every start over the contours of L1 + L2,
    with the Pareto set; a last panel with the largest distance to the set per step.

    Args:
        runs: method → (trajectory ``[points, starts, 2]`` or ``None``, its record). Without a
            trajectory (a version-1 ``results.json``) only the start and end points are drawn.
    """
    from matplotlib.figure import Figure

    n = len(runs) + 1
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols, 3.4 * rows), dpi=100)
    grid = np.linspace(-10, 10, 201)
    xx, yy = np.meshgrid(grid, grid)
    with torch.no_grad():
        l1, l2 = toy_losses(torch.tensor(np.stack([xx, yy], -1)), setting.scale)
    total = (l1 + l2).numpy()
    levels = np.unique(np.quantile(total, np.linspace(0, 1, 31)))  # even area per band
    pareto = pareto_set()
    colors = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
    starts = np.array(setting.starts)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for ax, (method, (traj, record)) in zip(axes, runs.items(), strict=False):
        ax.contourf(xx, yy, total, levels=levels, cmap="Greys", alpha=0.5)
        ax.contour(xx, yy, total, levels=levels[::2], colors="k", linewidths=0.3, alpha=0.5)
        ax.plot(pareto[:, 0], pareto[:, 1], color="gold", linewidth=3, label="Pareto set")
        ends = np.array(
            [
                [record.metrics.get(f"x1_s{i}", np.nan), record.metrics.get(f"x2_s{i}", np.nan)]
                for i in range(len(starts))
            ],
            dtype=float,
        )
        for i in range(len(starts)):
            color = colors[i % len(colors)]
            if traj is not None:
                ax.plot(traj[:, i, 0], traj[:, i, 1], color=color, linewidth=1.2)
            ax.plot(*starts[i], "o", color=color, markersize=5)
            ax.plot(*ends[i], "*", color=color, markersize=10, markeredgecolor="k")
        reached = record.metrics.get("reached")
        label = f"{method}: {int(reached)}/{len(starts)} reached" if reached is not None else method
        ax.set_title(label, fontsize=9)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.tick_params(labelsize=7)
    ax = axes[-1]
    for method, (_, record) in runs.items():
        curve = np.array([np.nan if v is None else v for v in record.curve], dtype=float)
        steps = np.arange(curve.size) * record.curve_stride
        ax.plot(steps, np.maximum(curve, 1e-4), label=method, linewidth=1.2)
    ax.set_yscale("log")
    ax.axhline(REACH_TOL, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel("step", fontsize=8)
    ax.set_title("max distance to Pareto set", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.suptitle(title + f" (scale {setting.scale:g}; ○ start, ★ end, gold: Pareto set)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
