"""The extras install what their names promise, and every message naming one names a real one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def extras() -> dict[str, set[str]]:
    """Each extra of pyproject.toml and the distribution names it requires."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    return {
        name: {Requirement(req).name.lower() for req in reqs}
        for name, reqs in project["optional-dependencies"].items()
    }


def test_the_fastapi_extra_installs_fastapi() -> None:
    # It once installed Starlette only, and the README's FastAPI app failed to import.
    assert "fastapi" in extras()["fastapi"]


def test_the_starlette_extra_is_for_starlette_only_apps() -> None:
    assert extras()["starlette"] == {"starlette"}


def test_every_extra_named_in_the_package_exists() -> None:
    named = {
        (path.relative_to(ROOT).as_posix(), extra)
        for path in (ROOT / "aioapollo").rglob("*.py")
        # Two letters at least: ``aioapollo-client[x]`` is a placeholder in prose.
        for extra in re.findall(
            r"aioapollo-client\[([a-z]{2,}(?:,[a-z]{2,})*)\]", path.read_text("utf-8")
        )
    }
    assert named, "no message names an extra: the pattern is wrong"
    known = extras()
    missing = [(where, e) for where, extra in named for e in extra.split(",") if e not in known]
    assert missing == []
