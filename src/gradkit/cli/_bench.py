"""``gradkit bench``: run a benchmark suite and write a report folder."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gradkit.bench.errors import BenchConfigError

if TYPE_CHECKING:
    from gradkit.bench.config import BenchConfig
    from gradkit.bench.suites import Suite

__all__ = ["add_parser", "parse_seeds", "run_bench"]

DEFAULT_OUT = "gradkit-report"


def parse_seeds(text: str) -> int | list[int]:
    """``"3"`` → 3 (seeds 0, 1, 2); ``"0,5,7"`` → [0, 5, 7]; ``"7,"`` → [7].

    Raises:
        BenchConfigError: anything else, naming the bad value.
    """
    text = text.strip()
    try:
        if "," not in text:
            return int(text)
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchConfigError(
            f"--seeds expects a count (3) or a comma-separated list (0,1,2), got {text!r}"
        ) from None


def _print_summary(results: object, out: str, seconds: float) -> None:
    from gradkit.bench.results import BenchResults

    if not isinstance(results, BenchResults):
        raise TypeError(f"expected BenchResults, got {type(results).__name__}")
    for r in results.records:
        if r.status != "ok":
            print(
                f"warning: {r.task}/{r.method}/seed {r.seed}: {r.status}"
                + (f" ({r.error})" if r.error else ""),
                file=sys.stderr,
            )
    for v in results.verdicts:
        print(f"[{v.verdict}] {v.claim}: {v.evidence}")
    print(f"{len(results.records)} runs in {seconds:.1f} s; report written to {out}")


def _estimate(plan: object) -> str:
    """``"N runs (T tuning trials + E evaluation runs), about X min"`` for the plan."""
    from gradkit.bench.tuning import Plan

    if not isinstance(plan, Plan):
        raise TypeError(f"expected a Plan, got {type(plan).__name__}")
    tuning = sum(plan.protocol.budget for u in plan.units if u.tuned)
    total = plan.total_runs()
    seconds = 0.0
    known = True
    for unit in plan.units:
        runs = plan.runs(unit)
        per_run = unit.task.seconds_per_run
        if per_run is None or plan.smoke:
            known = False
            continue
        seconds += runs * per_run * unit.steps / unit.task.default_steps(False)
    text = (
        f"{total} runs ({tuning} tuning trials, {plan.protocol.budget} per method and task, "
        f"+ {total - tuning} evaluation runs on seeds {list(plan.protocol.seeds)})"
    )
    if known and seconds:
        text += f"; estimated {seconds / 60:.1f} min on 2 CPU threads, less what is finished"
    return text


def _comparison(args: argparse.Namespace) -> tuple[BenchConfig, Suite]:
    """The run's settings (the config file's, each flag given on the command line winning)
    and the suite that runs exactly its tasks and methods."""
    from gradkit.bench.config import BenchConfig, load_config, merge
    from gradkit.bench.userland import comparison_suite, split_specs

    config = load_config(args.config) if args.config is not None else BenchConfig()
    tasks = None
    if args.tasks is not None or args.task:
        tasks = (*split_specs(args.tasks), *split_specs(args.task))
    config = merge(
        config,
        suite=args.suite,
        tasks=tasks,
        methods=tuple(split_specs(args.optimizers)) if args.optimizers is not None else None,
        trials=args.trials,
        seeds=parse_seeds(args.seeds) if args.seeds is not None else None,
        steps=args.steps,
        storage=args.storage,
        out=args.out,
        threads=args.threads,
    )
    suite = comparison_suite(
        config.suite or "default",
        tasks=config.tasks,
        methods=config.methods,
        spaces=config.search,
        paths=config.folder,
        unused_spaces="ignore" if args.optimizers is not None else "error",
    )
    return config, suite


def run_bench(args: argparse.Namespace) -> int:
    """Handler of ``gradkit bench``: plan, check the report folder, run the protocol (resuming
    what the study database holds), write the report, print the verdicts."""
    from gradkit.bench.methods import registry_methods
    from gradkit.bench.runtime import resolve_threads
    from gradkit.bench.study import DB_NAME, open_store
    from gradkit.bench.tuning import BenchInterrupted
    from gradkit.bench.writer import prepare_out, write_report

    start = time.perf_counter()
    created: Path | None = None
    try:
        config, suite = _comparison(args)
        if config.methods is None:
            error = registry_methods()[1]
            if error:
                print(f"warning: {error}; running the torch baselines only", file=sys.stderr)
        plan = suite.plan(
            seeds=config.seeds, steps=config.steps, smoke=args.smoke, trials=config.trials
        )
        threads = "auto" if config.threads is None else (config.threads or None)
        resolve_threads(threads, args.smoke)  # a bad value fails before anything is touched
        out_arg = Path(config.out or DEFAULT_OUT).expanduser()
        if not out_arg.exists():
            created = out_arg.absolute()
        out = prepare_out(out_arg, overwrite=args.overwrite)
        store = open_store(config.storage or f"sqlite:///{out / DB_NAME}")
        print(f"gradkit bench, suite {suite.name}: {_estimate(plan)}", file=sys.stderr)
        try:
            results = suite.execute(
                plan, store=store, progress=not args.no_progress, num_threads=threads
            )
        except BenchInterrupted as exc:
            partial = exc.results
            write_report(partial, out, plots=not args.no_plots)
            print(
                f"gradkit bench: interrupted; {len(partial.records)} evaluation runs and "
                f"{len(partial.trials)} tuning trials are finished and kept in "
                f"{store.url}; the partial report is in {out}. Run the same command again "
                "to resume.",
                file=sys.stderr,
            )
            return 130
        out = write_report(results, out, plots=not args.no_plots)
    except (BenchConfigError, ImportError) as exc:
        if created is not None and not (created / "results.json").exists():
            shutil.rmtree(created, ignore_errors=True)  # made by this run, holds nothing yet
        print(f"gradkit bench: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BenchConfigError) else 1
    _print_summary(results, str(out), time.perf_counter() - start)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand."""
    from gradkit.bench.suites import suite_names

    p = sub.add_parser(
        "bench",
        help="compare optimizers on a benchmark suite and write a report",
        description="Run a benchmark suite and write report.md, results.json and loss-curve "
        "plots into a report folder (written atomically).",
        epilog=(
            f"suites: {', '.join(suite_names())}. `gradkit list` shows each suite's tasks and "
            "default methods. Tasks, verdicts and the results.json schema are documented in the "
            "user guide (docs/bench.md in the source repository; `bash scripts/docs.sh` builds "
            "the site)."
        ),
    )
    p.add_argument(
        "--suite",
        help="suite to run, and whose task and method names are meant (default: default)",
    )
    p.add_argument(
        "--optimizers",
        metavar="A,B,C",
        help="comma-separated methods: names (see gradkit list) and your own optimizer classes "
        "or factories f(params, **hp) as module:Attr (default: the suite's list; sgd,adam,adamw "
        "with --task)",
    )
    p.add_argument(
        "--tasks",
        metavar="X,Y",
        help="comma-separated task names of the suite, or module:factory specs (default: all)",
    )
    p.add_argument(
        "--task",
        action="append",
        metavar="MODULE:FACTORY",
        help="your own task: FACTORY() in MODULE (found in the current directory or on "
        "PYTHONPATH) returns a gradkit.bench Task, e.g. from gradkit.bench.make_task; "
        "repeatable or comma-separated. Runs as the 'custom' suite (no verdicts), tuned like "
        "every suite (see docs/bench.md)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a whole comparison in a .toml (or .yaml) file: suite, tasks, methods, trials, "
        "seeds, steps, storage, out, threads and per-method search spaces; flags given here "
        "win over the file",
    )
    p.add_argument(
        "--seeds",
        metavar="N|A,B",
        help="number of seeds (3 means 0,1,2) or a comma-separated list (default: the suite's, "
        "1 with --smoke)",
    )
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps per run, all tasks")
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="tuning trials per method and task (Optuna TPE; the winner is re-run on the "
        "evaluation seeds); 0 uses the tasks' given hyper-parameters (default: the suite's "
        "budget, 8 for default and lm; 1 with --smoke)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna study database (any SQLAlchemy URL); several workers given the same URL "
        "share one sweep (default: sqlite:///<out>/study.db)",
    )
    p.add_argument(
        "--out",
        help=f"report folder; re-running into it resumes from its study.db (default: {DEFAULT_OUT})",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh: remove gradkit's own files in --out (never other files)",
    )
    p.add_argument("--smoke", action="store_true", help="a few steps on tiny data (seconds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="do not draw loss curves")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch.set_num_threads during the run; 0 leaves torch's setting (default: 2, "
        "or 1 with --smoke)",
    )
    p.set_defaults(handler=run_bench)
