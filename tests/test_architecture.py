"""Floors: which gradkit package may import which (docs/architecture.md draws the picture).

An ``ast`` scan of every module under ``src/gradkit`` (imports inside functions and under
``TYPE_CHECKING`` included, and ``importlib.import_module`` of a gradkit path written as a
string) gives the import graph. The tests fail on

* an import from a lower floor to a higher one (an *upward* import), or of/from a package that
  has no floor yet (place it in :data:`FLOORS` and in docs/architecture.md);
* an import cycle between gradkit packages, or between modules;
* ``import gradkit.<core>`` loading a package above it (checked in a fresh interpreter);
* a source file over 600 lines.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gradkit"
MAX_LINES = 600

#: The floors, from the ground up. A module may import from its own package and from any
#: package on a lower floor or on its own floor (a sideways import), provided the package graph
#: stays acyclic. Packages listed here that do not exist yet are the families announced in
#: docs/architecture.md; they get their floor now so that adding one needs no change here.
FLOORS: dict[str, int] = {
    # 0 -- leaves: import nothing from gradkit
    "gradkit": 0,  # the package's own __init__ (only __version__)
    "_validation": 0,
    "_specs": 0,
    # 1 -- cores: pure math on tensors
    "transforms": 1,
    "mtl": 1,
    "comm": 1,
    "zo": 1,
    "coding": 1,
    # 2 -- shells: stateful wrappers, integrations
    "optim": 2,
    "fed": 2,
    "diagnostics": 2,
    "schedulers": 2,
    "data": 2,
    "nn": 2,
    "estimators": 2,
    "diffusion": 2,
    "rl": 2,
    "text": 2,
    # 3 -- the registry, which lists every family
    "registry": 3,
    # 4 -- tools driven by the registry
    "bench": 4,
    "testing": 4,
    # 5 -- the command line
    "cli": 5,
    "__main__": 5,  # `python -m gradkit`: the command line
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every gradkit import in ``path``, at any depth."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "gradkit":  # from gradkit import _validation, registry, ...
                out += [(f"gradkit.{alias.name}", node.lineno) for alias in node.names]
            else:
                out.append((target, node.lineno))
    if _calls_import_module(tree):
        # importlib.import_module("gradkit.x") by a string: count every gradkit module path
        # written as a string constant in this module as an import.
        out += [
            (node.value, node.lineno)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"gradkit(\.\w+)+", node.value)
        ]
    return [(name, line) for name, line in out if name.split(".")[0] == "gradkit"]


def _calls_import_module(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
        )
        for node in ast.walk(tree)
    )


def _unit(module: str) -> str:
    """The package (or root module) a module belongs to: ``gradkit.optim._adamp`` → ``optim``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gradkit"


