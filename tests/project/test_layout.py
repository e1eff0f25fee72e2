"""The package's import graph: no circles (type-only and function-level imports included),
the core sees sharing only through its package's exports, and the command line uses public
names (plus the few pure helpers listed here)."""

from __future__ import annotations

import ast
from pathlib import Path

import aioapollo

ROOT = Path(aioapollo.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(["aioapollo", *parts])] = path
    return found


MODULES = _modules()


def _targets(name: str, path: Path) -> set[str]:
    """Every module name ``name`` imports anywhere in its text, as written (resolved)."""
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
            targets.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if f"{module}.{alias.name}" in MODULES
            )
    return {t for t in targets if t == "aioapollo" or t.startswith("aioapollo.")}


def _edges(name: str) -> set[str]:
    """Modules of the package that ``name`` depends on (the packages on the way included,
    its own ancestors excluded: importing a submodule runs its package first anyway)."""
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    edges = set()
    for target in _targets(name, MODULES[name]):
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step in MODULES and step not in ancestors and step != name:
                edges.add(step)
    return edges


def test_no_import_circles_anywhere() -> None:
    graph = {name: _edges(name) for name in MODULES}
    # The walk sees edges (the test server's split along Apollo's aggregates included).
    assert "aioapollo._core.store" in graph["aioapollo._core.engine"]
    server = graph["aioapollo.testing._server"]
    assert server >= {"aioapollo.testing._routes.openapi", "aioapollo.testing._portal"}
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


def test_the_core_sees_sharing_only_through_its_exports() -> None:
    assert "aioapollo._core.engine" in MODULES  # the walk below sees the core
    for name in MODULES:
        if name.startswith("aioapollo._core"):
            private = {
                t for t in _targets(name, MODULES[name]) if t.startswith("aioapollo._share.")
            }
            assert private == set(), (name, private)


#: What the command line may import besides public names and its own modules: pure protocol
#: helpers, sharing's exports (the agent prints its group), and the public subpackages whose
#: commands it is (the test server it serves, the portal client, encryption).
CLI_MAY_USE = (
    "aioapollo._apollo.wire",
    "aioapollo._apollo.parsing",
    "aioapollo._share",
    "aioapollo.testing",
    "aioapollo.openapi",
    "aioapollo.crypto",
)


def test_the_command_line_uses_public_names() -> None:
    assert "aioapollo._cli.agent" in MODULES  # the walk below sees the command line
    for name in MODULES:
        if not (name == "aioapollo._cli" or name.startswith("aioapollo._cli.")):
            continue
        for target in _targets(name, MODULES[name]):
            if target in ("aioapollo", "aioapollo._cli") or target.startswith("aioapollo._cli."):
                continue
            if target.startswith(CLI_MAY_USE) and not target.startswith("aioapollo._share."):
                continue
            raise AssertionError(f"{name} imports {target}")
