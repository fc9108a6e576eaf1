"""The equal-budget tuning protocol: every method gets the same number of Optuna trials.

For each task and each method with a search space
(:meth:`~gradkit.bench.methods.BenchMethod.tuning_space`):

1. **Tune.** ``budget`` trials, drawn by Optuna's TPE sampler (the first half at random, the
   rest by TPE), each trained on the *tuning seed* (:data:`TUNING_SEED`, never an evaluation
   seed). A trial's objective is the task's :attr:`~gradkit.bench.tasks.base.Task.objective`
   (``final_loss`` unless the task says otherwise); a diverged trial scores the worst value.
   With pruning on, Optuna's median pruner stops a trial whose running training loss is
   worse than the median of earlier trials at the same step.
2. **Choose** the finished trial with the best objective (ties: the earlier slot).
3. **Evaluate** the choice on every evaluation seed (fresh seeds, ``0 .. n-1`` by default).

A method without a search space (or every method, with ``budget == 0``) runs with the
hyper-parameters its task gives it, over the task's variants and the evaluation seeds, as
before tuning existed. Every tuning trial and evaluation run is a slot in the study database
(:mod:`gradkit.bench.study`), so a run resumes where it stopped and several workers share it.

The sampler is re-seeded before each trial from the number of trials the study has finished,
so one worker resuming an interrupted run draws exactly what an uninterrupted run draws: a
deterministic task gives identical numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradkit.bench.methods import BenchMethod
from gradkit.bench.results import Record, TaskInfo, TuningSummary
from gradkit.bench.runner import check_curvature_refresh, not_run_info, run_trial
from gradkit.bench.runtime import TrialPruned, num_threads, progress_bar, step_reporter
from gradkit.bench.search import check_space, describe_space, suggest
from gradkit.bench.study import SlotStudy, StudyStore, study_name
from gradkit.bench.tasks.base import Task, Trial

__all__ = [
    "TUNING_SEED",
    "BenchInterrupted",
    "Plan",
    "Protocol",
    "interrupt_on_sigterm",
    "run_protocol",
]

#: The seed of every tuning trial; evaluation seeds are ``0 .. n-1`` (or the user's list), so
#: the chosen hyper-parameters are judged on runs the tuner never saw.
TUNING_SEED = 1000


def _startup_trials(budget: int) -> int:
    """How many of a budget's trials the sampler draws at random before TPE takes over."""
    return max(1, budget // 2)


class BenchInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run; what finished is in the study database, and
    :attr:`results` holds the partial results once they are assembled."""

    results: Any = None


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`KeyboardInterrupt` inside the block (main thread only), so
    ``kill`` stops a run as cleanly as Ctrl-C."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Protocol:
    """The tuning protocol of one run.

    Attributes:
        budget: trials per method and task (``0``: use the task's hyper-parameters).
        seeds: evaluation seeds.
        prune: stop unpromising trials early (Optuna's median pruner on the training loss).
        sampler_seed: base seed of the TPE sampler.
    """

    budget: int
    seeds: tuple[int, ...]
    prune: bool = False
    sampler_seed: int = 0


@dataclass
class Unit:
    """One method on one task: its tuning study (if tuned) and its evaluation studies."""

    task: Task[Any]
    method: BenchMethod
    steps: int
    tuned: bool
    space: Any = None
    tune: SlotStudy | None = None
    evals: dict[str, SlotStudy] = field(default_factory=dict)
    variants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Plan:
    """Everything a run will do, before it starts (for the estimate and the progress bar)."""

    suite: str
    units: list[Unit]
    protocol: Protocol
    smoke: bool
    infos: dict[str, TaskInfo]
    methods: list[str] = field(default_factory=list)
    steps: int | None = None

    def eval_seeds(self, unit: Unit) -> tuple[int, ...]:
        return self.protocol.seeds[:1] if unit.task.deterministic else self.protocol.seeds

    def runs(self, unit: Unit) -> int:
        """``unit``'s tuning trials plus its evaluation runs."""
        tuning = self.protocol.budget if unit.tuned else 0
        return tuning + len(self.eval_seeds(unit)) * (1 if unit.tuned else len(unit.variants))

    def total_runs(self) -> int:
        """Tuning trials plus evaluation runs of every unit."""
        return sum(self.runs(u) for u in self.units)


def _direction(task: Task[Any]) -> str:
    return "maximize" if task.higher_is_better.get(task.objective, False) else "minimize"


def _objective(task: Task[Any], record: Record) -> float:
    """The record's objective value; the worst value for a failed or non-finite run."""
    worst = -math.inf if _direction(task) == "maximize" else math.inf
    if record.status != "ok":
        return worst
    value = record.value(task.objective)
    return float(value) if value is not None and math.isfinite(float(value)) else worst


def _config(suite: str, unit: Unit, smoke: bool, **extra: Any) -> dict[str, Any]:
    return {
        "suite": suite,
        "task": unit.task.name,
        "method": unit.method.name,
        "steps": unit.steps,
        "smoke": smoke,
        "objective": unit.task.objective,
        **extra,
    }


def plan_protocol(
    suite: str,
    tasks: Sequence[Task[Any]],
    methods: Sequence[BenchMethod],
    protocol: Protocol,
    *,
    steps: int | None,
    smoke: bool,
    applies: Callable[[Task[Any], BenchMethod], bool] | None = None,
) -> Plan:
    """The units of a run (no storage touched): which methods are tuned, with what space."""
    units: list[Unit] = []
    infos: dict[str, TaskInfo] = {}
    for task in tasks:
        chosen = [m for m in methods if applies is None or applies(task, m)]
        check_curvature_refresh(task, chosen)
        task_steps = steps or task.default_steps(smoke)
        if not chosen:
            infos[task.name] = not_run_info(task, task_steps)
        else:
            infos[task.name] = None  # type: ignore[assignment]  # asked after the runs
        for method in chosen:
            space = method.tuning_space() if protocol.budget > 0 else None
            if space is not None:
                check_space(method.name, space)
            units.append(
                Unit(
                    task,
                    method,
                    task_steps,
                    tuned=space is not None,
                    space=space,
                    variants=[("", {})] if space is not None else task.variants(method, smoke),
                )
            )
    return Plan(suite, units, protocol, smoke, infos, [m.name for m in methods], steps)


def open_studies(plan: Plan, store: StudyStore) -> None:
    """Create (or re-open and check) every tuning study and top up its slots, under the lock.

    Raises:
        BenchConfigError: a study from a different configuration (naming the difference).
    """
    budget = plan.protocol.budget
    with store.locked():
        for unit in plan.units:
            if not unit.tuned:
                continue
            config = _config(
                plan.suite,
                unit,
                plan.smoke,
                phase="tune",
                budget=budget,
                space=describe_space(unit.space),
                tuning_seed=TUNING_SEED,
                prune=plan.protocol.prune,
            )
            name = study_name(plan.suite, unit.task.name, unit.method.name, "tune")
            unit.tune = SlotStudy(store, name, config, _direction(unit.task))
            unit.tune.top_up([{"slot": i} for i in range(budget)])


def _best(unit: Unit) -> tuple[dict[str, Any], Any]:
    """The chosen hyper-parameters: the best complete trial (ties: lowest slot)."""
    assert unit.tune is not None
    sign = -1.0 if _direction(unit.task) == "maximize" else 1.0
    done = [t for t in unit.tune.finished() if t.values]
    done = [t for t in done if t.state.name == "COMPLETE"] or done
    if not done:
        return {}, None
    best = min(done, key=lambda t: (sign * t.values[0], t.user_attrs.get("slot", t.number)))
    return dict(best.params), best


def _open_evals(plan: Plan, unit: Unit, store: StudyStore) -> None:
    """Create the evaluation studies of ``unit`` (after its tuning finished) and their slots."""
    with store.locked():
        if unit.tuned:
            params, _ = _best(unit)
            variants: list[tuple[str, dict[str, Any]]] = [
                ("", unit.task.tuned_overrides(unit.method, params))
            ]
        else:
            variants = unit.variants
        for label, overrides in variants:
            config = _config(
                plan.suite,
                unit,
                plan.smoke,
                phase="eval",
                variant=label,
                overrides=overrides,
                seeds=list(plan.eval_seeds(unit)),
            )
            name = study_name(plan.suite, unit.task.name, unit.method.name, "eval", label)
            study = SlotStudy(store, name, config, _direction(unit.task))
            study.top_up([{"seed": s} for s in plan.eval_seeds(unit)])
            unit.evals[label] = study
        unit.variants = variants


class _PruneReporter:
    """Passes the running training loss to Optuna every ``interval`` steps (the mean of the
    interval's step losses) and raises :class:`TrialPruned` when the pruner says so."""

    def __init__(self, trial: Any, steps: int) -> None:
        self.trial, self.interval = trial, max(1, steps // 10)
        self.window: list[float] = []

    def __call__(self, step: int, value: float) -> None:
        self.window.append(value)
        if step % self.interval:
            return
        mean = sum(self.window) / len(self.window)
        self.window = []
        if math.isfinite(mean):
            self.trial.report(mean, step)
            if self.trial.should_prune():
                raise TrialPruned(f"pruned at step {step}")


def _sampler(plan: Plan, unit: Unit) -> Any:
    import optuna

    assert unit.tune is not None
    finished = len(unit.tune.finished())
    return optuna.samplers.TPESampler(
        seed=plan.protocol.sampler_seed * 100_003 + finished,
        n_startup_trials=_startup_trials(plan.protocol.budget),
    )


def _pruner(unit: Unit) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=unit.steps // 3)


def _finish(study: SlotStudy, trial: Any, record: Record, value: float, pruned: bool) -> None:
    import optuna

    trial.set_user_attr("record", record.to_dict())
    if pruned:
        study.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.study.tell(trial, value)


@contextlib.contextmanager
def _failing_on_interrupt(study: SlotStudy, trial: Any) -> Iterator[None]:
    """Mark ``trial`` failed (so a later run replaces it) if the block is interrupted."""
    import optuna

    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            trial.set_user_attr("interrupted", True)
            study.study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise


def _run_tuning_slot(plan: Plan, unit: Unit, trial: Any, *, note: Callable[[str], None]) -> None:
    assert unit.tune is not None
    slot = int(trial.user_attrs["slot"])
    with _failing_on_interrupt(unit.tune, trial):
        params = suggest(trial, unit.space)
        overrides = unit.task.tuned_overrides(unit.method, params)
        run = Trial(unit.task, unit.method, TUNING_SEED, unit.steps, plan.smoke, "", overrides)
        note(f"{run.label} tuning trial {slot + 1}/{plan.protocol.budget}")
        unit.task.prepare([run], note)
        reporter = _PruneReporter(trial, unit.steps) if plan.protocol.prune else None
        start = time.perf_counter()
        pruned = False
        try:
            with step_reporter(reporter):
                record = run_trial(plan.suite, run)
        except TrialPruned as why:
            pruned = True
            record = Record(
                plan.suite, unit.task.name, unit.method.name, TUNING_SEED, None, (),
                time.perf_counter() - start, unit.steps, hyperparams=overrides, status="pruned",
                error=str(why),
            )  # fmt: skip
        record = _as_trial(record, slot)
        _finish(unit.tune, trial, record, _objective(unit.task, record), pruned)


def _as_trial(record: Record, slot: int) -> Record:
    return dataclasses.replace(record, variant=f"trial {slot}")


def _run_eval_slot(
    plan: Plan, unit: Unit, label: str, trial: Any, *, note: Callable[[str], None]
) -> None:
    study = unit.evals[label]
    with _failing_on_interrupt(study, trial):
        run = _eval_trial(plan, unit, label, int(trial.user_attrs["seed"]))
        note(run.label)
        record = run_trial(plan.suite, run)
        _finish(study, trial, record, _objective(unit.task, record), False)


def _drain(study: SlotStudy, run: Callable[[Any], None], sampler: Callable[[], Any] | None,
           store: StudyStore, top_up: Sequence[Mapping[str, Any]], bar: Any,
           wait: bool) -> None:  # fmt: skip
    """Run waiting slots of ``study`` until none is left; with ``wait``, also wait for slots
    that other workers are running (replacing those whose worker died)."""
    while True:
        trial = study.ask(sampler() if sampler is not None else None)
        if trial is not None:
            run(trial)
            bar.update(1)
            continue
        if not wait or study.pending() == 0:
            return
        with store.locked():
            study.top_up(top_up)
        time.sleep(0.5)


def _drain_tuning(plan: Plan, unit: Unit, store: StudyStore, bar: Any, *, wait: bool) -> None:
    if unit.tune is None:
        return
    unit.tune.study.pruner = _pruner(unit)
    _drain(
        unit.tune,
        functools.partial(_run_tuning_slot, plan, unit, note=bar.set_postfix_str),
        functools.partial(_sampler, plan, unit),
        store,
        [{"slot": i} for i in range(plan.protocol.budget)],
        bar,
        wait=wait,
    )


def _eval_trial(plan: Plan, unit: Unit, label: str, seed: int) -> Trial:
    overrides = dict(unit.variants[[v[0] for v in unit.variants].index(label)][1])
    return Trial(unit.task, unit.method, seed, unit.steps, plan.smoke, label, overrides)


def _waiting_trials(plan: Plan, unit: Unit) -> list[Trial]:
    """The evaluation runs of ``unit`` not finished yet (for :meth:`Task.prepare`)."""
    import optuna

    out = []
    for label, study in unit.evals.items():
        waiting = study.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        seeds = sorted(int(t.user_attrs["seed"]) for t in waiting if "seed" in t.user_attrs)
        out += [_eval_trial(plan, unit, label, s) for s in seeds]
    return out


def run_protocol(
    plan: Plan,
    store: StudyStore,
    *,
    progress: bool = False,
    threads: int | None = 2,
) -> None:
    """Run every slot of ``plan`` that is not finished yet (tuning first, then evaluation).

    Raises:
        BenchInterrupted: Ctrl-C or SIGTERM; the running slot is marked failed so that the
            next run of the same command replaces it.
    """
    open_studies(plan, store)
    done = sum(len(u.tune.finished()) for u in plan.units if u.tune is not None)
    bar = progress_bar(plan.total_runs(), progress, desc=plan.suite)
    bar.update(done)
    note = bar.set_postfix_str
    # (tuning trials: Task.prepare is called with each trial alone, just before it runs)
    try:
        with num_threads(threads), interrupt_on_sigterm():
            # first every tuning slot this worker can take, then (waiting for other workers'
            # slots where needed) each unit's evaluation
            for unit in plan.units:  # every tuning slot this worker can take
                _drain_tuning(plan, unit, store, bar, wait=False)
            for task in dict.fromkeys(u.task for u in plan.units):
                units = [u for u in plan.units if u.task is task]
                for unit in units:  # wait for other workers' tuning slots, then choose
                    _drain_tuning(plan, unit, store, bar, wait=True)
                    _open_evals(plan, unit, store)
                    bar.update(sum(len(s.finished()) for s in unit.evals.values()))
                waiting = [t for u in units for t in _waiting_trials(plan, u)]
                if waiting:  # once per task with all its runs (one simulation for all)
                    task.prepare(waiting, note)
                for unit in units:
                    for label, study in unit.evals.items():
                        _drain(
                            study,
                            functools.partial(_run_eval_slot, plan, unit, label, note=note),
                            None,
                            store,
                            [{"seed": s} for s in plan.eval_seeds(unit)],
                            bar,
                            wait=True,
                        )
    except KeyboardInterrupt:
        raise BenchInterrupted("interrupted") from None
    finally:
        bar.close()


def _record_of(trial: Any) -> Record | None:
    data = trial.user_attrs.get("record")
    return Record.from_dict(data) if data is not None else None


def collect(
    plan: Plan, store: StudyStore
) -> tuple[list[Record], list[Record], list[TuningSummary], bool]:
    """Read every finished run of ``plan`` back from the storage.

    Returns:
        Evaluation records (task, method, variant, seed order), tuning-trial records (curves
        dropped), one :class:`TuningSummary` per unit, and whether every slot finished.
    """
    records: list[Record] = []
    trials: list[Record] = []
    summaries: list[TuningSummary] = []
    complete = True
    for unit in plan.units:
        name = study_name(plan.suite, unit.task.name, unit.method.name, "tune")
        tuned_params: dict[str, Any] = {}
        best_value = None
        wall = 0.0
        finished = pruned = 0
        if unit.tuned:
            if unit.tune is None:
                unit.tune = SlotStudy.existing(store, name)
            if unit.tune is None:
                complete = False
            else:
                done = unit.tune.finished()
                finished = len(done)
                pruned = sum(t.state.name == "PRUNED" for t in done)
                for t in sorted(done, key=lambda t: t.user_attrs.get("slot", 0)):
                    rec = _record_of(t)
                    if rec is not None:
                        wall += rec.wall_time_s
                        trials.append(_strip(rec))
                tuned_params, best = _best(unit)
                best_value = best.values[0] if best is not None and best.values else None
                if best_value is not None and not math.isfinite(best_value):
                    best_value = None  # as results.json stores it (diverged)
                complete &= finished >= plan.protocol.budget
        summaries.append(
            TuningSummary(
                task=unit.task.name,
                method=unit.method.name,
                budget=plan.protocol.budget if unit.tuned else 0,
                finished=finished,
                pruned=pruned,
                params=tuned_params,
                objective=unit.task.objective,
                direction=_direction(unit.task),
                best_value=best_value,
                tuning_wall_s=wall,
                space=describe_space(unit.space),
                note="" if unit.tuned else _untuned_note(plan, unit),
            )
        )
        labels = [v[0] for v in unit.variants] if not unit.tuned else [""]
        seeds = plan.eval_seeds(unit)
        for label in labels:
            study = unit.evals.get(label) or SlotStudy.existing(
                store, study_name(plan.suite, unit.task.name, unit.method.name, "eval", label)
            )
            found = {}
            if study is not None:
                for t in study.finished():
                    rec = _record_of(t)
                    if rec is not None:
                        found[int(t.user_attrs["seed"])] = rec
            records.extend(found[s] for s in seeds if s in found)
            complete &= all(s in found for s in seeds)
    return records, trials, summaries, complete


def task_infos(plan: Plan) -> dict[str, TaskInfo]:
    """Each task's :meth:`Task.info`, asked after its runs (a task may describe what ran)."""
    out = dict(plan.infos)
    for unit in plan.units:
        if out.get(unit.task.name) is None:
            out[unit.task.name] = unit.task.info(unit.steps)
    return out


def _untuned_note(plan: Plan, unit: Unit) -> str:
    if plan.protocol.budget == 0:
        return "not tuned (--trials 0): the task's hyper-parameters"
    return f"{unit.method.kind} without a search space: the task's hyper-parameters"


def _strip(record: Record) -> Record:
    return dataclasses.replace(record, curve=(), eval_curve=(), artifacts={})
