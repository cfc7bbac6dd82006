"""The layering rule, read off the source of every module of the package.

    _core  <-  _stores  <-  _runtime  <-  livingai (the public face)  <-  public packages

- `_core` imports only the standard library and `_core`;
- a private layer imports only from its own layer and the layers below it, never from
  the public face or a public package (`testing`, `demo`, and later `adapters`, `cli`,
  `web`), which import only the public face, `livingai`;
- a store never imports the engine;
- no module reaches into another module's underscore members (`x._name` where `_name` is
  not defined in the module itself, or `from m import _name`);
- the module-level imports form no loop;
- `import livingai` loads nothing outside the standard library (checked in a child).

Each failure names the file, the line and the import or member.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import livingai
from tests.test_package import _marked_lines, _run_python

PACKAGE = Path(livingai.__file__).resolve().parent
LAYERS = {"_core": 0, "_stores": 1, "_runtime": 2}
FACADE = 3  # livingai/__init__.py
PUBLIC = 4  # testing, demo, adapters, cli, web, __main__
# the public packages there are
PUBLIC_PARTS = ("testing", "demo", "cli", "adapters", "web", "__main__")
# Underscore names that are public API of the standard library (namedtuple's methods).
STDLIB_PUBLIC = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the module imported (for `from p import m`, p.m when m is a module)
    name: str | None  # the name taken from it, for `from m import name`
    top_level: bool  # run when the module is imported (not inside a function)


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package under `root`: dotted name -> file."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return FACADE
    return LAYERS.get(parts[1], PUBLIC)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The imports of a module, relative ones resolved, with where they run."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(child.lineno, alias.name, None, top_level)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    target = f"{base}.{alias.name}"
                    if target in known:
                        yield Import(child.lineno, target, None, top_level)
                    else:
                        yield Import(child.lineno, base, alias.name, top_level)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                yield from walk(child, False)  # never runs: no loop, still a dependency
            else:
                yield from walk(child, top_level)

    yield from walk(tree, True)


def _own_names(tree: ast.Module) -> set[str]:
    """Underscore names a module defines itself: its functions, classes, module names,
    attributes it assigns on self or cls, and attributes its classes declare."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return names


def foreign_underscores(path: Path) -> Iterator[tuple[int, str]]:
    """(line, `x._name`) for every underscore member the module reads off an object other
    than self or cls that it does not define itself."""
    tree = ast.parse(path.read_text(), str(path))
    own = _own_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in STDLIB_PUBLIC:
            continue
        holder = node.value
        if isinstance(holder, ast.Name) and holder.id in ("self", "cls"):
            continue
        if isinstance(holder, ast.Call) and getattr(holder.func, "id", None) == "super":
            continue
        if name in own:
            continue
        yield node.lineno, f"{ast.unparse(holder)}.{name}"


