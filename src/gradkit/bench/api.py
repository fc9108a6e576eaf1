"""``compare``: run the benchmark's comparison on your own model and data loader."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from gradkit.bench.errors import BenchConfigError
from gradkit.bench.methods import Method, resolve_methods
from gradkit.bench.results import BenchResults
from gradkit.bench.runner import normalize_seeds, normalize_steps, run_tasks
from gradkit.bench.runtime import DEFAULT_THREADS
from gradkit.bench.tasks.base import Outcome, Task
from gradkit.bench.training import cycle_batches, train_steps

__all__ = ["DEFAULT_LR", "DEFAULT_TRIALS", "UserTask", "compare", "make_task"]

#: Tuning trials per method of :func:`compare` when it is given no learning rate.
DEFAULT_TRIALS = 8

#: Learning rate per :attr:`Method.family` when the caller gives none.
DEFAULT_LR = {"adaptive": 1e-3, "momentum": 1e-2, "other": 1e-3}

#: Minibatch losses averaged for ``final_loss`` when ``eval_fn`` gives no ``"loss"``.
TAIL = 10

#: Steps of a :func:`make_task` task under ``--smoke`` (at most), unless it says otherwise.
SMOKE_STEPS = 20


class UserTask(Task[Method]):
    """A task made of a user's model factory, data loader and loss (see :func:`make_task` and
    :func:`compare`)."""

    deterministic = False

    def __init__(
        self,
        name: str,
        model_fn: Callable[[], torch.nn.Module],
        loader: Iterable[Any],
        loss_fn: Callable[[Any, Any], torch.Tensor],
        steps: int,
        lr: float | Mapping[str, float] | None,
        optimizer_kwargs: Mapping[str, Mapping[str, Any]],
        eval_fn: Callable[[torch.nn.Module], float | Mapping[str, float]] | None,
        device: torch.device | str | None,
        *,
        smoke_steps: int | None = None,
        objective: str = "final_loss",
        metrics: Sequence[str] = (),
        higher_is_better: Mapping[str, bool] | None = None,
        description: str | None = None,
        seconds_per_run: float | None = None,
    ) -> None:
        self.name = name
        self.description = description or f"user task {name!r}"
        self.loss_name = "loss"
        self._model_fn, self._loader, self._loss_fn = model_fn, loader, loss_fn
        self._steps, self._lr, self._kwargs = steps, lr, optimizer_kwargs
        self._eval_fn, self._device = eval_fn, device
        self._smoke_steps = min(steps, SMOKE_STEPS) if smoke_steps is None else smoke_steps
        self.metrics = tuple(metrics)
        # per-instance values of what Task declares per class
        vars(self).update(
            objective=objective,
            higher_is_better={"accuracy": True, **(higher_is_better or {})},
            seconds_per_run=seconds_per_run,
        )

    def default_steps(self, smoke: bool) -> int:
        """The ``steps`` given (``smoke_steps`` in smoke mode)."""
        return self._smoke_steps if smoke else self._steps

    def hyperparams(self, method: Method) -> dict[str, Any]:
        """``lr`` (given or the family default), momentum 0.9 where accepted, then the user's
        per-method keyword arguments."""
        if isinstance(self._lr, Mapping):
            lr = self._lr.get(method.name, DEFAULT_LR.get(method.family, DEFAULT_LR["other"]))
        elif self._lr is not None:
            lr = self._lr
        else:
            lr = DEFAULT_LR.get(method.family, DEFAULT_LR["other"])
        return {"lr": lr, "momentum": 0.9, **self._kwargs.get(method.name, {})}

    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Build the model (global RNG already seeded), train, then evaluate."""
        model = self._model_fn()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model_fn must return a torch.nn.Module, got {type(model).__name__}")
        if self._device is not None:
            model = model.to(self._device)
        optimizer, used = method.build(model.parameters(), self.hyperparams(method))
        curve, status = train_steps(
            model, optimizer, cycle_batches(self._loader), self._loss_fn, steps, self._device
        )
        tail = [v for v in curve[-TAIL:] if math.isfinite(v)]
        final: float | None = sum(tail) / len(tail) if tail and status == "ok" else None
        accuracy = None
        metrics: dict[str, float | None] = {}
        if self._eval_fn is not None and status == "ok":
            model.eval()
            with torch.no_grad():
                evaluated = self._eval_fn(model)
            if isinstance(evaluated, Mapping):
                for key, value in evaluated.items():
                    if key == "loss":
                        final = float(value)
                    elif key == "accuracy":
                        accuracy = float(value)
                    else:
                        metrics[str(key)] = float(value)
            else:
                metrics["eval"] = float(evaluated)
        return Outcome(final, curve, accuracy=accuracy, metrics=metrics, status=status), used


