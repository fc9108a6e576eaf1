"""A tiny character-level GPT on a public-domain English text (the ``lm`` suite's task).

Data: ``gradkit/bench/data/web_gospels.txt`` (shipped with gradkit; the four Gospels and Acts
of the World English Bible, public domain, 545 kB of ASCII, 64 distinct characters; see the
``NOTICE`` next to it). Characters are the tokens (vocabulary: the characters of the file,
sorted). Fixed split: the first 90 % of the characters train, the last 10 % validate.

Model (:class:`CharGPT`): token + learned position embeddings, ``n_layer`` pre-LayerNorm
blocks ``x + attn(LN(x))``, ``x + MLP(LN(x))`` with causal multi-head self-attention
(``scaled_dot_product_attention``) and a GELU MLP of width 4·d, a final LayerNorm and an
untied linear LM head. Default: d = 96, 3 layers, 4 heads, context 64: about 0.35 M parameters.

Training (:class:`CharGPTTask`): batches of random windows of the training text, drawn from a
generator seeded by the run's seed (every method sees the same batches for the same seed),
next-character cross-entropy, a constant learning rate after a linear warm-up, gradient-norm
clipping at 1.0 for every method. The validation loss is the mean cross-entropy over a fixed
set of validation windows, evaluated every ``eval_every`` steps and at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.bench.methods import Method
from gradkit.bench.routing import optimizer_state_bytes
from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.training import train_steps

__all__ = [
    "DATA_FILE",
    "CharData",
    "CharGPT",
    "CharGPTTask",
    "GPTConfig",
    "LMSettings",
    "evaluate",
    "fixed_windows",
    "lm_loss",
    "load_char_data",
    "lr_factor",
    "random_windows",
    "read_text",
    "sophia_win_rate",
]

#: The text file inside the ``gradkit.bench`` package (``gradkit/bench/data``).
DATA_FILE = "web_gospels.txt"
#: Fraction of the characters used for training (the rest validates).
TRAIN_FRACTION = 0.9


def read_text(name: str = DATA_FILE) -> str:
    """The text of ``gradkit/bench/data/<name>`` from the installed package."""
    path = resources.files("gradkit.bench").joinpath("data", name)
    if not path.is_file():
        raise FileNotFoundError(
            f"gradkit/bench/data/{name} is missing from this gradkit installation; it ships as "
            "package data (reinstall gradkit, or check [tool.setuptools.package-data])"
        )
    return path.read_text(encoding="ascii")


@dataclass(frozen=True)
class CharData:
    """The encoded text: ``train`` and ``val`` 1-D int64 tensors and the vocabulary."""

    train: torch.Tensor
    val: torch.Tensor
    vocab: str

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.vocab)

    def decode(self, ids: torch.Tensor) -> str:
        """Token ids back to text."""
        return "".join(self.vocab[int(i)] for i in ids)


@functools.lru_cache(maxsize=2)
def load_char_data(name: str = DATA_FILE) -> CharData:
    """Encode the text character by character; fixed 90/10 train/validation split (cached)."""
    text = read_text(name)
    vocab = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.int64)
    cut = int(len(ids) * TRAIN_FRACTION)
    return CharData(ids[:cut], ids[cut:], vocab)


def random_windows(
    data: torch.Tensor, batch: int, context: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches ``(x, y)`` of ``batch`` random windows; ``y`` is ``x`` shifted by one."""
    if data.numel() <= context + 1:
        raise ValueError(f"the text ({data.numel()} tokens) is shorter than context + 1")
    offsets = torch.arange(context + 1)
    while True:
        starts = torch.randint(0, data.numel() - context - 1, (batch,), generator=generator)
        chunk = data[starts[:, None] + offsets]
        yield chunk[:, :-1], chunk[:, 1:]


