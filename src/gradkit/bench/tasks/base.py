"""What a benchmark task is: something that trains with one method and one seed."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gradkit.bench.methods import Method
from gradkit.bench.results import TaskInfo

__all__ = ["Outcome", "Task"]


@dataclass(frozen=True)
class Outcome:
    """What one run of a task produced (the runner adds names, seed and timing).

    Attributes:
        final_loss: the task's final loss (non-finite or ``None`` if the run diverged).
        curve: the loss observed at every step (see :attr:`Task.curve_doc`).
        accuracy: final test accuracy in [0, 1], classification tasks only.
        metrics: named task-specific figures.
        status: ``"ok"`` or ``"diverged"`` (the runner sets ``"error"`` itself).
        eval_curve: ``(step, held-out loss)`` pairs, for tasks that evaluate during training.
    """

    final_loss: float | None
    curve: list[float]
    accuracy: float | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    status: str = "ok"
    eval_curve: Sequence[tuple[int, float | None]] = ()


class Task(abc.ABC):
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

    @abc.abstractmethod
    def default_steps(self, smoke: bool) -> int:
        """Optimizer steps per run when the user does not override them."""

    @abc.abstractmethod
    def hyperparams(self, method: Method) -> dict[str, Any]:
        """The requested hyper-parameters for ``method`` (filtered by :meth:`Method.build`)."""

    @abc.abstractmethod
    def run(self, method: Method, seed: int, steps: int, smoke: bool) -> tuple[Outcome, dict]:
        """Train with ``method`` for ``steps`` steps; returns the outcome and the optimizer's
        keyword arguments as actually used. Global RNGs are already seeded with ``seed``."""

    def variants(self, method: Method, smoke: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """Hyper-parameter variants of ``method`` to run, as ``(label, overrides)`` pairs.

        The runner runs every variant with every seed; ``overrides`` are added to the method's
        :attr:`Method.fixed` keyword arguments (so they win over :meth:`hyperparams`) and the
        label is stored in :attr:`Record.variant`. The default is one unnamed variant without
        overrides; a learning-rate grid returns one variant per learning rate.
        """
        return [("", {})]

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