def make_task(
    name: str,
    model_fn: Callable[[], torch.nn.Module],
    train_loader: Iterable[Any],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    steps: int = 100,
    eval_fn: Callable[[torch.nn.Module], float | Mapping[str, float]] | None = None,
    objective: str = "final_loss",
    metrics: Sequence[str] = (),
    higher_is_better: Mapping[str, bool] | None = None,
    lr: float | Mapping[str, float] | None = None,
    optimizer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    smoke_steps: int | None = None,
    device: torch.device | str | None = None,
    description: str | None = None,
    seconds_per_run: float | None = None,
) -> UserTask:
    """A bench task from your model, data and loss, for ``gradkit bench --task`` and config
    files: return it from a factory ``make_task()`` in your module.

    Each run seeds every generator, calls ``model_fn()``, builds the method's optimizer on the
    model's parameters and takes ``steps`` steps on batches of ``train_loader`` (re-iterated
    when exhausted), then calls ``eval_fn(model)`` in eval mode under ``torch.no_grad()``. The
    tuner draws the hyper-parameters it tunes (the learning rate...); the others come from
    ``lr`` and ``optimizer_kwargs`` as in :func:`compare`.

    Args:
        name: the task's name in the report (no ``:``).
        model_fn: builds a fresh ``torch.nn.Module`` (called once per run).
        train_loader: iterable of ``(inputs, targets)`` batches, such as a ``DataLoader``.
        loss_fn: ``loss_fn(model(inputs), targets)`` → scalar tensor.
        steps: optimizer steps per run (``gradkit bench --steps`` overrides it).
        eval_fn: after training: a mapping with ``"loss"`` (becomes ``final_loss``),
            ``"accuracy"`` (in [0, 1]) and other named figures (go to ``metrics``), or one
            number (``metrics["eval"]``). Without a ``"loss"``, ``final_loss`` is the mean of
            the last 10 minibatch losses.
        objective: what tuning optimises: ``"final_loss"`` (default, minimised),
            ``"accuracy"`` (maximised) or one of ``eval_fn``'s figures (added to ``metrics``).
        metrics: ``eval_fn`` figures the report tabulates.
        higher_is_better: the direction of each figure (``accuracy``: higher; others lower
            unless said here).
        lr: learning rate of untuned runs (``--trials 0``): one value or per method; default
            1e-3 for Adam-like methods, 1e-2 for momentum methods.
        optimizer_kwargs: fixed constructor arguments per method name, such as
            ``{"adamw": {"weight_decay": 0.05}}`` (the tuner's draws win over them).
        smoke_steps: steps under ``--smoke`` (default ``min(steps, 20)``).
        device: move the model and batches there.
        description: one sentence for the report.
        seconds_per_run: typical seconds per run at ``steps`` (the estimate printed before a
            run starts); ``None``: unknown.

    Raises:
        BenchConfigError: a bad name, steps or objective.
        TypeError: a non-callable ``model_fn``/``loss_fn``/``eval_fn`` or a ``train_loader``
            that is not iterable.

    Example:
        >>> import torch
        >>> x = torch.randn(64, 3)
        >>> batches = [(x[i : i + 16], x[i : i + 16].sum(1, keepdim=True)) for i in (0, 16)]
        >>> task = make_task("sum3", lambda: torch.nn.Linear(3, 1), batches,
        ...                  torch.nn.functional.mse_loss, steps=30)
        >>> (task.name, task.default_steps(False), task.default_steps(True), task.objective)
        ('sum3', 30, 20, 'final_loss')
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise BenchConfigError(f"a task name must be a non-empty string without ':', got {name!r}")
    for what, fn in (("model_fn", model_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"{what} must be callable, got {type(fn).__name__}")
    if eval_fn is not None and not callable(eval_fn):
        raise TypeError(f"eval_fn must be callable or None, got {type(eval_fn).__name__}")
    if not isinstance(train_loader, Iterable):
        raise TypeError(f"train_loader must be iterable, got {type(train_loader).__name__}")
    checked = normalize_steps(steps)
    if checked is None:
        raise BenchConfigError("steps must be given")
    smoke = normalize_steps(smoke_steps)
    if not isinstance(objective, str) or not objective:
        raise BenchConfigError(f"objective must be a non-empty string, got {objective!r}")
    shown = list(metrics)
    if objective not in ("final_loss", "accuracy", *shown):
        shown.append(objective)
    return UserTask(
        name.strip(), model_fn, train_loader, loss_fn, checked, lr,
        {k.lower(): dict(v) for k, v in (optimizer_kwargs or {}).items()}, eval_fn, device,
        smoke_steps=smoke, objective=objective, metrics=shown,
        higher_is_better=higher_is_better, description=description,
        seconds_per_run=seconds_per_run,
    )  # fmt: skip


def _check_kwargs(methods: Sequence[Method], kwargs: Mapping[str, Mapping[str, Any]]) -> None:
    """Reject per-method arguments for unselected methods or that the optimizer lacks."""
    names = {m.name: m for m in methods}
    for name, given in kwargs.items():
        if name not in names:
            raise BenchConfigError(
                f"optimizer_kwargs names {name!r}, which is not among the selected optimizers "
                f"({', '.join(names)})"
            )
        bad = [k for k in given if not names[name].accepts(k)]
        if bad:
            raise BenchConfigError(f"{name} does not accept argument(s) {', '.join(bad)}")


def compare(
    model_fn: Callable[[], torch.nn.Module],
    train_loader: Iterable[Any],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizers: str | Sequence[str | type | Callable[..., Any] | Method] = ("sgd", "adam"),
    *,
    steps: int = 100,
    seeds: int | Sequence[int] = 1,
    lr: float | Mapping[str, float] | None = None,
    optimizer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    eval_fn: Callable[[torch.nn.Module], float | Mapping[str, float]] | None = None,
    out: str | os.PathLike[str] | None = None,
    task: str = "custom",
    device: torch.device | str | None = None,
    progress: bool = False,
    num_threads: int | None = DEFAULT_THREADS,
    plots: bool = True,
    trials: int | None = None,
) -> BenchResults:
    """Train a fresh model with each optimizer and seed on your data; return the results.

    For every (optimizer, seed): seed Python, NumPy and torch with the seed, call
    ``model_fn()``, then take ``steps`` optimizer steps on batches of ``train_loader``
    (re-iterated when exhausted; a ``DataLoader`` with ``shuffle=True`` draws its order from the
    seeded torch RNG, so runs are reproducible). The same seed gives every optimizer the same
    initial weights.

    Args:
        model_fn: builds the model (called once per run).
        train_loader: iterable of ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(model(inputs), targets)`` → scalar tensor.
        optimizers: the methods, each one of: a name (``sgd`` with momentum 0.9, ``adam``,
            ``adamw`` and every gradkit registry name, see ``gradkit list``); your own
            ``torch.optim.Optimizer`` subclass or factory ``f(params, **hyperparams)``, named
            after the class (lower-cased) or the function (see :func:`user_method`, which also
            takes a ``name``); a ``"module:ClassOrFactory"`` string; a :class:`Method`.
        steps: optimizer steps per run.
        seeds: number of seeds (``N`` → ``0..N-1``) or an explicit list.
        lr: one learning rate for all, or a per-method mapping; the default is 1e-3 for
            methods with ``betas`` and 1e-2 for momentum methods.
        optimizer_kwargs: extra constructor arguments per method, e.g.
            ``{"adamw": {"weight_decay": 0.05}}``.
        eval_fn: ``eval_fn(model)`` after training (eval mode, no grad). A mapping may hold
            ``"loss"`` (becomes ``final_loss``), ``"accuracy"`` (in [0, 1]) and other named
            figures (go to ``metrics``); a plain number is stored as ``metrics["eval"]``. Without
            a ``"loss"``, ``final_loss`` is the mean of the last 10 minibatch losses.
        out: if given, also write the report folder there (``report.md``, ``results.json``,
            plots), atomically.
        task: the task name used in records and the report.
        device: move the model and batches to this device.
        progress: show a progress bar on stderr.
        num_threads: ``torch.set_num_threads`` during the run (``None`` leaves it alone).
        plots: draw loss curves when writing the report.
        trials: tuning trials per method (the equal-budget protocol of ``gradkit bench``,
            :mod:`gradkit.bench.tuning`: Optuna TPE over each method's search space on a
            tuning seed, the best re-run on ``seeds``). Default: :data:`DEFAULT_TRIALS` when
            ``lr`` is not given, ``0`` (the given or family learning rates, untuned) when it
            is. With tuning, a run that raises is recorded as failed instead of raising.

    Raises:
        BenchConfigError: unknown optimizer names, two methods of one name (or a user method
            named like a built-in one), bad seeds or steps, bad ``optimizer_kwargs``.

    Example:
        >>> import torch
        >>> from gradkit.bench import compare
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(64, 3, generator=g)
        >>> y = x @ torch.tensor([1.0, -2.0, 0.5])
        >>> batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
        >>> def mse(out, target):
        ...     return torch.nn.functional.mse_loss(out.squeeze(-1), target)
        >>> res = compare(lambda: torch.nn.Linear(3, 1), batches, mse,
        ...               optimizers=["sgd", "adam"], steps=60, seeds=2, lr=0.05,
        ...               num_threads=1)
        >>> [(r.method, r.seed) for r in res.records]
        [('sgd', 0), ('sgd', 1), ('adam', 0), ('adam', 1)]
        >>> all(r.final_loss < r.curve[0] for r in res.records)
        True
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be callable, got {type(model_fn).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if isinstance(optimizers, str):
        optimizers = [n for n in optimizers.split(",") if n.strip()]
    items = list(optimizers)
    if any(isinstance(o, str) and ":" in o for o in items):
        from gradkit.bench.userland import load_method

        items = [load_method(o) if isinstance(o, str) and ":" in o else o for o in items]
    methods = resolve_methods(items)
    kwargs = dict(optimizer_kwargs or {})
    _check_kwargs(methods, kwargs)
    checked_steps = normalize_steps(steps)
    if checked_steps is None:
        raise BenchConfigError("steps must be given")
    seed_list = normalize_seeds(seeds, 1)
    user_task = UserTask(
        task, model_fn, train_loader, loss_fn, checked_steps, lr, kwargs, eval_fn, device
    )
    budget = (DEFAULT_TRIALS if lr is None else 0) if trials is None else trials
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise BenchConfigError(f"trials must be a non-negative int, got {trials!r}")
    if budget > 0:
        from gradkit.bench.suites.base import Suite

        suite = Suite(
            name="custom",
            description=f"user task {task!r}",
            tasks={user_task.name: user_task},
            default_optimizers=lambda: [m.name for m in methods],
            resolve=lambda names: methods,
        )
        results = suite.run(
            seeds=seed_list, trials=budget, progress=progress, num_threads=num_threads
        )
    else:
        records, infos = run_tasks(
            "custom",
            [user_task],
            methods,
            seed_list,
            progress=progress,
            threads=num_threads,
            catch_errors=False,
        )
        results = BenchResults.assemble(
            suite="custom",
            methods=[m.name for m in methods],
            tasks=infos,
            seeds=seed_list,
            records=records,
            steps=checked_steps,
            num_threads=num_threads,
        )
    if out is not None:
        from gradkit.bench.writer import write_report

        write_report(results, out, plots=plots)
    return results
