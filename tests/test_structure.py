"""The shape of the code: module size, public seams between objects, import cycles.

An AST check over ``src/mangostore``; it fails when any of these comes back:

- a module over 600 lines;
- an access to another object's underscore attribute (``other._name``), outside the
  module that defines that attribute (``self``, ``cls`` and ``super()`` aside): a
  service that needs one has found a missing public seam;
- an import of an underscore name from another mangostore module;
- an import cycle among modules (imports inside functions and ``if TYPE_CHECKING:``
  count): services type the database they receive with protocols of what they use
  (``ports`` modules), so nothing below the facade imports it back;
- SQL reading the schema (``sqlite_schema``, ``PRAGMA table_info``, ``index_list``,
  ``foreign_key_list``...) outside :mod:`mangostore.schema.introspect`, the one module
  that reads it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "mangostore"
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()

#: The schema table under its names, and the pragmas (statement or table-valued
#: function) that describe tables, columns, indexes and foreign keys.
SCHEMA_READ = re.compile(
    r"sqlite_(?:master|schema|temp_master|temp_schema)"
    r"|(?:table_x?info|table_list|index_list|index_x?info|foreign_key_list)\b",
    re.IGNORECASE,
)
INTROSPECTION = "mangostore.schema.introspect"
SCHEMA_READERS = {
    INTROSPECTION,
}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def private_names_defined(tree: ast.Module) -> set[str]:
    """Underscore names a module defines: methods, class attributes, ``self._x =``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def reach_throughs(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Accesses of other objects' underscore attributes the module does not define."""
    own = private_names_defined(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in own:
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super":
            continue
        yield node.lineno, f"{ast.unparse(value)}.{name}"


def schema_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """String constants naming the schema table or a schema pragma (docstrings aside)."""
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = SCHEMA_READ.search(node.value)
            if found is not None and id(node) not in docstrings:
                yield node.lineno, found.group(0)


def imported_modules(name: str, tree: ast.Module) -> set[str]:
    """The mangostore modules ``name`` imports anywhere (functions and TYPE_CHECKING too)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from package import module" imports the module itself.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target.startswith("mangostore") and target != name:
                found.add(target)
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.add(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by responsibility"


def test_no_object_reaches_into_another_objects_private_parts() -> None:
    found = [
        f"{MODULES[name].relative_to(SRC)}:{line}: {text}"
        for name in sorted(MODULES)
        for line, text in reach_throughs(parse(MODULES[name]))
    ]
    assert found == [], "add a public seam instead of:\n" + "\n".join(found)


def test_no_underscore_name_is_imported_from_another_module() -> None:
    found = []
    for path in MODULES.values():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mangostore"):
                found += [
                    f"{path.relative_to(SRC)}:{node.lineno}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert found == []


def test_no_import_cycle() -> None:
    graph = {name: imported_modules(name, parse(path)) for name, path in MODULES.items()}
    cycles = [sorted(component) for component in strongly_connected(graph)]
    assert cycles == [], f"import cycles: {cycles}"


def test_nothing_below_the_facade_imports_it() -> None:
    """Only the package root, opening and the command line (above it) import db.py."""
    above = {"mangostore", "mangostore.opening"}
    importers = sorted(
        name
        for name, path in MODULES.items()
        if "mangostore.db" in imported_modules(name, parse(path))
        and name not in above
        and not name.startswith("mangostore.cli")
    )
    assert importers == []


def test_only_the_introspection_module_reads_the_schema() -> None:
    found = [
        f"{MODULES[name].relative_to(SRC)}:{line}: {text}"
        for name in sorted(MODULES)
        if name not in SCHEMA_READERS
        for line, text in schema_reads(parse(MODULES[name]))
    ]
    assert found == [], f"call {INTROSPECTION} instead of:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for() -> None:
    """The checks themselves find a reach-through, a private import and a cycle."""
    tree = ast.parse(
        "from mangostore.x import _hidden\n"
        "class A:\n    def f(self, other):\n        return other._secret + self._mine\n"
    )
    assert [text for _, text in reach_throughs(tree)] == ["other._secret"]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    assert "mangostore.engine.store" in imported_modules(
        "mangostore.db", parse(MODULES["mangostore.db"])
    )


def test_the_schema_check_sees_what_it_looks_for() -> None:
    """It finds schema SQL in plain and f-strings, passes over docstrings and other
    SQL, and its allow-list names modules that exist and do read the schema."""
    tree = ast.parse(
        '"""Reads sqlite_master."""\n'
        "def f(conn, t):\n"
        '    """Uses PRAGMA table_info."""\n'
        "    conn.execute(\"SELECT name FROM sqlite_schema WHERE type = 'table'\")\n"
        '    conn.execute(f"PRAGMA index_list({t})")\n'
        "    conn.execute('SELECT \"from\" FROM pragma_foreign_key_list(?)', (t,))\n"
        '    return conn.execute("PRAGMA foreign_key_check")\n'
    )
    assert sorted(text for _, text in schema_reads(tree)) == [
        "foreign_key_list",
        "index_list",
        "sqlite_schema",
    ]
    assert set(MODULES) >= SCHEMA_READERS
    for name in SCHEMA_READERS:
        assert list(schema_reads(parse(MODULES[name]))) != [], f"{name} reads no schema"
