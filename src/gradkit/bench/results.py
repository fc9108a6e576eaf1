"""The results object of a benchmark run and its JSON form (``results.json``).

Everything a report shows is computed from a :class:`BenchResults`; rendering (Markdown,
plots) never runs an optimizer. :meth:`BenchResults.to_dict` gives the JSON document below,
:meth:`BenchResults.from_dict` reads it back.

``results.json`` schema, version 3
----------------------------------

Top level: ``schema_version`` (``3``; versions 1 and 2 are still read), ``created_utc``,
``settings`` (:class:`RunSettings`: suite, methods, tasks, evaluation seeds, steps, smoke,
threads, the tuning budget ``trials``, the study ``storage`` and whether the run is
``complete``), ``versions``, ``tasks`` (:class:`TaskInfo` per task), ``records`` (one
:class:`Record` per evaluation run), ``verdicts`` (:class:`Verdict`), ``tuning`` (one
:class:`TuningSummary` per task and method) and ``trials`` (every tuning trial as a
:class:`Record`, curves dropped). Every field is described in ``docs/bench.md`` ("results.json
schema"); each class's ``to_dict`` writes its part.

All floats are finite JSON numbers; NaN and infinities are written as ``null``.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "VERDICTS",
    "BenchResults",
    "Record",
    "RunSettings",
    "TaskInfo",
    "TuningSummary",
    "Verdict",
]

#: Version of the ``results.json`` layout written by :meth:`BenchResults.to_dict`.
SCHEMA_VERSION = 3

#: Versions :meth:`BenchResults.from_dict` reads (version 1 has no record ``artifacts``,
#: version 2 no tuning).
READABLE_VERSIONS = (1, 2, 3)

#: The possible outcomes of a verdict.
VERDICTS = ("holds", "does not hold", "no significant difference", "inconclusive")

STATUSES = ("ok", "diverged", "error", "pruned")


def finite_or_none(value: float | None) -> float | None:
    """``float(value)`` if it is finite, else ``None`` (how non-finite numbers are stored)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class RunSettings:
    """What was asked for: the ``settings`` object of ``results.json``."""

    suite: str
    optimizers: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int | None = None
    smoke: bool = False
    num_threads: int | None = None
    trials: int = 0
    storage: str | None = None
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (lists instead of tuples)."""
        return {
            "suite": self.suite,
            "optimizers": list(self.optimizers),
            "tasks": list(self.tasks),
            "seeds": list(self.seeds),
            "steps": self.steps,
            "smoke": self.smoke,
            "num_threads": self.num_threads,
            "trials": self.trials,
            "storage": self.storage,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Inverse of :meth:`to_dict`."""
        return cls(
            suite=str(data["suite"]),
            optimizers=tuple(data["optimizers"]),
            tasks=tuple(data["tasks"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            steps=data.get("steps"),
            smoke=bool(data.get("smoke", False)),
            num_threads=data.get("num_threads"),
            trials=int(data.get("trials", 0)),
            storage=data.get("storage"),
            complete=bool(data.get("complete", True)),
        )


@dataclass(frozen=True)
class TaskInfo:
    """Static description of a task, stored once per task in ``results.json``."""

    description: str
    loss_name: str = "loss"
    steps: int = 0
    deterministic: bool = False
    metrics: tuple[str, ...] = ()
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    optimum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "description": self.description,
            "loss_name": self.loss_name,
            "steps": self.steps,
            "deterministic": self.deterministic,
            "metrics": list(self.metrics),
            "higher_is_better": dict(self.higher_is_better),
            "optimum": finite_or_none(self.optimum),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            description=str(data["description"]),
            loss_name=str(data.get("loss_name", "loss")),
            steps=int(data.get("steps", 0)),
            deterministic=bool(data.get("deterministic", False)),
            metrics=tuple(data.get("metrics", ())),
            higher_is_better=dict(data.get("higher_is_better", {})),
            optimum=data.get("optimum"),
        )


@dataclass(frozen=True)
class Record:
    """One run of one method on one task with one seed."""

    suite: str
    task: str
    method: str
    seed: int
    final_loss: float | None
    curve: tuple[float | None, ...]
    wall_time_s: float
    steps: int
    accuracy: float | None = None
    curve_stride: int = 1
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    variant: str = ""
    eval_curve: tuple[tuple[int, float | None], ...] = ()
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"record status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; non-finite floats become ``None``. ``variant`` and ``eval_curve``
        are written only when set (so suites without them keep the original record layout)."""
        out = {
            "suite": self.suite,
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "final_loss": finite_or_none(self.final_loss),
            "accuracy": finite_or_none(self.accuracy),
            "wall_time_s": float(self.wall_time_s),
            "steps": self.steps,
            "curve": [finite_or_none(v) for v in self.curve],
            "curve_stride": self.curve_stride,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "hyperparams": _jsonable(self.hyperparams),
        }
        if self.variant:
            out["variant"] = self.variant
        if self.eval_curve:
            out["eval_curve"] = [[int(k), finite_or_none(v)] for k, v in self.eval_curve]
        if self.artifacts:
            out["artifacts"] = _jsonable(self.artifacts)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`."""
        return cls(
            suite=str(data["suite"]),
            task=str(data["task"]),
            method=str(data["method"]),
            seed=int(data["seed"]),
            final_loss=data.get("final_loss"),
            curve=tuple(data.get("curve", ())),
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            steps=int(data.get("steps", 0)),
            accuracy=data.get("accuracy"),
            curve_stride=int(data.get("curve_stride", 1)),
            metrics=dict(data.get("metrics", {})),
            hyperparams=dict(data.get("hyperparams", {})),
            status=str(data.get("status", "ok")),
            error=data.get("error"),
            variant=str(data.get("variant", "")),
            eval_curve=tuple((int(k), v) for k, v in data.get("eval_curve", ())),
            artifacts=dict(data.get("artifacts", {})),
        )

    def numbers(self) -> dict[str, Any]:
        """Everything except the wall time: what must be identical between two seeded runs."""
        out = self.to_dict()
        del out["wall_time_s"]
        return out

    def value(self, what: str) -> float | None:
        """``final_loss``, ``accuracy`` or the metric ``what`` of this run (``None`` if absent)."""
        if what == "final_loss":
            return self.final_loss
        if what == "accuracy":
            return self.accuracy
        return self.metrics.get(what)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one paper's qualitative claim against measured numbers."""

    claim: str
    paper: str
    verdict: str
    evidence: str
    tasks: tuple[str, ...] = ()
    numbers: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "claim": self.claim,
            "paper": self.paper,
            "tasks": list(self.tasks),
            "verdict": self.verdict,
            "evidence": self.evidence,
            "numbers": {k: finite_or_none(v) for k, v in self.numbers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of :meth:`to_dict`."""
        return cls(
            claim=str(data["claim"]),
            paper=str(data["paper"]),
            verdict=str(data["verdict"]),
            evidence=str(data["evidence"]),
            tasks=tuple(data.get("tasks", ())),
            numbers=dict(data.get("numbers", {})),
        )


@dataclass(frozen=True)
class TuningSummary:
    """How one method was tuned on one task (equal-budget protocol, :mod:`gradkit.bench.tuning`).

    Attributes:
        task, method: which.
        budget: trials the protocol gives every method (``0``: not tuned, the task's
            hyper-parameters were used).
        finished: tuning trials finished (complete or pruned); ``pruned`` of them were stopped
            early by the pruner.
        params: the chosen hyper-parameters (the best finished trial's).
        objective: what the tuning minimised or maximised (``final_loss``, a metric...), and
            ``direction``.
        best_value: the chosen trial's objective (on the tuning seed).
        tuning_wall_s: wall time of all tuning trials of this method on this task.
        space: the search space, as plain JSON (``{"lr": ["log-uniform", 1e-4, 1.0]}``).
        note: why the method was not tuned, when it was not.
    """

    task: str
    method: str
    budget: int
    finished: int = 0
    pruned: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    objective: str = "final_loss"
    direction: str = "minimize"
    best_value: float | None = None
    tuning_wall_s: float = 0.0
    space: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "task": self.task,
            "method": self.method,
            "budget": self.budget,
            "finished": self.finished,
            "pruned": self.pruned,
            "params": _jsonable(self.params),
            "objective": self.objective,
            "direction": self.direction,
            "best_value": finite_or_none(self.best_value),
            "tuning_wall_s": float(self.tuning_wall_s),
            "space": _jsonable(self.space),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuningSummary:
        """Inverse of :meth:`to_dict`."""
        return cls(
            task=str(data["task"]),
            method=str(data["method"]),
            budget=int(data.get("budget", 0)),
            finished=int(data.get("finished", 0)),
            pruned=int(data.get("pruned", 0)),
            params=dict(data.get("params", {})),
            objective=str(data.get("objective", "final_loss")),
            direction=str(data.get("direction", "minimize")),
            best_value=data.get("best_value"),
            tuning_wall_s=float(data.get("tuning_wall_s", 0.0)),
            space=dict(data.get("space", {})),
            note=str(data.get("note", "")),
        )


@dataclass
class BenchResults:
    """All numbers of one benchmark run: settings, versions, per-run records and verdicts."""

    settings: RunSettings
    versions: Mapping[str, str]
    tasks: Mapping[str, TaskInfo]
    records: list[Record]
    verdicts: list[Verdict] = field(default_factory=list)
    created_utc: str = ""
    schema_version: int = SCHEMA_VERSION
    tuning: list[TuningSummary] = field(default_factory=list)
    trials: list[Record] = field(default_factory=list)

    @classmethod
    def assemble(
        cls,
        *,
        suite: str,
        methods: Iterable[str],
        tasks: Mapping[str, TaskInfo],
        seeds: Sequence[int],
        records: list[Record],
        steps: int | None = None,
        smoke: bool = False,
        num_threads: int | None = None,
        verdicts: Callable[[BenchResults], Iterable[Verdict]] | None = None,
        trials: int = 0,
        storage: str | None = None,
        complete: bool = True,
        tuning: Sequence[TuningSummary] = (),
        trial_records: Sequence[Record] = (),
    ) -> BenchResults:
        """The one place a run's results are put together (every suite and :func:`compare`).

        Stamps the package versions and the finishing time, then computes the verdicts from
        the assembled results (``verdicts(results)``, pure).

        Example:
            >>> r = BenchResults.assemble(suite="s", methods=["m"], tasks={}, seeds=[0], records=[])
            >>> (r.settings.suite, r.settings.optimizers, r.schema_version == SCHEMA_VERSION)
            ('s', ('m',), True)
        """
        from gradkit.bench.versions import versions

        results = cls(
            settings=RunSettings(
                suite=suite,
                optimizers=tuple(methods),
                tasks=tuple(tasks),
                seeds=tuple(seeds),
                steps=steps,
                smoke=smoke,
                num_threads=num_threads,
                trials=trials,
                storage=storage,
                complete=complete,
            ),
            versions=versions(),
            tasks=dict(tasks),
            records=records,
            tuning=list(tuning),
            trials=list(trial_records),
            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        if verdicts is not None:
            results.verdicts = list(verdicts(results))
        return results

    # -- queries ---------------------------------------------------------------------------
    def methods(self) -> list[str]:
        """Method names in run order (those that have at least one record first)."""
        seen = dict.fromkeys(self.settings.optimizers)
        seen.update(dict.fromkeys(r.method for r in self.records))
        return list(seen)

    def task_names(self) -> list[str]:
        """Task names in run order."""
        seen = dict.fromkeys(self.settings.tasks)
        seen.update(dict.fromkeys(r.task for r in self.records))
        return list(seen)

    def select(
        self, task: str | None = None, method: str | None = None, variant: str | None = None
    ) -> list[Record]:
        """Records matching ``task``, ``method`` and ``variant`` (``None`` matches everything)."""
        return [
            r
            for r in self.records
            if (task is None or r.task == task)
            and (method is None or r.method == method)
            and (variant is None or r.variant == variant)
        ]

    def variants(self, task: str, method: str) -> list[str]:
        """The variants of ``method`` run on ``task``, in run order (``[""]`` without a grid)."""
        return list(dict.fromkeys(r.variant for r in self.select(task, method)))

    def best_variant(self, task: str, method: str) -> str | None:
        """The variant of ``method`` on ``task`` with the lowest mean ``final_loss`` over seeds.

        Variants with fewer failed (non-finite, diverged or errored) runs rank first; ``None``
        when ``method`` has no records on ``task``.
        """
        best: tuple[int, float, int] | None = None
        choice = None
        for i, variant in enumerate(self.variants(task, method)):
            values = [
                r.final_loss if r.status == "ok" else None
                for r in self.select(task, method, variant)
            ]
            finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
            mean = sum(finite) / len(finite) if finite else math.inf
            key = (len(values) - len(finite), mean, i)
            if best is None or key < best:
                best, choice = key, variant
        return choice

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` document (see the module docstring for the schema)."""
        return {
            "schema_version": self.schema_version,
            "created_utc": self.created_utc,
            "settings": self.settings.to_dict(),
            "versions": dict(self.versions),
            "tasks": {name: info.to_dict() for name, info in self.tasks.items()},
            "records": [r.to_dict() for r in self.records],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "tuning": [t.to_dict() for t in self.tuning],
            "trials": [r.to_dict() for r in self.trials],
        }

    def to_json(self, indent: int | None = 1) -> str:
        """``to_dict`` as strict JSON text (no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResults:
        """Read a ``results.json`` document. Raises ``ValueError`` on an unknown version."""
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"unsupported results schema_version {version!r}; this gradkit reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        return cls(
            settings=RunSettings.from_dict(data["settings"]),
            versions=dict(data["versions"]),
            tasks={k: TaskInfo.from_dict(v) for k, v in data.get("tasks", {}).items()},
            records=[Record.from_dict(r) for r in data["records"]],
            verdicts=[Verdict.from_dict(v) for v in data.get("verdicts", [])],
            created_utc=str(data.get("created_utc", "")),
            schema_version=int(version),
            tuning=[TuningSummary.from_dict(t) for t in data.get("tuning", [])],
            trials=[Record.from_dict(r) for r in data.get("trials", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> BenchResults:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def numbers(self) -> list[dict[str, Any]]:
        """The deterministic part of the records (no wall times), for reproducibility checks."""
        return [r.numbers() for r in self.records]


def _jsonable(value: Any) -> Any:
    """Convert tuples, numbers and nested mappings to plain JSON types (``repr`` as fallback)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return finite_or_none(value)
    return repr(value)