def _is_stdlib(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


def violations(root: Path) -> list[str]:
    """Every broken rule in the package at `root`, one line each."""
    modules = module_names(root)
    known = set(modules)
    found: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        where = path.relative_to(root.parent)
        mine = rank(module)
        for imp in imports(module, path, known):
            target = imp.module
            shown = target if imp.name is None else f"{target}.{imp.name}"
            at = f"{where}:{imp.line}: imports {shown}"
            if imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__"):
                found.append(f"{at}: an underscore name of another module")
            if not target.startswith("livingai"):
                if mine == LAYERS["_core"] and not _is_stdlib(target):
                    found.append(f"{at}: _core imports only the standard library")
                continue
            theirs = rank(target)
            if imp.top_level and target in graph:
                graph[module].add(target)
            if mine == PUBLIC:
                if target != "livingai" and rank(target) != PUBLIC:
                    found.append(f"{at}: a public package imports only `livingai`")
                continue
            if theirs > mine:
                found.append(f"{at}: a lower layer imports a higher one")
            if mine == LAYERS["_stores"] and target == "livingai._core.engine":
                found.append(f"{at}: a store never imports the engine")
        for line, member in foreign_underscores(path):
            found.append(f"{where}:{line}: uses {member}: another module's underscore member")
    found.extend(f"import loop: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one (depth-first search)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


# -- the rules hold ---------------------------------------------------------------------


def test_the_package_keeps_its_layers() -> None:
    found = violations(PACKAGE)
    assert not found, "the layering rule is broken:\n" + "\n".join(found)


def test_every_module_sits_in_a_known_place() -> None:
    """A new folder must be added to the map above (and the README's), not slip in."""
    for module in module_names(PACKAGE):
        parts = module.split(".")
        assert len(parts) == 1 or parts[1] in (*LAYERS, *PUBLIC_PARTS), module


# -- the checker catches what it is for ---------------------------------------------------


def _with(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """The violations of a copy of the package with `files` added or replaced."""
    copy = tmp_path / "livingai"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in files.items():
        (copy / name).write_text(textwrap.dedent(text))
    return violations(copy)


def test_a_store_importing_the_engine_is_caught(tmp_path: Path) -> None:
    found = _with(tmp_path, {"_stores/bad.py": "from .._core.engine import CheckpointEngine\n"})
    assert found == [
        "livingai/_stores/bad.py:1: imports livingai._core.engine.CheckpointEngine: "
        "a store never imports the engine"
    ]


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    found = _with(
        tmp_path,
        {
            "_core/bad.py": """
                def later():
                    from .._runtime import recovery
                    import redis
            """
        },
    )
    assert found == [
        "livingai/_core/bad.py:3: imports livingai._runtime.recovery: "
        "a lower layer imports a higher one",
        "livingai/_core/bad.py:4: imports redis: _core imports only the standard library",
    ]


def test_reaching_into_the_engine_is_caught(tmp_path: Path) -> None:
    found = _with(
        tmp_path,
        {
            "_runtime/bad.py": """
                from .._core.engine import CheckpointEngine, _check_framed

                def peek(engine: CheckpointEngine) -> int:
                    return len(engine._queue)
            """
        },
    )
    assert found == [
        "livingai/_runtime/bad.py:2: imports livingai._core.engine._check_framed: "
        "an underscore name of another module",
        "livingai/_runtime/bad.py:5: uses engine._queue: another module's underscore member",
    ]


def test_a_public_package_using_private_modules_is_caught(tmp_path: Path) -> None:
    found = _with(tmp_path, {"testing/bad.py": "from livingai._core.model import NodeRecord\n"})
    assert found == [
        "livingai/testing/bad.py:1: imports livingai._core.model.NodeRecord: "
        "a public package imports only `livingai`"
    ]


def test_an_import_loop_is_caught(tmp_path: Path) -> None:
    found = _with(
        tmp_path,
        {"_stores/ping.py": "from . import pong\n", "_stores/pong.py": "from . import ping\n"},
    )
    assert found == [
        "import loop: livingai._stores.ping -> livingai._stores.pong -> livingai._stores.ping"
    ]


# -- `import livingai` is standard library only ---------------------------------------------

_FOREIGN_MODULES_SCRIPT = """
import json
import sys

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import livingai  # noqa: E402

def allowed(name):
    top = name.partition(".")[0]
    return (
        top == "livingai"
        or top in sys.stdlib_module_names
        or name in sys.builtin_module_names
        or name == "__main__"
    )

everything = sorted(sys.modules)
added = sorted(set(sys.modules) - before)
print("FILE=" + livingai.__file__)
print("ADDED=" + json.dumps(added))
print("FOREIGN_ALL=" + json.dumps([n for n in everything if not allowed(n)]))
print("FOREIGN_ADDED=" + json.dumps([n for n in added if not allowed(n)]))
"""


def test_import_loads_only_stdlib_modules_without_site(tmp_path: Path) -> None:
    """With site disabled nothing but the stdlib and livingai can be in sys.modules."""
    result = _run_python(_FOREIGN_MODULES_SCRIPT, str(PACKAGE.parent), flags=("-S",), cwd=tmp_path)
    lines = _marked_lines(result.stdout)
    assert Path(lines["FILE"]).resolve() == Path(livingai.__file__).resolve()
    assert "livingai._core.engine" in json.loads(lines["ADDED"])  # it really was imported
    assert json.loads(lines["FOREIGN_ALL"]) == []


def test_import_adds_only_stdlib_modules_with_site(tmp_path: Path) -> None:
    """As installed (site enabled): importing livingai adds no third-party module."""
    lines = _marked_lines(_run_python(_FOREIGN_MODULES_SCRIPT, cwd=tmp_path).stdout)
    assert "livingai._stores.sqlite" in json.loads(lines["ADDED"])
    assert json.loads(lines["FOREIGN_ADDED"]) == []
