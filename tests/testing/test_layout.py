"""The test server's modules import each other without circles, type-only imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import aioapollo.testing

PACKAGE = "aioapollo.testing"
ROOT = Path(aioapollo.testing.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([PACKAGE, *parts])] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its text (also under
    ``if TYPE_CHECKING:`` and inside functions), with the packages on the way to them."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step in known and step not in ancestors and step != name:
                edges.add(step)
    return edges


def test_no_import_circles_in_the_test_server() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph[f"{PACKAGE}._server"] >= {f"{PACKAGE}._routes.openapi", f"{PACKAGE}._portal"}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_portal_is_split_along_apollos_aggregates() -> None:
    names = {path.stem for path in (ROOT / "_portal").glob("*.py")}
    assert {"apps", "items", "releases", "gray", "access"} <= names
    assert {path.stem for path in (ROOT / "_routes").glob("*.py")} >= {
        "apollo",
        "control",
        "openapi",
    }
    longest = max(len(path.read_text().splitlines()) for path in ROOT.rglob("*.py"))
    assert longest < 700
