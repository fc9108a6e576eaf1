"""AdamP / SGDP: parity with ``adamp==0.3.0`` (the official clovaai/AdamP code) and the oracles
of the spec (section 2e), plus the radial-projection transform they share."""

from __future__ import annotations

import doctest
import itertools
import math
from typing import Any, ClassVar

import adamp as reference
import pytest
import pytorch_optimizer
import torch
import torch.nn.functional as F
from torch import nn

import gradkit.optim._adamp as adamp_module
import gradkit.transforms._radial_projection as projection_module
from gradkit.optim import SGDP, AdamP
from gradkit.transforms import is_scale_invariant, radial_projection

F64 = torch.float64
FORLOOP = {"foreach": False}
FOREACH = {"foreach": True}
IMPLS = {"forloop": FORLOOP, "foreach": FOREACH}

# The full option grid adamp.AdamP exposes (nesterov × weight_decay × delta × wd_ratio), plus
# betas/eps/lr variants.
ADAMP_GRID = [
    dict(lr=1e-2, nesterov=nesterov, weight_decay=wd, delta=delta, wd_ratio=ratio)
    for nesterov, wd, delta, ratio in itertools.product(
        (False, True), (0.0, 1e-2), (0.1, 1.0), (0.1, 0.5)
    )
] + [
    dict(lr=1e-2, betas=(0.5, 0.99), eps=1e-6, weight_decay=1e-1, nesterov=True),
    dict(lr=3e-2, betas=(0.0, 0.9), weight_decay=1e-2, delta=1.0),
]
# The full option grid adamp.SGDP exposes. nesterov is valid everywhere (the reference accepts
# momentum=0 and dampening≠0 with nesterov, and so does gradkit).
SGDP_GRID = [
    dict(
        lr=5e-2,
        momentum=mom,
        dampening=damp,
        nesterov=nesterov,
        weight_decay=wd,
        delta=delta,
        wd_ratio=ratio,
    )
    for mom, damp, nesterov, wd, (delta, ratio) in itertools.product(
        (0.0, 0.9), (0.0, 0.1), (False, True), (0.0, 1e-2), ((0.1, 0.1), (1.0, 0.5))
    )
]


# ---------------------------------------------------------------------------- the problem
class Problem:
    """A real scale-invariant network plus weights with constructed gradients.

    Network: conv(2→4, 3×3) → BN → ReLU → linear(64→6) → BN → ReLU → head linear(6→3), trained
    with cross-entropy on random batches; the conv and hidden linear weights are followed by BN,
    so their gradients are (up to BN's ε) orthogonal to every output channel: the channel test
    fires. The extra weights have gradients built from the current weight W:

    * ``switch`` (5×4): orthogonal to every row of W, except on every third step where it is
      aligned with W; the test fires on some steps and not on others;
    * ``row`` (1×6): orthogonal to W (the channel view is the layer view);
    * ``layer`` (4×3×2): each row has a strong component along W_i whose sum over the rows
      cancels, so only the layer view fires;
    * ``aligned`` (3×5): ``±(0.5 W + noise)`` (noise scaled to W's rows, the sign alternates so
      that W neither vanishes nor explodes), never fires;
    * a 1-D and a 0-d weight with random gradients (never projected).
    """

    EXTRA: ClassVar[dict[str, tuple[int, ...]]] = {
        "switch": (5, 4),
        "row": (1, 6),
        "layer": (4, 3, 2),
        "aligned": (3, 5),
        "vector": (5,),
        "scalar": (),
    }

    def __init__(self, dtype: torch.dtype = F64, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(
            nn.Conv2d(2, 4, 3, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 6, bias=False),
            nn.BatchNorm1d(6),
            nn.ReLU(),
            nn.Linear(6, 3),
        ).to(dtype)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.dtype = dtype
        self.extra = {name: nn.Parameter(self._randn(*shape)) for name, shape in self.EXTRA.items()}
        self.names = [name for name, _ in self.model.named_parameters()] + list(self.extra)
        #: The reference optimizer's params (the model computes the gradients with them).
        self.params = list(self.model.parameters()) + list(self.extra.values())

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, dtype=self.dtype)

    def clone_params(self) -> list[torch.Tensor]:
        return [p.detach().clone().requires_grad_() for p in self.params]

    def grads(self, step: int) -> list[torch.Tensor]:
        """The gradients at ``step``, computed from :attr:`params`."""
        x = self._randn(16, 2, 6, 6)
        y = torch.randint(0, 3, (16,), generator=self.gen)
        self.model.zero_grad()
        F.cross_entropy(self.model(x), y).backward()
        grads = [p.grad.detach().clone() for p in self.model.parameters()]  # type: ignore[union-attr]
        w = {name: p.detach() for name, p in self.extra.items()}
        grads.append(
            w["switch"] * 0.7 + self._randn(5, 4) * 0.1
            if step % 3 == 2
            else _orthogonal_rows(w["switch"], self._randn(5, 4))
        )
        grads.append(_orthogonal_rows(w["row"], self._randn(1, 6)))
        grads.append(_layer_only(w["layer"], self._randn(4, 3, 2), self._randn(4)))
        aligned = w["aligned"]
        scale = aligned.norm(dim=1, keepdim=True) / math.sqrt(aligned.shape[1])
        grads.append((-1) ** step * (0.5 * aligned + 0.05 * scale * self._randn(3, 5)))
        grads.append(self._randn(5))
        grads.append(self._randn())
        return grads