@dataclass(frozen=True)
class GPTConfig:
    """Model size: vocabulary, context length, width, depth and heads."""

    vocab_size: int
    context: int = 64
    d_model: int = 96
    n_layer: int = 3
    n_head: int = 4

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused q/k/v projection."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + attn(LN(x))`` then ``x + MLP(LN(x))``."""
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    """Token + position embeddings, pre-LN blocks, final LayerNorm, untied LM head.

    The head is registered last, so routing helpers that treat the last ``nn.Linear`` as the
    output layer find it (:func:`gradkit.optim.matrix_param_groups`).

    Example:
        >>> model = CharGPT(GPTConfig(vocab_size=64))
        >>> 200_000 <= sum(p.numel() for p in model.parameters()) <= 500_000
        True
        >>> model(torch.zeros(2, 8, dtype=torch.long)).shape
        torch.Size([2, 8, 64])
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, w in self.named_parameters():  # GPT-2: residual projections scaled down
            if name.endswith(("attn.proj.weight", ".out.weight")):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab)`` for token ids ``(B, T)``, ``T ≤ context``."""
        t = idx.shape[1]
        if t > self.cfg.context:
            raise ValueError(f"sequence length {t} exceeds the context {self.cfg.context}")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over all positions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> float:
    """Mean cross-entropy of ``model`` on the windows ``x`` → ``y`` (eval mode, restored)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        logits = model(x[i : i + chunk])
        total += float(lm_loss(logits, y[i : i + chunk])) * logits.shape[0]
    model.train(was_training)
    return total / x.shape[0]


def fixed_windows(data: torch.Tensor, count: int, context: int) -> tuple[Any, Any]:
    """``count`` evenly spaced windows of ``data`` (the same for every run)."""
    span = data.numel() - context - 1
    if count < 1 or span < 1:
        raise ValueError(f"cannot take {count} windows of {context} tokens from {data.numel()}")
    starts = torch.linspace(0, span, count).long()
    chunk = data[starts[:, None] + torch.arange(context + 1)]
    return chunk[:, :-1], chunk[:, 1:]


# -- the benchmark task -----------------------------------------------------------------------


@dataclass(frozen=True)
class LMSettings:
    """Training settings of :class:`CharGPTTask` (full run and smoke run)."""

    steps: int = 500
    batch: int = 16
    eval_every: int = 50
    eval_windows: int = 256
    warmup_frac: float = 0.05
    final_lr_frac: float = 0.1
    clip_grad_norm: float = 1.0
    train_tail: int = 20


def lr_factor(step: int, total: int, warmup: int, final_frac: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``final_frac`` at ``total``.

    ``step`` counts the steps already taken (the factor for the next step).

    Example:
        >>> [round(lr_factor(k, 10, 2, 0.1), 3) for k in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def sophia_win_rate(optimizer: Any) -> float | None:
    """Fraction of coordinates where Sophia's step is not clipped, ``|m| < ρ·bs·h`` (the
    official README's tuning target is 0.1–0.5); ``None`` for other optimizers."""
    hits = total = 0
    for group in getattr(optimizer, "param_groups", []):
        if "rho" not in group or "bs" not in group:
            continue
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "exp_avg" in state and "hessian" in state:
                bound = float(group["rho"]) * float(group["bs"]) * state["hessian"]
                hits += int((state["exp_avg"].abs() < bound).sum())
                total += state["exp_avg"].numel()
    return hits / total if total else None


