"""The import structure of app/ (STYLE.md): packages depend on each other without cycles, `core` and the wire
contract (`messages`) import no domain, and only the composition modules import the composition root.

Imports are read from the source (ast), at every level, except those only a type checker follows
(`if TYPE_CHECKING:`).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
COMPOSITION = {"app.main", "app.cli", "app.resources", "app.__main__"}  # what wires everything together
INDEPENDENT = {"app.core", "app.messages", "app.audit"}  # imported by domains, importing none of them


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """The unit the layering is about: app.<package> (app.core, app.users, ..., app.main)."""
    return ".".join(module.split(".")[:2])


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # what only the type checker sees
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in APP.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        imported = {name for name in _runtime_imports(ast.parse(path.read_text())) if name in modules}
        graph[module] = imported - {module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the path around it, or None."""
    state: dict[str, int] = {}  # 1 being visited, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = _package(module)
        packages.setdefault(here, set()).update(_package(t) for t in targets if _package(t) != here)
    return packages


def test_no_module_imports_itself_through_others() -> None:
    assert _cycle(_graph()) is None


def test_packages_depend_on_each_other_without_cycles() -> None:
    assert _cycle(_packages(_graph())) is None


@pytest.mark.parametrize("package", sorted(INDEPENDENT))
def test_core_the_wire_contract_and_the_audit_trail_import_no_domain(package: str) -> None:
    imported = _packages(_graph()).get(package, set())
    assert imported <= INDEPENDENT - {package} - ({"app.audit"} if package == "app.core" else set())


def test_only_the_composition_modules_import_the_composition_root() -> None:
    importers = {module for module, targets in _graph().items() if targets & COMPOSITION}
    assert importers <= COMPOSITION


def test_a_cycle_is_found_where_there_is_one() -> None:
    # The check itself: it would pass vacuously if it could not see a cycle.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
