"""A whole comparison in one file: ``gradkit bench --config bench.toml`` (TOML, or YAML).

A config file lists what ``gradkit bench``'s flags would say; a flag given on the command line
wins over the file. Every key is optional::

    suite = "default"                  # whose task and method names are meant
    tasks = ["my_task:make_task", "rosenbrock"]   # names and/or module:factory specs
    methods = ["sgd", "adam", "my_optimizer:SignSGD",
               { name = "sgd_nesterov", factory = "my_optimizer:nesterov_sgd" }]
    trials = 8                          # tuning budget per method and task
    seeds = 3                           # or [0, 1, 2]
    steps = 200                         # overrides every task's steps
    storage = "sqlite:///study.db"      # any SQLAlchemy URL
    out = "my-report"
    threads = 2

    [search.signsgd]                    # a method's search space (default: lr in [1e-4, 1])
    lr = [1e-4, 1e-1]                   # log-uniform
    log_uniform = { weight_decay = [1e-6, 1e-2] }
    choices = { momentum = [0.0, 0.9] }

A file ending in ``.yaml``/``.yml`` holds the same keys in YAML (PyYAML, installed with
``gradkit[bench]``). Module specs are searched in the current directory, then in the config
file's folder, then on ``sys.path``. Relative ``out`` and SQLite paths are relative to the
current directory, as on the command line.

An unknown key, a value of the wrong type, or a bad search space is a
:class:`~gradkit.bench.errors.BenchConfigError` that names the key and the file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradkit._specs import SearchSpace
from gradkit.bench.errors import BenchConfigError
from gradkit.bench.search import DEFAULT_LR_RANGE, check_space

__all__ = ["CONFIG_KEYS", "SPACE_KEYS", "BenchConfig", "load_config", "merge", "parse_config"]

#: The keys a config file may hold.
CONFIG_KEYS = (
    "suite", "tasks", "methods", "trials", "seeds", "steps", "storage", "out", "threads",
    "search",
)  # fmt: skip

#: The keys of one method's ``[search.<method>]`` table (the fields of ``SearchSpace``).
SPACE_KEYS = ("lr", "log_uniform", "choices")


@dataclass(frozen=True)
class BenchConfig:
    """The settings a config file gives (``None``: not given there).

    Attributes:
        path: the file (``None`` for a config built in code).
        search: per-method search spaces, method name (lower case) → :class:`SearchSpace`.
    """

    path: Path | None = None
    suite: str | None = None
    tasks: tuple[str, ...] | None = None
    methods: tuple[Any, ...] | None = None
    trials: int | None = None
    seeds: int | tuple[int, ...] | None = None
    steps: int | None = None
    storage: str | None = None
    out: str | None = None
    threads: int | None = None
    search: Mapping[str, SearchSpace] = field(default_factory=dict)

    @property
    def folder(self) -> list[Path]:
        """Where the specs' modules are searched after the current directory."""
        return [] if self.path is None else [self.path.parent]


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchConfigError(f"cannot read the config file {str(path)!r}: {exc}") from None
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BenchConfigError(f"{path}: not valid TOML: {exc}") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML is in the bench extra
            raise BenchConfigError(
                f"{path}: reading YAML needs PyYAML (pip install 'gradkit[bench]'), or use TOML"
            ) from None
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise BenchConfigError(f"{path}: not valid YAML: {exc}") from None
    raise BenchConfigError(
        f"config file {str(path)!r}: unknown format {suffix or '(no suffix)'}; use .toml, "
        ".yaml or .yml"
    )


