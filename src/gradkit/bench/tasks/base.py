"""What a benchmark task is: something that trains with one method and one seed.

A task is the part of a suite that knows how to train. Its hooks, called by the engine
(:mod:`gradkit.bench.runner`):

* :meth:`Task.default_steps`, :meth:`Task.hyperparams`, :meth:`Task.variants`: what to run;
* :meth:`Task.prepare`: once before the task's trials (for example one simulation that runs
  all of them together, as the ``fed`` suite's Flower run does);
* :meth:`Task.run`: the training of one trial, returning an :class:`Outcome` with the loss
  curve, the task's extra metrics and its artifacts (kept in ``results.json`` for the plots);
* :meth:`Task.info`: the description stored in ``results.json`` (called after the trials).

A task is generic in the method kind it trains (``Task[Method]`` for optimizers,
``Task[AggregatorMethod]``...).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from gradkit.bench.methods import BenchMethod, Method
from gradkit.bench.results import TaskInfo

#: The method kind a task trains.
M = TypeVar("M", bound=BenchMethod)

__all__ = ["Outcome", "Task", "Trial"]


@dataclass(frozen=True)
class Outcome:
    """What one run of a task produced (the runner adds names, seed and timing).

    Attributes:
        final_loss: the task's final loss (non-finite or ``None`` if the run diverged).
        curve: the loss observed at every step (see :attr:`Task.curve_doc`).
        accuracy: final test accuracy in [0, 1], classification tasks only.
        metrics: named task-specific figures.
        status: ``"ok"``, ``"diverged"``, or ``"error"`` with :attr:`error` (the runner also
            sets ``"error"`` itself when :meth:`Task.run` raises).
        eval_curve: ``(step, held-out loss)`` pairs, for tasks that evaluate during training.
        artifacts: plain-JSON data the task's plots need (stored in the record).
        steps: steps actually taken, when they differ from the task's step count (a
            federated method that runs fewer rounds); ``None``: the task's.
        wall_time_s: the run's own timing, when the engine's timer does not measure it (runs
            done together in :meth:`Task.prepare`); ``None``: the engine times :meth:`Task.run`.
        error: why the run failed (with status ``"error"``).
    """

    final_loss: float | None
    curve: list[float]
    accuracy: float | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    status: str = "ok"
    eval_curve: Sequence[tuple[int, float | None]] = ()
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    steps: int | None = None
    wall_time_s: float | None = None
    error: str | None = None


class Task(abc.ABC, Generic[M]):
    """A benchmark task. Subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: short identifier used on the command line.
        description: one sentence for the report.
        loss_name: what ``final_loss`` measures (``"F(x)"``, ``"train loss"``...).
        deterministic: the result does not depend on the seed (run once, with the first seed).
        metrics: keys of :attr:`Outcome.metrics` that the report tabulates.
        higher_is_better: for each tabulated metric (and ``"accuracy"``), its direction.
        optimum: the known minimum of the loss, ``None`` if unknown.
    """

    name: str = ""
    description: str = ""
    loss_name: str = "loss"
    deterministic: bool = False
    metrics: tuple[str, ...] = ()
    higher_is_better: ClassVar[Mapping[str, bool]] = {}
    optimum: float | None = None
    #: What the tuning protocol optimises: ``"final_loss"``, ``"accuracy"`` or a metric key;
    #: its direction comes from :attr:`higher_is_better` (lower is better by default).
    objective: ClassVar[str] = "final_loss"
    #: Typical seconds per run at the default step count on 2 CPU threads (the estimate the
    #: bench prints before it starts); ``None``: unknown.
    seconds_per_run: ClassVar[float | None] = None
    #: Whether :meth:`run` calls a method's curvature ``refresh`` hook (a second-order method
    #: such as Sophia is refused on tasks that do not).
    supports_refresh: ClassVar[bool] = False

    @abc.abstractmethod
    def default_steps(self, smoke: bool) -> int:
        """Optimizer steps per run when the user does not override them."""

    @abc.abstractmethod
    def hyperparams(self, method: M) -> dict[str, Any]:
        """The requested hyper-parameters for ``method`` (filtered by :meth:`Method.build`)."""

    @abc.abstractmethod
    def run(self, method: M, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Train with ``method`` for ``steps`` steps; returns the outcome and the optimizer's
        keyword arguments as actually used. Global RNGs are already seeded with ``seed``."""

    def prepare(self, trials: Sequence[Trial], note: Callable[[str], None]) -> None:
        """Called once with all of this task's trials before the first :meth:`run`.

        The default does nothing. A task whose runs must happen together (one simulation
        for all methods) runs them here and lets :meth:`run` return the stored outcomes;
        ``note(text)`` shows progress text on the engine's progress bar.
        """
        return None

    def variants(self, method: M, smoke: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """Hyper-parameter variants of ``method`` to run, as ``(label, overrides)`` pairs.

        The runner runs every variant with every seed; ``overrides`` are added to the method's
        :attr:`Method.fixed` keyword arguments (so they win over :meth:`hyperparams`) and the
        label is stored in :attr:`Record.variant`. The default is one unnamed variant without
        overrides; a learning-rate grid returns one variant per learning rate.
        """
        return [("", {})]

    def tuned_overrides(self, method: M, params: Mapping[str, Any]) -> dict[str, Any]:
        """The fixed hyper-parameters of a run with the tuner's ``params`` (drawn from the
        method's search space). The default uses them as they are; a task whose settings
        derive from the learning rate (the ``lm`` suite's matrix-group ratio and AdamW side)
        maps them here."""
        return dict(params)

    def info(self, steps: int) -> TaskInfo:
        """The static description stored in ``results.json``."""
        return TaskInfo(
            description=self.description,
            loss_name=self.loss_name,
            steps=steps,
            deterministic=self.deterministic,
            metrics=self.metrics,
            higher_is_better=dict(self.higher_is_better),
            optimum=self.optimum,
        )


def lr_for(
    table: Mapping[str, float], family_default: Mapping[str, float], method: Method
) -> float:
    """The learning rate for ``method``: its entry in ``table``, else its family's default.

    ``family_default`` maps :attr:`Method.family` (``"adaptive"``, ``"momentum"``, ``"other"``)
    to a learning rate; optimizers added to the registry later get their family's rate.
    """
    if method.name in table:
        return table[method.name]
    return family_default.get(method.family, family_default["other"])


@dataclass(frozen=True)
class Trial:
    """One run: a method (with a variant's hyper-parameters) on a task with a seed.

    Attributes:
        task: the task to train.
        method: the method, as resolved by the suite.
        seed: the seed of every global generator.
        steps: optimizer steps (or rounds) to take.
        smoke: the task's smoke form (tiny data).
        variant: the label of the hyper-parameter variant (``""``: none).
        overrides: the variant's hyper-parameters, fixed on top of the task's request.
    """

    task: Task[Any]
    method: BenchMethod
    seed: int
    steps: int
    smoke: bool = False
    variant: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``method (variant) seed N`` for progress text."""
        shown = f"{self.method.name} {self.variant}" if self.variant else self.method.name
        return f"{self.task.name} {shown} seed {self.seed}"
