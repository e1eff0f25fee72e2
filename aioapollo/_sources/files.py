"""Namespace files on disk: the layout ``aioapollo config export`` writes, read by the client.

An export is ``DIR/<env>/<cluster>/<namespace>``. A client knows its cluster but not its
Apollo env (that is which servers it talks to), so the directory it is given is the **env
directory** (or anything laid out like one). For namespace ``N`` of a client of cluster ``C``
the first file that exists wins:

1. ``DIR/C/N``: the env directory of an export (``export/DEV``);
2. ``DIR/default/N`` when ``C`` is not ``default`` (Apollo falls back to the default cluster
   the same way);
3. ``DIR/N``: a flat directory, such as one cluster's directory of an export or a Kubernetes
   ConfigMap mounted as a volume (its keys become file names).

A properties namespace's file is a mapping of strings, as JSON or YAML (YAML needs PyYAML);
a text namespace's file (``x.json``, ``x.yaml``, ``x.xml``, ``x.txt``) is its content, with one
final newline that is not part of the value. Messages name files and keys, never values.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .._apollo.wire import CONTENT_KEY, namespace_format

__all__ = ["CONTENT", "FileProblem", "NamespaceFiles", "is_raw", "release_key"]

CONTENT = CONTENT_KEY


class FileProblem(ValueError):
    """A namespace file is missing or unusable; the message says which and why."""


def is_raw(namespace: str) -> bool:
    """Whether the namespace is kept as one text item (``x.json``, ``x.yaml``, ...)."""
    return namespace_format(namespace) != "properties"


def release_key(items: dict[str, str]) -> str:
    """A release key for file contents: equal contents, equal keys (no clock involved)."""
    blob = json.dumps(sorted(items.items()), ensure_ascii=False).encode()
    return "file-" + hashlib.sha256(blob).hexdigest()[:16]


def _mapping(path: Path, text: str) -> dict[str, str]:
    data: Any
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise FileProblem(
                f"{path} is not JSON, and YAML needs PyYAML: pip install 'aioapollo-client[yaml]'"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise FileProblem(f"{path} is not valid YAML or JSON{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileProblem(f"{path}: a properties namespace is a mapping of key: value")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise FileProblem(
                f'{path}: key {key!r}: values must be strings (quote them: "30", "true"), '
                "as in the files aioapollo config export writes"
            )
    return data


class NamespaceFiles:
    """The namespace files under one directory for a client's cluster (see the module)."""

    __slots__ = ("cluster", "root")

    def __init__(self, root: Path, cluster: str) -> None:
        self.root = root
        self.cluster = cluster

    def __repr__(self) -> str:
        return f"NamespaceFiles({str(self.root)!r}, cluster={self.cluster!r})"

    def candidates(self, namespace: str) -> list[Path]:
        """Where ``namespace``'s file may be, in the order they are tried."""
        dirs = [self.root / self.cluster]
        if self.cluster != "default":
            dirs.append(self.root / "default")
        dirs.append(self.root)
        return [d / namespace for d in dirs]

    def find(self, namespace: str) -> Path | None:
        for path in self.candidates(namespace):
            if path.is_file():
                return path
        return None

    def signature(self, namespaces: list[str]) -> tuple[object, ...]:
        """What changes when a namespace file is edited, added, removed or replaced: a cheap
        stat of each candidate (for the polling watcher)."""
        marks: list[object] = []
        for name in namespaces:
            for path in self.candidates(name):
                try:
                    st = os.stat(path)
                except OSError:
                    marks.append(None)
                else:
                    marks.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns))
        return tuple(marks)

    def read(self, namespace: str) -> dict[str, str] | None:
        """The namespace's items, or None when it has no file.

        Raises:
            FileProblem: The file cannot be read or is not a valid namespace file.
        """
        path = self.find(namespace)
        if path is None:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileProblem(f"cannot read {path}: {type(exc).__name__}") from None
        if is_raw(namespace):
            return {CONTENT: text[:-1] if text.endswith("\n") else text}
        return _mapping(path, text)

    def missing(self, namespace: str) -> str:
        """The message for a namespace without a file."""
        tried = ", ".join(str(p) for p in self.candidates(namespace))
        if not self.root.is_dir():
            return f"{self.root} is not a directory"
        hint = ""
        if any((self.root / d / self.cluster).is_dir() for d in _subdirs(self.root)):
            hint = " (this looks like an export's top directory: point at DIR/<env> instead)"
        return f"no file for it (looked for {tried}){hint}"


def _subdirs(root: Path) -> list[str]:
    try:
        return [p.name for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