def load_config(path: str | os.PathLike[str]) -> BenchConfig:
    """Read and check the config file at ``path`` (``.toml``, ``.yaml`` or ``.yml``).

    Raises:
        BenchConfigError: a missing or unreadable file, bad syntax, an unknown key, a value of
            the wrong type or a bad search space; the message names the file and the key.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchConfigError(f"config file {str(p)!r} does not exist")
    return parse_config(_read(p), p)


def _int(value: Any, key: str, where: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BenchConfigError(f"{where}: {key} must be an int >= {low}, got {value!r}")
    return value


def _str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BenchConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _list(value: Any, key: str, where: str, *, tables: bool = False) -> tuple[Any, ...]:
    items = [value] if isinstance(value, str) else value
    ok = (str, Mapping) if tables else (str,)
    if not isinstance(items, list) or not items or not all(isinstance(v, ok) for v in items):
        kinds = "strings or {name, factory} tables" if tables else "strings"
        raise BenchConfigError(f"{where}: {key} must be a non-empty list of {kinds}, got {value!r}")
    return tuple(items)


def _bounds(value: Any, what: str, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise BenchConfigError(
            f"{where}: {what} must be a [low, high] pair of numbers, got {value!r}"
        )
    return float(value[0]), float(value[1])


def _space(method: str, table: Any, where: str) -> SearchSpace:
    """One ``[search.<method>]`` table as a checked :class:`SearchSpace`."""
    at = f"search.{method}"
    if not isinstance(table, Mapping):
        raise BenchConfigError(f"{where}: {at} must be a table, got {table!r}")
    unknown = sorted(set(table) - set(SPACE_KEYS))
    if unknown:
        raise BenchConfigError(
            f"{where}: unknown key {at}.{unknown[0]}; a search space takes {', '.join(SPACE_KEYS)}"
            " (other log-uniform knobs go under log_uniform)"
        )
    lr = _bounds(table["lr"], f"{at}.lr", where) if "lr" in table else DEFAULT_LR_RANGE
    log_uniform: dict[str, tuple[float, float]] = {}
    for name, bounds in _table(table.get("log_uniform", {}), f"{at}.log_uniform", where).items():
        log_uniform[name] = _bounds(bounds, f"{at}.log_uniform.{name}", where)
    choices: dict[str, tuple[Any, ...]] = {}
    for name, values in _table(table.get("choices", {}), f"{at}.choices", where).items():
        if not isinstance(values, list) or not values:
            raise BenchConfigError(
                f"{where}: {at}.choices.{name} must be a non-empty list, got {values!r}"
            )
        choices[name] = tuple(values)
    space = SearchSpace(lr=lr, log_uniform=log_uniform, choices=choices)
    try:
        return check_space(method, space)
    except BenchConfigError as exc:
        raise BenchConfigError(f"{where}: {exc}") from None


def _table(value: Any, key: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BenchConfigError(f"{where}: {key} must be a table, got {value!r}")
    return value


def _seeds(value: Any, where: str) -> int | tuple[int, ...]:
    if isinstance(value, list):
        return tuple(_int(v, "each seed", where, low=0) for v in value) or _empty_seeds(where)
    return _int(value, "seeds", where, low=1)


def _empty_seeds(where: str) -> tuple[int, ...]:
    raise BenchConfigError(f"{where}: seeds must be a count or a non-empty list of seeds")


def parse_config(data: Any, path: str | os.PathLike[str] | None = None) -> BenchConfig:
    """Check the parsed contents ``data`` of a config file (``path`` for messages).

    Raises:
        BenchConfigError: see :func:`load_config`.
    """
    where = str(path) if path is not None else "config"
    if not isinstance(data, Mapping):
        raise BenchConfigError(f"{where}: the file must hold a table of settings")
    unknown = [k for k in data if k not in CONFIG_KEYS]
    if unknown:
        raise BenchConfigError(
            f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(CONFIG_KEYS)}"
        )
    got: dict[str, Any] = {}
    for key in ("suite", "storage", "out"):
        if key in data:
            got[key] = _str(data[key], key, where)
    if "tasks" in data:
        got["tasks"] = _list(data["tasks"], "tasks", where)
    if "methods" in data:
        got["methods"] = _list(data["methods"], "methods", where, tables=True)
    if "trials" in data:
        got["trials"] = _int(data["trials"], "trials", where, low=0)
    if "steps" in data:
        got["steps"] = _int(data["steps"], "steps", where, low=1)
    if "threads" in data:
        got["threads"] = _int(data["threads"], "threads", where, low=0)
    if "seeds" in data:
        got["seeds"] = _seeds(data["seeds"], where)
    spaces = {
        str(name).strip().lower(): _space(str(name).strip().lower(), table, where)
        for name, table in _table(data.get("search", {}), "search", where).items()
    }
    return BenchConfig(path=None if path is None else Path(path), search=spaces, **got)


def merge(config: BenchConfig, **flags: Any) -> BenchConfig:
    """``config`` with every flag that is not ``None`` put in its place (flags win)."""
    given = {k: v for k, v in flags.items() if v is not None}
    return dataclasses.replace(config, **given)