def _scan() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _package_edges(
    scan: dict[str, list[tuple[str, int]]],
) -> dict[tuple[str, str], list[str]]:
    """``(importer package, imported package) -> ["module:line", ...]``."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, imports in scan.items():
        for target, line in imports:
            a, b = _unit(module), _unit(target)
            if a != b:
                edges[a, b].append(f"{module}:{line}")
    return edges


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


# ---------------------------------------------------------------------------- the floors
def test_every_package_has_a_floor() -> None:
    units = {_unit(module) for module in _scan()}
    missing = sorted(units - set(FLOORS))
    assert not missing, (
        f"packages without a floor: {missing}; add them to FLOORS in tests/test_architecture.py "
        "and to the picture in docs/architecture.md"
    )


def test_no_upward_import() -> None:
    upward = [
        f"{a} (floor {FLOORS.get(a)}) imports {b} (floor {FLOORS.get(b)}) at {', '.join(where)}"
        for (a, b), where in sorted(_package_edges(_scan()).items())
        if a not in FLOORS or b not in FLOORS or FLOORS[b] > FLOORS[a]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_leaves_import_nothing_from_gradkit() -> None:
    scan = _scan()
    leaves = [m for m in scan if FLOORS.get(_unit(m)) == 0]
    assert {"gradkit._validation", "gradkit._specs", "gradkit"} <= set(leaves)
    bad = [f"{m} imports {t} (line {line})" for m in leaves for t, line in scan[m]]
    assert not bad, "leaf modules must not import gradkit:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    edges = _package_edges(_scan())
    for a, b in edges:
        graph[a].add(b)
    cycle = _find_cycle(graph) or []
    where = [f"{a} -> {b}: {', '.join(edges[a, b])}" for a, b in itertools.pairwise(cycle)]
    assert not cycle, "package import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(where)


def test_no_import_cycle_between_modules() -> None:
    """Also inside a package (function-level imports included: a lazy import that closes a
    cycle is how the registry <-> optim cycle of issue 10 hid)."""
    scan = _scan()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in scan.items():
        for target, _ in imports:
            # `from gradkit.pkg import name` may name a module or an attribute of pkg/__init__
            node = target if target in scan else target.rpartition(".")[0]
            if node in scan and node != module and not module.startswith(node + "."):
                graph[module].add(node)
    cycle = _find_cycle(graph)
    assert cycle is None, "module import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    """The helpers themselves: a synthetic graph with a cycle is found, an acyclic one is not."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert _unit("gradkit.optim._adamp") == "optim" and _unit("gradkit") == "gradkit"
    assert FLOORS["mtl"] < FLOORS["optim"] < FLOORS["registry"] < FLOORS["testing"]


def test_the_scan_sees_function_level_and_string_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A synthetic core module with an upward import hidden in a function and another by a
    string: the scan reports both edges, and both are upward."""
    core = tmp_path / "gradkit" / "mtl"
    core.mkdir(parents=True)
    (core / "_bad.py").write_text(
        "import importlib\n\n"
        "def f():\n"
        "    from gradkit.optim import DiffGrad\n"
        "    from .. import registry\n"
        "    return importlib.import_module('gradkit.cli'), DiffGrad, registry\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    scan = {_module_name(core / "_bad.py"): _imports(core / "_bad.py")}
    edges = set(_package_edges(scan))
    assert edges == {("mtl", "optim"), ("mtl", "registry"), ("mtl", "cli")}
    assert all(FLOORS[b] > FLOORS[a] for a, b in edges)


# ---------------------------------------------------------------------------- what loads
@pytest.mark.parametrize("package", ["_specs", "_validation", "transforms", "mtl", "comm"])
def test_importing_a_low_floor_loads_nothing_above_it(package: str) -> None:
    """``import gradkit.mtl`` must not import gradkit.optim (issue 10), and so on for every
    package below the shells."""
    above = sorted(name for name, floor in FLOORS.items() if floor > FLOORS[package])
    code = (
        "import sys\n"
        f"import gradkit.{package}\n"
        f"above = {above!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradkit' and len(m.split('.')) "
        "> 1 and m.split('.')[1] in above))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    if os.environ.get("GRADKIT_REQUIRE_INSTALLED"):
        env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import gradkit.{package} loaded {result.stdout}"


# ---------------------------------------------------------------------------- file sizes
def test_no_source_file_over_600_lines() -> None:
    """No file under src/ over 600 lines (split by topic). Lists every offender.

    Expected to fail until the optim and bench splits of issue 10 land (when this test was
    written: bench/suites/fed.py, optim/_adabelief.py, optim/_adamp.py, optim/_sophia.py)."""
    sizes = [
        (path, len(path.read_text(encoding="utf-8").splitlines()))
        for path in sorted(SRC.rglob("*.py"))
    ]
    long = [f"{path.relative_to(SRC.parent)}: {n} lines" for path, n in sizes if n > MAX_LINES]
    assert not long, f"source files over {MAX_LINES} lines:\n" + "\n".join(long)