class CharGPTTask(Task[Method]):
    """Train :class:`CharGPT` on the shipped text with one method and one learning rate.

    Calls a method's curvature ``refresh`` every ``refresh_every`` steps on a separate batch
    (:attr:`supports_refresh`).

    Args:
        name: task name.
        config: model size (the vocabulary size is filled in from the data).
        settings / smoke_settings: training settings of the full and the smoke run.
        grid: method → the learning rates of its grid (:meth:`variants`); smoke runs use the
            middle one only.
        hyperparams_for: ``(method, lr) → requested hyper-parameters`` (including ``"aux"`` for
            the AdamW side of routed methods).
    """

    supports_refresh = True

    loss_name = "validation loss"
    deterministic = False
    seconds_per_run = 20.0  # measured on the 2-core machine, quiet, incl. the study database
    metrics = ("train_loss", "opt_state_mib", "ms_per_step")
    higher_is_better: ClassVar[Mapping[str, bool]] = {
        "train_loss": False,
        "opt_state_mib": False,
        "ms_per_step": False,
    }

    def __init__(
        self,
        name: str,
        config: GPTConfig,
        settings: LMSettings,
        smoke_settings: LMSettings,
        grid: Callable[[Method], Sequence[float]],
        hyperparams_for: Callable[[Method, float], dict[str, Any]],
    ) -> None:
        self.name = name
        self.config = config
        self.settings, self.smoke_settings = settings, smoke_settings
        self._grid, self._hyperparams_for = grid, hyperparams_for
        s = settings
        self.description = (
            f"character-level GPT (d={config.d_model}, {config.n_layer} layers, "
            f"{config.n_head} heads, context {config.context}) on {DATA_FILE} (public domain, "
            f"90/10 split); batch {s.batch}×{config.context} tokens, warm-up "
            f"{s.warmup_frac:.0%} then cosine to {s.final_lr_frac:g}×lr, gradient clipping "
            f"{s.clip_grad_norm:g}; validation loss on {s.eval_windows} fixed windows every "
            f"{s.eval_every} steps; opt_state_mib = optimizer state (MiB, params excluded)"
        )

    def _settings(self, smoke: bool) -> LMSettings:
        return self.smoke_settings if smoke else self.settings

    def default_steps(self, smoke: bool) -> int:
        """Optimizer steps per run."""
        return self._settings(smoke).steps

    def hyperparams(self, method: Method) -> dict[str, Any]:
        """The hyper-parameters at the middle learning rate of ``method``'s grid."""
        grid = list(self._grid(method))
        return self._hyperparams_for(method, grid[len(grid) // 2])

    def variants(self, method: Method, smoke: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """One variant per learning rate of ``method``'s grid (label ``lr=<value>``); the
        middle one only in smoke mode."""
        grid = list(self._grid(method))
        if smoke:
            grid = [grid[len(grid) // 2]]
        return [(f"lr={lr:g}", self._filtered(method, lr)) for lr in grid]

    def tuned_overrides(self, method: Method, params: Mapping[str, Any]) -> dict[str, Any]:
        """The tuner's ``lr`` is the suite's η: every setting that derives from it (the matrix
        group's 0.2·η, the AdamW side's η) follows, as on the grid; other drawn knobs (SophiaG's
        ρ) are used as they are."""
        rest = {k: v for k, v in params.items() if k != "lr"}
        if "lr" not in params:
            return rest
        return {**self._filtered(method, float(params["lr"])), **rest}

    def _filtered(self, method: Method, lr: float) -> dict[str, Any]:
        wanted = self._hyperparams_for(method, lr)
        out = {k: v for k, v in wanted.items() if method.accepts(k)}
        if method.routing is not None and "aux" in wanted:
            out["aux"] = wanted["aux"]
        return out

    def model(self) -> CharGPT:
        """A fresh model (initialised from the global RNG)."""
        data = load_char_data()
        return CharGPT(dataclasses.replace(self.config, vocab_size=data.vocab_size))

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Train, evaluating every ``eval_every`` steps and at the end."""
        s = self._settings(smoke)
        data = load_char_data()
        context = self.config.context
        model = self.model()
        optimizer, used = method.build_for_model(model, self.hyperparams(method))
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        warmup = max(1, round(s.warmup_frac * steps))

        def set_lr(k: int) -> None:
            factor = lr_factor(k, steps, warmup, s.final_lr_frac)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor

        x_val, y_val = fixed_windows(data.val, s.eval_windows, context)
        batches = random_windows(data.train, s.batch, context, torch.Generator().manual_seed(seed))
        refresh_batches = random_windows(
            data.train, s.batch, context, torch.Generator().manual_seed(seed + 1_000_003)
        )
        eval_curve: list[tuple[int, float | None]] = [(0, evaluate(model, x_val, y_val))]
        eval_seconds = 0.0

        def after_step(k: int, batch: Any) -> None:
            nonlocal eval_seconds
            if method.refresh is not None and k % method.refresh_every == 0:
                method.refresh(optimizer, model, next(refresh_batches))
            if k % s.eval_every == 0 or k == steps:
                t0 = time.perf_counter()
                eval_curve.append((k, evaluate(model, x_val, y_val)))
                eval_seconds += time.perf_counter() - t0
            set_lr(k)

        set_lr(0)
        start = time.perf_counter()
        curve, status = train_steps(
            model,
            optimizer,
            batches,
            lm_loss,
            steps,
            clip_grad_norm=s.clip_grad_norm,
            after_step=after_step,
        )
        elapsed = time.perf_counter() - start - eval_seconds  # training (and refresh) only
        final = eval_curve[-1][1] if status == "ok" and eval_curve[-1][0] == steps else None
        if final is not None and not math.isfinite(final):
            final, status = None, "diverged"
        tail = curve[-s.train_tail :]
        metrics: dict[str, float | None] = {
            "train_loss": sum(tail) / len(tail) if tail and status == "ok" else None,
            "opt_state_mib": optimizer_state_bytes(optimizer) / 2**20,
            "ms_per_step": 1000 * elapsed / max(1, len(curve)),
            "params": float(sum(p.numel() for p in model.parameters())),
        }
        rate = sophia_win_rate(optimizer)
        if rate is not None:
            metrics["win_rate"] = rate
        outcome = Outcome(final, curve, metrics=metrics, status=status, eval_curve=eval_curve)
        return outcome, used
