"""The ``gradkit`` command line: ``gradkit list``, ``gradkit env``, ``gradkit bench`` and
``gradkit report``.

Each subcommand lives in its own module (``_list``, ``_env``, ``_bench``, ``_report``) that provides
``add_parser(subparsers)``; the parser stores the handler in ``args.handler``. Each module
separates gathering the data (pure functions, tested on their own) from printing it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gradkit.cli import _bench, _env, _list, _report

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with all subcommands."""
    from gradkit.bench.versions import gradkit_version

    parser = argparse.ArgumentParser(
        prog="gradkit",
        description="Recent gradient methods for PyTorch: list them, report your environment, "
        "benchmark them against torch's optimizers.",
    )
    parser.add_argument("--version", action="version", version=f"gradkit {gradkit_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (_list, _env, _bench, _report):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Exit codes: 0 success, 1 failure or no subcommand given (help is printed), 2 bad usage
    (unknown option, unknown suite/optimizer/task name...).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 1
    code: int = args.handler(args)
    return code
