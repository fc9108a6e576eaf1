"""Your own tasks and optimizers in a bench run: ``gradkit bench --task my_module:make_task``,
``--optimizers adam,my_module:MyOptimizer`` and the ``tasks``/``methods`` of a config file.

* A **task spec** ``"module:factory"`` names a callable that takes no arguments and returns a
  :class:`~gradkit.bench.tasks.base.Task` (:func:`gradkit.bench.make_task` builds one from a
  model factory, a data loader and a loss). :func:`load_task` imports the module (the current
  directory is searched first, then ``sys.path``), calls the factory and checks the result.
* A **method spec** ``"module:Attr"`` names a ``torch.optim.Optimizer`` subclass or a factory
  ``f(params, **hyperparams) -> Optimizer`` (:func:`load_method`, then
  :func:`~gradkit.bench.methods.user_method`).
* :func:`comparison_suite` turns a suite name, a task list and a method list (names, specs or
  objects) plus per-method search spaces into one :class:`~gradkit.bench.suites.Suite` whose
  tasks and methods are exactly those. With a user task in it, that is the ``custom`` suite:
  no verdicts, default methods :data:`CUSTOM_METHODS`, the same tuning protocol.

Every failure is a :class:`~gradkit.bench.errors.BenchConfigError` that names the spec: a
module that cannot be found or raises on import, a missing attribute, a factory that raises
(with its exception) or returns something that is not a task.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradkit._specs import SearchSpace
from gradkit.bench.errors import BenchConfigError
from gradkit.bench.methods import BenchMethod, Method, UserMethod, resolve_methods, user_method
from gradkit.bench.search import check_space
from gradkit.bench.suites import Suite, get_suite
from gradkit.bench.suites.base import parse_names
from gradkit.bench.tasks.base import Task

__all__ = [
    "CUSTOM_METHODS",
    "CUSTOM_SUITE",
    "comparison_suite",
    "is_spec",
    "load_method",
    "load_object",
    "load_task",
    "split_specs",
]

#: The suite name of a run that contains a user task.
CUSTOM_SUITE = "custom"

#: The methods a ``custom`` run compares when none are given.
CUSTOM_METHODS = ("sgd", "adam", "adamw")


def is_spec(text: str) -> bool:
    """Whether ``text`` is a ``"module:attribute"`` spec rather than a name."""
    return ":" in text


def split_specs(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` → ``["a", "b", "c"]`` (stripped, case kept)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


@contextmanager
def _search_path(extra: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    """Put the current directory and ``extra`` folders first on ``sys.path`` for the block."""
    added = [str(Path(p).absolute()) for p in (os.getcwd(), *extra)]
    added = [p for i, p in enumerate(added) if p not in added[:i]]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def load_object(spec: str, what: str, *, paths: Sequence[str | os.PathLike[str]] = ()) -> Any:
    """Import ``module`` and return its attribute ``attr`` (dotted paths allowed) for the spec
    ``"module:attr"``; ``what`` names the object in messages (``"task factory"``).

    The current directory and the ``paths`` folders are searched before ``sys.path``.

    Raises:
        BenchConfigError: a malformed spec, a module that is not found or raises while it is
            imported, or a missing attribute.
    """
    module_name, sep, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise BenchConfigError(
            f"{what} {spec!r} must have the form module:attribute (for example my_task:make_task)"
        )
    with _search_path(paths):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name or module_name.startswith(f"{exc.name}."):
                where = ", ".join(str(Path(p).absolute()) for p in (os.getcwd(), *paths))
                raise BenchConfigError(
                    f"{what} {spec!r}: no module named {module_name!r} (searched {where} and "
                    "sys.path); run from the folder that holds it, or add that folder to "
                    "PYTHONPATH"
                ) from None
            raise BenchConfigError(
                f"{what} {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except Exception as exc:
            raise BenchConfigError(
                f"{what} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BenchConfigError(
                f"{what} {spec!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) "
                f"has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    return obj


def load_task(spec: str, *, paths: Sequence[str | os.PathLike[str]] = ()) -> Task[Any]:
    """Call the task factory ``"module:factory"`` with no arguments and return its task.

    Raises:
        BenchConfigError: the factory cannot be imported (see :func:`load_object`), is not
            callable, raises (the message holds its exception), or returns anything but a
            :class:`~gradkit.bench.tasks.base.Task` (the message names the type).
    """
    factory = load_object(spec, "task factory", paths=paths)
    if not callable(factory):
        raise BenchConfigError(
            f"task factory {spec!r} is a {type(factory).__name__}, not a callable"
        )
    try:
        task = factory()
    except Exception as exc:
        raise BenchConfigError(f"task factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(task, Task):
        raise BenchConfigError(
            f"task factory {spec!r} returned {type(task).__module__}.{type(task).__qualname__}, "
            "not a gradkit.bench.tasks.base.Task; build one with gradkit.bench.make_task("
            "name, model_fn, train_loader, loss_fn, ...) or subclass Task (docs/bench.md)"
        )
    if not isinstance(task.name, str) or not task.name.strip() or is_spec(task.name):
        raise BenchConfigError(
            f"task factory {spec!r} returned a task named {task.name!r}; a task needs a "
            "non-empty name without ':'"
        )
    return task


def load_method(
    spec: str, name: str | None = None, *, paths: Sequence[str | os.PathLike[str]] = ()
) -> UserMethod:
    """The user method ``"module:ClassOrFactory"`` (see :func:`~gradkit.bench.methods.
    user_method`), named ``name`` or after the class or function.

    Raises:
        BenchConfigError: the object cannot be imported, or is not an optimizer class or a
            named factory.
    """
    obj = load_object(spec, "optimizer", paths=paths)
    try:
        return user_method(obj, name, source=f"user ({spec.partition(':')[0].strip()})")
    except BenchConfigError as exc:
        raise BenchConfigError(f"optimizer {spec!r}: {exc}") from None


def _no_verdicts(results: Any) -> list[Any]:
    return []


#: A method as a caller may give it: a name, a ``module:Attr`` spec, a config table, an
#: optimizer class or factory, or a :class:`~gradkit.bench.methods.Method`.
MethodItem = Any


def _resolve(
    base: Suite, items: Sequence[MethodItem], paths: Sequence[str | os.PathLike[str]]
) -> list[BenchMethod]:
    """The methods ``items`` (names of ``base``, ``module:Attr`` specs, objects), in order."""
    loaded: list[Any] = []
    for item in items:
        if isinstance(item, str) and is_spec(item):
            loaded.append(load_method(item, paths=paths))
        elif isinstance(item, Mapping):
            loaded.append(_method_entry(item, paths))
        else:
            loaded.append(item)
    if all(isinstance(m, str) for m in loaded):
        return base.resolve_methods(loaded)
    if base.resolve is not None:
        raise BenchConfigError(
            f"your own optimizers can join optimizer suites only (default, lm, custom), not "
            f"the {base.name!r} suite, whose methods are of its own kind"
        )
    extra = base.extra_methods() if base.extra_methods is not None else None
    return list(resolve_methods([m.lower() if isinstance(m, str) else m for m in loaded], extra))


def _method_entry(entry: Mapping[str, Any], paths: Sequence[str | os.PathLike[str]]) -> Any:
    """A ``{name = "...", factory = "module:Attr"}`` method of a config file."""
    unknown = sorted(set(entry) - {"name", "factory"})
    if unknown or "factory" not in entry:
        raise BenchConfigError(
            f"a method table takes the keys name and factory (module:Attr), got {sorted(entry)}"
        )
    factory, name = entry["factory"], entry.get("name")
    if not isinstance(factory, str) or not is_spec(factory):
        raise BenchConfigError(
            f"a method's factory must be a 'module:Attr' string, got {factory!r}"
        )
    if name is not None and not isinstance(name, str):
        raise BenchConfigError(f"a method's name must be a string, got {name!r}")
    return load_method(factory, name, paths=paths)


def _with_spaces(
    methods: list[BenchMethod], spaces: Mapping[str, SearchSpace], unused: str
) -> list[BenchMethod]:
    by_name = {m.name: m for m in methods}
    for name in spaces:
        if name not in by_name and unused == "error":
            raise BenchConfigError(
                f"a search space is given for {name!r}, which is not among the selected methods "
                f"({', '.join(by_name)})"
            )
    out: list[BenchMethod] = []
    for m in methods:
        space = spaces.get(m.name)
        if space is None:
            out.append(m)
            continue
        if not isinstance(m, Method):
            raise BenchConfigError(f"{m.kind} method {m.name!r} takes no search space")
        out.append(dataclasses.replace(m, search_space=check_space(m.name, space)))
    return out


def comparison_suite(
    suite: str = "default",
    *,
    tasks: Sequence[str | Task[Any]] | None = None,
    methods: Sequence[MethodItem] | None = None,
    spaces: Mapping[str, SearchSpace] | None = None,
    paths: Sequence[str | os.PathLike[str]] = (),
    unused_spaces: str = "error",
) -> Suite:
    """The suite that runs exactly ``tasks`` with ``methods``.

    Args:
        suite: the built-in suite whose task and method names are meant (default
            ``"default"``).
        tasks: task names of ``suite``, task specs ``"module:factory"`` or
            :class:`~gradkit.bench.tasks.base.Task` objects; ``None``: all of ``suite``'s.
        methods: method names, specs ``"module:ClassOrFactory"``, config tables
            ``{"name": ..., "factory": ...}``, optimizer classes, factories or
            :class:`~gradkit.bench.methods.Method` objects; ``None``: the suite's defaults
            (:data:`CUSTOM_METHODS` with a user task).
        spaces: per-method search spaces (method name → :class:`SearchSpace`), checked.
        paths: folders searched for the specs' modules after the current directory.
        unused_spaces: ``"error"``: a search space for a method that is not selected is an
            error; ``"ignore"``: skip it (the command line replaced a config file's methods).

    Returns:
        ``suite`` itself (restricted to ``tasks``, with ``methods``) when every task is its
        own, or the ``custom`` suite (no verdicts) when a user task is among them.

    Raises:
        BenchConfigError: unknown names, a spec that fails (see :func:`load_task`), two tasks
            or methods of one name, user tasks mixed with a non-optimizer suite's tasks, or a
            bad search space.
    """
    base = get_suite(suite)
    picked: list[Task[Any]] = []
    for t in base.tasks.values() if tasks is None else tasks:
        if isinstance(t, str) and is_spec(t):
            picked.append(load_task(t, paths=paths))
        elif isinstance(t, str):
            picked.extend(base.select_tasks(parse_names([t], "task")))
        elif isinstance(t, Task):
            picked.append(t)
        else:
            raise BenchConfigError(
                f"a task must be a name, a 'module:factory' spec or a Task, got {type(t).__name__}"
            )
    if not picked:
        raise BenchConfigError("the task list is empty")
    own = {id(t) for t in base.tasks.values()}
    user = [t for t in picked if id(t) not in own]
    chosen: dict[str, Task[Any]] = {}
    for task in picked:
        if task.name in chosen:
            raise BenchConfigError(f"two tasks are named {task.name!r}; task names must differ")
        chosen[task.name] = task
    if user and base.resolve is not None:
        raise BenchConfigError(
            f"your own tasks train optimizers, so they join optimizer suites only (default, "
            f"lm), not the {base.name!r} suite"
        )
    if methods is None:
        items: list[MethodItem] = list(CUSTOM_METHODS if user else base.default_optimizers())
    else:
        items = list(methods)
        if not items:
            raise BenchConfigError("the method list is empty")
    if unused_spaces not in ("error", "ignore"):
        raise ValueError(f"unused_spaces must be 'error' or 'ignore', got {unused_spaces!r}")
    resolved = _with_spaces(_resolve(base, items, paths), dict(spaces or {}), unused_spaces)
    by_name = {m.name: m for m in resolved}
    fields: dict[str, Any] = {
        "tasks": chosen,
        "default_optimizers": lambda: list(by_name),
        "resolve": lambda wanted: [by_name[n] for n in wanted],
    }
    if user:
        shown = ", ".join(chosen)
        fields.update(
            name=CUSTOM_SUITE,
            description=f"your own comparison: {shown}",
            verdicts=_no_verdicts,
            plot=None,
            default_seeds=3,
            default_trials=8,
            prune=False,
        )
    return dataclasses.replace(base, **fields)
