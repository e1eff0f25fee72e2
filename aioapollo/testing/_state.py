"""The test server's state file: what a :class:`ReleaseStore` keeps across restarts.

The file is JSON, replaced atomically (a temporary file in the same directory, then a rename)
and created with mode 0600, since it holds configuration values and access-key secrets. Its
shape belongs to this package and may change between versions; ``version`` says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "VERSION", "read_state", "strings", "text", "write_state"]

FORMAT = "aioapollo-test-server-state"
VERSION = 1


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved state at ``path``, or ``None`` when there is no file yet.

    Raises:
        ValueError: The file cannot be read or is not a state file of this version. The
            message names the file, never its contents.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read state file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError(f"state file {path} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aioapollo test-server state file")
    if data.get("version") != VERSION:
        raise ValueError(
            f"state file {path} has version {data.get('version')!r}; this aioapollo reads "
            f"version {VERSION} (delete the file to start afresh)"
        )
    return data


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old file or the new one."""
    body = json.dumps({"format": FORMAT, "version": VERSION, **data}, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp makes it 0600
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def text(value: Any, what: str) -> str:
    """``value`` if it is a string, else a ``TypeError`` naming ``what`` (never the value)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    return value


def strings(value: Any, what: str) -> list[str]:
    """``value`` if it is a list of strings, else a ``TypeError`` naming ``what``."""
    if not isinstance(value, list):
        raise TypeError(f"{what} must be a list")
    return [text(item, what) for item in value]