def _orthogonal_rows(weight: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``noise`` with the component along each row of ``weight`` removed."""
    w, n = weight.reshape(weight.shape[0], -1), noise.reshape(weight.shape[0], -1)
    return (n - w * (n * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True)).reshape(
        weight.shape
    )


def _layer_only(weight: torch.Tensor, noise: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Rows ``s_i W_i + 0.1·(noise ⟂ W_i)`` with ``Σ s_i ‖W_i‖² = 0``: ⟨G, W⟩ = 0 but every row
    has a large cosine with its W_i."""
    w = weight.reshape(weight.shape[0], -1)
    sq = (w * w).sum(1)
    scales = scales - (scales * sq).sum() / sq.sum()
    rows = scales[:, None] * w + 0.1 * _orthogonal_rows(w, noise.reshape(w.shape))
    return rows.reshape(weight.shape)


def _channel_fires(weight: torch.Tensor, grad: torch.Tensor, delta: float) -> bool:
    rows = weight.shape[0]
    cos = F.cosine_similarity(
        grad.reshape(rows, -1), weight.reshape(rows, -1), dim=1, eps=1e-8
    ).abs()
    return bool(cos.max() < delta / math.sqrt(weight[0].numel()))


#: adamp's projection (the method is the same in AdamP and SGDP), for the firing decisions.
_REFERENCE_PROJECTION = reference.AdamP([nn.Parameter(torch.zeros(1))])._projection


def _run_parity(
    kind: str,
    config: dict[str, Any],
    dtype: torch.dtype = F64,
    steps: int = 50,
    maximize: bool = False,
    ref_cls: type | None = None,
    ours_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the reference and both gradkit impls side by side, feeding each a fresh copy of the
    same gradient every step. With ``maximize`` gradkit gets ``g`` and ``maximize=True`` while the
    reference gets ``-g``. Returns params, states and the per-step firing decisions."""
    problem = Problem(dtype)
    default_ref, ours_cls = (reference.AdamP, AdamP) if kind == "adamp" else (reference.SGDP, SGDP)
    ref = (ref_cls or default_ref)(problem.params, **config)
    ours = {}
    for impl, flags in IMPLS.items():
        params = problem.clone_params()
        opt = ours_cls(params, **config, **flags, **(ours_extra or {}), maximize=maximize)
        ours[impl] = (params, opt)
    delta, wd_ratio, eps = (
        config.get("delta", 0.1),
        config.get("wd_ratio", 0.1),
        config.get("eps", 1e-8),
    )
    fired: list[list[bool]] = []
    layer_channel_fired = []
    layer_index = problem.names.index("layer")
    for step in range(steps):
        grads = problem.grads(step)
        layer_channel_fired.append(
            _channel_fires(problem.params[layer_index].detach(), grads[layer_index], delta)
        )
        decisions = []
        for p, g in zip(problem.params, grads, strict=True):
            if p.ndim > 1:
                # The reference's own decision, and the transform's.
                _, wd = _REFERENCE_PROJECTION(p, g, g.clone(), delta, wd_ratio, eps)
                mine = bool(is_scale_invariant(p.detach(), g, delta=delta, eps=eps))
                assert mine == (wd == wd_ratio), f"firing decision differs at step {step}"
                decisions.append(mine)
        fired.append(decisions)
        for p, g in zip(problem.params, grads, strict=True):
            p.grad = -g if maximize else g.clone()
        ref.step()
        for params, opt in ours.values():
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    return {
        "problem": problem,
        "ref": ref,
        "ours": ours,
        "fired": fired,
        "layer_channel_fired": layer_channel_fired,
    }


def _assert_parity(
    result: dict[str, Any], state_names: tuple[str, ...], rtol: float, atol: float
) -> None:
    problem, ref = result["problem"], result["ref"]
    for impl, (params, opt) in result["ours"].items():
        for name, mine, theirs in zip(problem.names, params, problem.params, strict=True):
            torch.testing.assert_close(
                mine.detach(),
                theirs.detach(),
                rtol=rtol,
                atol=atol,
                msg=lambda m, i=impl, n=name: f"{i}: param {n}: {m}",
            )
            for key in state_names:
                torch.testing.assert_close(
                    opt.state[mine][key], ref.state[theirs][key], rtol=rtol, atol=atol,
                    msg=lambda m, i=impl, n=name, k=key: f"{i}: state[{k!r}] of {n}: {m}",
                )  # fmt: skip


# ---------------------------------------------------------------------------- parity
def _config_id(config: dict[str, Any]) -> str:
    short = {
        "nesterov": "nest",
        "weight_decay": "wd",
        "delta": "d",
        "wd_ratio": "r",
        "momentum": "mom",
        "dampening": "damp",
    }
    return "-".join(f"{short.get(k, k)}={v}" for k, v in config.items() if k != "lr").replace(
        " ", ""
    )


@pytest.mark.parametrize("config", ADAMP_GRID, ids=lambda c: _config_id(c))
def test_adamp_parity_float64(config: dict[str, Any]) -> None:
    """Both impls (for-loop and foreach) against adamp.AdamP over 50 steps: params, exp_avg,
    exp_avg_sq; and both branches of the projection really run."""
    result = _run_parity("adamp", config)
    _assert_parity(result, ("exp_avg", "exp_avg_sq"), rtol=1e-7, atol=1e-9)
    _assert_fired_and_not(result)


@pytest.mark.parametrize("config", SGDP_GRID, ids=lambda c: _config_id(c))
def test_sgdp_parity_float64(config: dict[str, Any]) -> None:
    """Both impls against adamp.SGDP over 50 steps: params and the momentum buffer (which the
    reference projects in place when nesterov is off)."""
    result = _run_parity("sgdp", config)
    _assert_parity(result, ("momentum",), rtol=1e-7, atol=1e-9)
    _assert_fired_and_not(result)


def _assert_fired_and_not(result: dict[str, Any]) -> None:
    problem = result["problem"]
    fired = torch.tensor(result["fired"])  # steps × projectable params
    assert fired.any() and not fired.all(), "the projection must fire on some steps and not others"
    names = [name for name, p in zip(problem.names, problem.params, strict=True) if p.ndim > 1]
    column = {name: fired[:, i] for i, name in enumerate(names)}
    # Pre-BN weights (real scale-invariant loss) and constructed orthogonal gradients fire always.
    for name in ("0.weight", "4.weight", "row", "layer"):
        assert column[name].all(), name
    assert not column["aligned"].any()
    switch = column["switch"]
    assert switch.any() and not switch.all()
    assert torch.equal(switch, torch.tensor([step % 3 != 2 for step in range(len(switch))]))
    # The layer-only weight is projected by the layer view: its channel test never fires.
    assert not any(result["layer_channel_fired"])


SGDP_UNPROJECTED_BUFFER_GRID = [
    dict(lr=5e-2, momentum=0.9, dampening=damp, nesterov=nesterov, weight_decay=wd, delta=delta)
    for damp, nesterov, wd, delta in itertools.product(
        (0.0, 0.1), (False, True), (0.0, 1e-2), (0.1, 1.0)
    )
]


@pytest.mark.parametrize("config", SGDP_UNPROJECTED_BUFFER_GRID, ids=lambda c: _config_id(c))
def test_sgdp_project_buffer_false_matches_pytorch_optimizer(config: dict[str, Any]) -> None:
    """``project_buffer=False`` (the paper's separate momentum and step) against
    ``pytorch_optimizer.SGDP`` 4.1.0, which clones the buffer before projecting; with nesterov
    the flag changes nothing and this is also the official update."""
    result = _run_parity(
        "sgdp", config, ref_cls=pytorch_optimizer.SGDP, ours_extra={"project_buffer": False}
    )
    _assert_parity(result, ("momentum",), rtol=1e-7, atol=1e-9)
    _assert_fired_and_not(result)


def test_project_buffer_flag_changes_the_trajectory() -> None:
    """The two buffer conventions really differ (non-nesterov, momentum > 0, projection firing)."""
    config = dict(lr=5e-2, momentum=0.9)
    official = _run_parity("sgdp", config, steps=10)
    paper = _run_parity("sgdp", config, steps=10, ours_extra={"project_buffer": False})
    a, b = official["ours"]["forloop"][0], paper["ours"]["forloop"][0]
    assert any(not torch.allclose(x, y, rtol=1e-6, atol=1e-8) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_parity_float32(kind: str) -> None:
    config = (
        dict(lr=1e-2, nesterov=True, weight_decay=1e-2)
        if kind == "adamp"
        else dict(lr=5e-2, momentum=0.9, dampening=0.1, weight_decay=1e-2)
    )
    result = _run_parity(kind, config, dtype=torch.float32)
    names = ("exp_avg", "exp_avg_sq") if kind == "adamp" else ("momentum",)
    _assert_parity(result, names, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_maximize_matches_reference_on_negated_grad(kind: str) -> None:
    config = (
        dict(lr=1e-2, nesterov=True, weight_decay=1e-2)
        if kind == "adamp"
        else dict(lr=5e-2, momentum=0.9, weight_decay=1e-2)
    )
    result = _run_parity(kind, config, steps=20, maximize=True)
    names = ("exp_avg", "exp_avg_sq") if kind == "adamp" else ("momentum",)
    _assert_parity(result, names, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["adamp", "sgdp"])
def test_branch_free_eager_matches_reference(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch-free projection (what runs eagerly on accelerators, with 0-d tensor ratios in
    the decay) through both eager impls, against the reference."""

    def branch_free(p: torch.Tensor, g: torch.Tensor, u: torch.Tensor, **kw: Any) -> Any:
        if p.ndim <= 1 or p.numel() == 0:
            return u, 1.0
        return projection_module._branch_free(p, g, u, **kw)

    monkeypatch.setattr(adamp_module, "radial_projection", branch_free)
    config = (
        dict(lr=1e-2, nesterov=True, weight_decay=1e-2, delta=1.0)
        if kind == "adamp"
        else dict(lr=5e-2, momentum=0.9, dampening=0.1, weight_decay=1e-2)
    )
    result = _run_parity(kind, config, steps=30)
    names = ("exp_avg", "exp_avg_sq") if kind == "adamp" else ("momentum",)
    _assert_parity(result, names, rtol=1e-7, atol=1e-9)
    _assert_fired_and_not(result)


@pytest.mark.compile
def test_fused_matches_reference() -> None:
    """One fused case per class (the compiled branch-free projection) against the reference, on
    a pre-BN conv weight, the channel-or-aligned and layer-only weights, a vector and a 0-d
    weight (few tensors, to keep the compile short)."""
    for kind, config in (
        ("adamp", dict(lr=1e-2, nesterov=True, weight_decay=1e-2)),
        ("sgdp", dict(lr=5e-2, momentum=0.9, weight_decay=1e-2)),
    ):
        problem = Problem()
        chosen = [
            problem.names.index(n) for n in ("0.weight", "switch", "layer", "vector", "scalar")
        ]
        theirs = [problem.params[i] for i in chosen]
        mine = [p.detach().clone().requires_grad_() for p in theirs]
        ref = (reference.AdamP if kind == "adamp" else reference.SGDP)(theirs, **config)
        ours = (AdamP if kind == "adamp" else SGDP)(mine, fused=True, **config)  # type: ignore[arg-type]
        fired = []
        for step in range(8):
            grads = problem.grads(step)
            for i, p, q in zip(chosen, theirs, mine, strict=True):
                p.grad, q.grad = grads[i].clone(), grads[i].clone()
            fired.append(
                bool(is_scale_invariant(theirs[1].detach(), grads[chosen[1]], delta=0.1, eps=1e-8))
            )
            ref.step()
            ours.step()
        assert any(fired) and not all(fired)
        names = ("exp_avg", "exp_avg_sq") if kind == "adamp" else ("momentum",)
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-7, atol=1e-9)
            for key in names:
                torch.testing.assert_close(
                    ours.state[a][key], ref.state[b][key], rtol=1e-7, atol=1e-9
                )


# ---------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2, 0.5])
def test_adamp_on_1d_tensors_is_adamw(impl: str, weight_decay: float) -> None:
    """Tensors with ndim <= 1 are never projected, so AdamP is AdamW (same ε placement)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(7,), (), (3,)]
    ours = [torch.randn(s, generator=gen, dtype=F64).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt = AdamP(ours, lr=3e-2, betas=(0.8, 0.99), weight_decay=weight_decay, **IMPLS[impl])
    adamw = torch.optim.AdamW(
        theirs, lr=3e-2, betas=(0.8, 0.99), weight_decay=weight_decay, foreach=False
    )
    for _ in range(30):
        for p, q in zip(ours, theirs, strict=True):
            g = torch.randn(p.shape, generator=gen, dtype=F64)
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        adamw.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            opt.state[p]["exp_avg_sq"], adamw.state[q]["exp_avg_sq"], rtol=1e-10, atol=1e-14
        )


@pytest.mark.parametrize("cls", [AdamP, SGDP])
@pytest.mark.parametrize("impl", IMPLS)
def test_projected_step_has_no_radial_component(cls: type, impl: str) -> None:
    """After a projected step (wd = 0) the update of every row is orthogonal to the row (channel
    view), or the whole update to the whole weight (layer view): ⟨p̂, Δ⟩ = 0 up to ~ε, and so
    ‖W‖² grows by ‖Δ‖² only (second order)."""
    gen = torch.Generator().manual_seed(3)
    channel = torch.randn(4, 3, 3, 3, generator=gen, dtype=F64).requires_grad_()
    layer = torch.randn(5, 6, generator=gen, dtype=F64).requires_grad_()
    kwargs = dict(lr=0.1, momentum=0.9) if cls is SGDP else dict(lr=0.1)
    opt = cls([channel, layer], **kwargs, **IMPLS[impl])
    for _ in range(5):
        before = [channel.detach().clone(), layer.detach().clone()]
        channel.grad = _orthogonal_rows(
            before[0], torch.randn(channel.shape, generator=gen, dtype=F64)
        )
        layer.grad = _layer_only(
            before[1],
            torch.randn(layer.shape, generator=gen, dtype=F64),
            torch.randn(5, generator=gen, dtype=F64),
        )
        opt.step()
        for weight, old, rows in ((channel, before[0], 4), (layer, before[1], 1)):
            delta = (weight.detach() - old).reshape(rows, -1)
            unit = old.reshape(rows, -1) / old.reshape(rows, -1).norm(dim=1, keepdim=True)
            radial = (unit * delta).sum(1)
            assert (radial.abs() <= 1e-7 * delta.norm(dim=1)).all(), radial
            torch.testing.assert_close(
                weight.detach().reshape(rows, -1).norm(dim=1) ** 2,
                old.reshape(rows, -1).norm(dim=1) ** 2 + delta.norm(dim=1) ** 2,
                rtol=1e-7, atol=0,
            )  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_exactly_scale_invariant_loss_fires(seed: int) -> None:
    """L(cW) = L(W) ⇒ ⟨∇L, W⟩ = 0: the test fires (channel-wise invariance: the channel view;
    layer-wise invariance: at least the layer view). A loss that is not invariant does not."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 10, generator=gen, dtype=F64)
    target = torch.randn(8, 10, generator=gen, dtype=F64)

    def grad_of(loss_fn: Any, weight: torch.Tensor) -> torch.Tensor:
        w = weight.clone().requires_grad_()
        loss_fn(w).backward()
        assert w.grad is not None
        return w.grad

    weight = torch.randn(8, 6, generator=gen, dtype=F64)
    per_row = grad_of(lambda w: torch.sin(F.normalize(w, dim=1) @ x - target).sum(), weight)
    whole = grad_of(lambda w: torch.sin(w / w.norm() @ x - target).sum(), weight)
    plain = grad_of(lambda w: (w @ x - target).pow(2).sum() + 3.0 * w.pow(2).sum(), weight)
    assert _channel_fires(weight, per_row, 0.1)
    assert bool(is_scale_invariant(weight, per_row, delta=0.1, eps=1e-8))
    assert bool(is_scale_invariant(weight, whole, delta=0.1, eps=1e-8))
    assert not bool(is_scale_invariant(weight, plain, delta=0.1, eps=1e-8))
    # Through the optimizer: the projected update leaves the loss's invariance direction alone.
    _, ratio = radial_projection(
        weight,
        whole,
        torch.randn(8, 6, generator=gen, dtype=F64),
        delta=0.1,
        wd_ratio=0.25,
        eps=1e-8,
    )
    assert float(ratio) == 0.25


# ---------------------------------------------------------------------------- the transform
STRATEGIES = {
    "public": radial_projection,
    "branching": projection_module._branching,
    "branch_free": projection_module._branch_free,
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_transform_matches_reference_projection_bitwise(strategy: str) -> None:
    """radial_projection returns exactly what adamp's ``_projection`` returns (float32 and
    float64, both views, fired and not), without modifying its inputs, in both evaluation
    strategies (eager CPU branching, and the branch-free one that compiled code uses)."""
    project = STRATEGIES[strategy]
    ref = reference.AdamP([nn.Parameter(torch.zeros(1))])
    gen = torch.Generator().manual_seed(0)
    for dtype, shape in itertools.product((torch.float32, F64), ((4, 3, 2, 2), (6, 5), (1, 7))):
        w = torch.randn(shape, generator=gen, dtype=dtype)
        cases = {
            "channel": _orthogonal_rows(w, torch.randn(shape, generator=gen, dtype=dtype)),
            "layer": _layer_only(
                w,
                torch.randn(shape, generator=gen, dtype=dtype),
                torch.randn(shape[0], generator=gen, dtype=dtype),
            ),
            "random": torch.randn(shape, generator=gen, dtype=dtype),
            "aligned": 2 * w + 0.01 * torch.randn(shape, generator=gen, dtype=dtype),
        }
        for name, g in cases.items():
            u = torch.randn(shape, generator=gen, dtype=dtype)
            u_copy, g_copy, w_copy = u.clone(), g.clone(), w.clone()
            expected_u, expected_ratio = ref._projection(w, g, u.clone(), 0.1, 0.3, 1e-8)
            got_u, got_ratio = project(w, g, u, delta=0.1, wd_ratio=0.3, eps=1e-8)
            assert torch.equal(got_u, expected_u), (dtype, shape, name)
            assert float(got_ratio) == expected_ratio, (dtype, shape, name)
            assert torch.equal(u, u_copy) and torch.equal(g, g_copy) and torch.equal(w, w_copy)
            if name in ("channel", "layer"):
                assert expected_ratio == 0.3, (dtype, shape, name)
            elif name == "aligned":
                assert expected_ratio == 1, (dtype, shape, name)


def test_transform_passes_through_vectors_and_empty_tensors() -> None:
    for shape in ((5,), (), (0, 3), (3, 0), (2, 0, 4)):
        w, g, u = torch.ones(shape), torch.ones(shape), torch.ones(shape)
        out, ratio = radial_projection(w, g, u, delta=1e9, wd_ratio=0.1, eps=1e-8)
        assert out is u and ratio == 1.0
        assert not bool(is_scale_invariant(w, g, delta=1e9, eps=1e-8))


def test_transform_handles_non_contiguous_weights() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 6, generator=gen, dtype=F64).t()  # (6, 5), not contiguous
    g = (
        _orthogonal_rows(w.contiguous(), torch.randn(6, 5, generator=gen, dtype=F64))
        .t()
        .contiguous()
        .t()
    )
    u = torch.randn(5, 6, generator=gen, dtype=F64).t()
    assert not w.is_contiguous() and not u.is_contiguous()
    got, ratio = radial_projection(w, g, u, delta=0.1, wd_ratio=0.1, eps=1e-8)
    expected, expected_ratio = radial_projection(
        w.contiguous(), g.contiguous(), u.contiguous(), delta=0.1, wd_ratio=0.1, eps=1e-8
    )
    assert float(ratio) == float(expected_ratio) == 0.1
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_transform_accepts_tensor_hyperparameters(strategy: str) -> None:
    """0-d tensor δ, wd_ratio, ε (the compiled path's inputs) give the float results."""
    project = STRATEGIES[strategy]
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(4, 5, generator=gen, dtype=F64)
    g = _orthogonal_rows(w, torch.randn(4, 5, generator=gen, dtype=F64))
    u = torch.randn(4, 5, generator=gen, dtype=F64)
    as_float = project(w, g, u, delta=0.1, wd_ratio=0.2, eps=1e-8)

    def t(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=F64)

    as_tensor = project(w, g, u, delta=t(0.1), wd_ratio=t(0.2), eps=t(1e-8))
    torch.testing.assert_close(as_tensor[0], as_float[0], rtol=0, atol=0)
    assert float(as_tensor[1]) == float(as_float[1]) == 0.2


# ---------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (AdamP, dict(lr=1e-2, weight_decay=0.1, nesterov=True)),
        (AdamP, dict(lr=1e-2, weight_decay=0.1)),
        (SGDP, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
        (SGDP, dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)),
    ],
)
def test_grad_is_not_mutated(cls: type, config: dict[str, Any], impl: str) -> None:
    """p.grad keeps its identity and values (with maximize, decay and a firing projection)."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(4, 5, generator=gen, dtype=F64).requires_grad_()
    b = torch.randn(5, generator=gen, dtype=F64).requires_grad_()
    opt = cls([w, b], maximize=True, **config, **IMPLS[impl])
    for _ in range(3):
        grads = [
            _orthogonal_rows(w.detach(), torch.randn(4, 5, generator=gen, dtype=F64)),
            torch.randn(5, generator=gen, dtype=F64),
        ]
        w.grad, b.grad = grads[0].clone(), grads[1].clone()
        held = [w.grad, b.grad]
        opt.step()
        assert w.grad is held[0] and b.grad is held[1]
        assert torch.equal(w.grad, grads[0]) and torch.equal(b.grad, grads[1])


@pytest.mark.parametrize("cls", [AdamP, SGDP])
@pytest.mark.parametrize("impl", IMPLS)
def test_non_contiguous_and_empty_params(cls: type, impl: str) -> None:
    """A transposed (non-contiguous) weight steps like its contiguous copy under the reference
    (which needs ``view``); zero-size weights are accepted and left alone."""
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(5, 6, generator=gen, dtype=F64)
    ours = (
        base.t().clone(memory_format=torch.preserve_format).requires_grad_()
    )  # (6, 5) non-contiguous
    assert not ours.is_contiguous()
    theirs = nn.Parameter(base.t().contiguous())
    empties = [
        torch.zeros(0, 3, dtype=F64, requires_grad=True),
        torch.zeros(3, 0, dtype=F64, requires_grad=True),
    ]
    kwargs = (
        dict(lr=1e-2, weight_decay=0.1)
        if cls is AdamP
        else dict(lr=0.1, momentum=0.9, weight_decay=0.1)
    )
    opt = cls([ours, *empties], **kwargs, **IMPLS[impl])
    ref = (reference.AdamP if cls is AdamP else reference.SGDP)([theirs], **kwargs)
    for step in range(10):
        g = (
            theirs.detach()
            if step % 4 == 3
            else _orthogonal_rows(theirs.detach(), torch.randn(6, 5, generator=gen, dtype=F64))
        )
        ours.grad, theirs.grad = g.clone(), g.clone()
        for e in empties:
            e.grad = torch.zeros_like(e)
        opt.step()
        ref.step()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-7, atol=1e-9)
    assert all(e.shape in ((0, 3), (3, 0)) for e in empties)


def test_sgdp_projects_its_momentum_buffer_like_the_reference() -> None:
    """Without nesterov the stored buffer is the projected direction (the reference's d_p aliases
    the buffer); with nesterov it is the plain momentum."""
    gen = torch.Generator().manual_seed(6)
    w0 = torch.randn(4, 5, generator=gen, dtype=F64)
    g = _orthogonal_rows(w0, torch.randn(4, 5, generator=gen, dtype=F64)) + 1e-3 * w0
    for nesterov in (False, True):
        w = w0.clone().requires_grad_()
        opt = SGDP([w], lr=0.1, momentum=0.9, nesterov=nesterov, delta=1.0)
        w.grad = g.clone()
        opt.step()
        buf = opt.state[w]["momentum"]
        radial = (F.normalize(w0, dim=1) * buf).sum(1).abs().max()
        assert (radial < 1e-9) if not nesterov else (radial > 1e-4)


def test_sgdp_requires_lr_and_validates() -> None:
    w = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="required hyper-parameter 'lr'"):
        SGDP([w])
    SGDP([w], lr=0.1, nesterov=True)  # momentum = 0 with nesterov: accepted, as in the reference
    SGDP([w], lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match=r"Invalid momentum: 1\.0"):
        SGDP([w], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"Invalid wd_ratio"):
        AdamP([{"params": [w], "wd_ratio": -1.0}])


def test_defaults_match_reference() -> None:
    w = torch.zeros(2, 3, requires_grad=True)
    ours, theirs = AdamP([w]).defaults, reference.AdamP([w]).defaults
    assert {k: ours[k] for k in theirs} == theirs
    ours, theirs = SGDP([w], lr=0.1).defaults, reference.SGDP([w], lr=0.1).defaults
    assert {k: ours[k] for k in theirs} == theirs


def test_docstring_examples() -> None:
    for module in (adamp_module, projection_module):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted > 0 and failed == 0, module.__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_screened_decision_equals_exact_near_threshold(dtype: torch.dtype) -> None:
    """The cheap pre-screen in the eager projection never changes a decision, even for
    gradients whose channel cosine sits just above or below the threshold δ/√n."""
    from gradkit.transforms._radial_projection import _branch_free, _branching

    gen = torch.Generator().manual_seed(3)
    delta, eps = 0.1, 1e-8
    for scale in (0.9, 0.99, 0.999, 1.0, 1.001, 1.01, 1.1, 1.5):
        w = torch.randn(8, 64, generator=gen, dtype=dtype)
        noise = torch.randn(8, 64, generator=gen, dtype=dtype)
        noise -= (noise * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
        noise /= noise.norm(dim=1, keepdim=True)
        cos = scale * delta / 64**0.5  # every row's cosine at `scale` × threshold
        g = cos * w / w.norm(dim=1, keepdim=True) + (1 - cos**2) ** 0.5 * noise
        u = torch.randn(8, 64, generator=gen, dtype=dtype)
        got, got_ratio = _branching(w, g, u, delta=delta, wd_ratio=0.1, eps=eps)
        want, want_ratio = _branch_free(w, g, u, delta=delta, wd_ratio=0.1, eps=eps)
        assert float(got_ratio) == float(want_ratio), scale
        assert torch.equal(got, want), scale
