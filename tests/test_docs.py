"""The complete programs in this branch's docs run as they are (each in a fresh interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _programs() -> list[tuple[str, str]]:
    found = []
    for path in (DOCS / "settings.md", DOCS / "observability.md", DOCS.parent / "README.md"):
        name = path.name
        for i, block in enumerate(_BLOCK.findall(path.read_text("utf-8"))):
            if "asyncio.run(main())" in block:
                found.append((f"{name}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "code"), _programs(), ids=[w for w, _ in _programs()])
def test_doc_program_runs(where: str, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, f"{where}:\n{done.stderr}"
    assert done.stdout.strip(), where
