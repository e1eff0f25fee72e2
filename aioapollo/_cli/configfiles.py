"""The files of ``aioapollo config``: reading ``DIR/<env>/<cluster>/<namespace>``, checking them
before anything is sent (format, the export mask, value lengths), and writing an export.

A text namespace (``x.json``, ``x.yaml``, ``x.xml``, ``x.txt``) is stored by Apollo as one
``content`` item; its file is that text followed by one newline, which is not part of the value
(so an editor's final newline changes nothing, and a value ending in a newline round-trips).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._apollo.parsing import parse_content
from .._apollo.wire import CONTENT_KEY, namespace_format
from .common import EXIT_REJECTED, EXIT_USAGE, CommandFailed

__all__ = [
    "APOLLO_VALUE_LIMIT",
    "CONTENT",
    "MASK",
    "Target",
    "check_lengths",
    "dump_mapping",
    "export_text",
    "is_raw",
    "load_targets",
    "looks_secret",
    "value_length",
]

MASK = "******"
CONTENT = CONTENT_KEY
#: Apollo's default ``item.value.length.limit`` (a portal admin can raise it per app/namespace).
APOLLO_VALUE_LIMIT = 20_000

_SECRET = re.compile(
    r"(?i)(pass(word|wd)?|pwd|secret|token|credential|private[-_.]?key|api[-_.]?key|"
    r"access[-_.]?key|auth)"
)
_NOTHING = "nothing changed"


def looks_secret(key: str) -> bool:
    """Whether a key's name suggests its value is a secret (password, token, key, ...)."""
    return _SECRET.search(key) is not None


def is_raw(namespace: str) -> bool:
    """Whether the namespace is kept as raw text (``x.json``, ``x.yaml``, ...)."""
    return namespace_format(namespace) != "properties"


@dataclass
class Target:
    """One namespace of the desired state."""

    env: str
    cluster: str
    namespace: str
    path: Path
    values: dict[str, str] = field(repr=False)  # {"content": text} for a raw namespace
    #: Keys whose file value is the export mask: "keep what the portal holds".
    masked: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.env}/{self.cluster}/{self.namespace}"


def _load_mapping(path: Path, text: str) -> tuple[dict[str, str], frozenset[str]]:
    data: Any
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise CommandFailed(
                EXIT_USAGE,
                f"{path} is not JSON, and YAML needs PyYAML: pip install 'aioapollo-client[yaml]'",
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # The line number only: PyYAML's own text quotes the line, which may hold a value.
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise CommandFailed(EXIT_USAGE, f"{path} is not valid YAML or JSON{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CommandFailed(
            EXIT_USAGE, f"{path}: a properties namespace is a mapping of key: value"
        )
    result = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CommandFailed(
                EXIT_USAGE,
                f'{path}: key {key!r}: values must be strings (quote them: "30", "true"), '
                "so YAML cannot turn 010 into 8 or on into true",
            )
        result[key] = value
    masked = frozenset(k for k, v in result.items() if v == MASK and looks_secret(k))
    return result, masked


def stored_text(text: str) -> str:
    """What Apollo stores for a text namespace's file: the text without one final newline."""
    return text[:-1] if text.endswith("\n") else text


def export_text(content: str) -> str:
    """The file for a text namespace's stored content (:func:`stored_text` reverses it)."""
    return content + "\n"


def _format_problem(namespace: str, content: str) -> str | None:
    """Why clients could not parse this content (``None``: they can, or it is plain text)."""
    fmt = namespace_format(namespace)
    if fmt in ("json", "yaml", "yml"):
        _data, error = parse_content(fmt, {CONTENT: content}, None)
        return error
    if fmt == "xml":
        from xml.etree import ElementTree

        if not content.strip():
            return "xml content is empty"
        try:
            ElementTree.fromstring(content)
        except ElementTree.ParseError as exc:
            return f"invalid XML ({exc})"
    return None


def load_targets(root: Path) -> list[Target]:
    """The desired state under ``root`` (sorted by env, cluster, namespace), each file checked.

    Raises:
        CommandFailed: ``EXIT_USAGE``: no such directory, no files, a file that cannot be read,
            a malformed properties file, or a typed namespace its clients could not parse.
    """
    if not root.is_dir():
        raise CommandFailed(EXIT_USAGE, f"{root} is not a directory")
    targets = []
    for env_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for cluster_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in cluster_dir.iterdir() if p.is_file()):
                if path.name.startswith("."):
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise CommandFailed(EXIT_USAGE, f"cannot read {path}: {exc}") from None
                masked: frozenset[str] = frozenset()
                if is_raw(path.name):
                    values = {CONTENT: stored_text(text)}
                    problem = _format_problem(path.name, values[CONTENT])
                    if problem:
                        raise CommandFailed(
                            EXIT_USAGE,
                            f"{path}: {problem}; running clients would keep their last parsed "
                            f"value, so it is not sent: {_NOTHING}",
                        )
                else:
                    values, masked = _load_mapping(path, text)
                targets.append(
                    Target(env_dir.name, cluster_dir.name, path.name, path, values, masked)
                )
    if not targets:
        raise CommandFailed(EXIT_USAGE, f"{root} has no DIR/<env>/<cluster>/<namespace> files")
    return targets


def value_length(value: str) -> int:
    """A value's length as the portal counts it (Java's ``String.length()``: UTF-16 units)."""
    return len(value.encode("utf-16-le")) // 2


def check_lengths(targets: Iterable[Target], limit: int) -> None:
    """Refuse values longer than ``limit`` (0: no check) before anything is sent.

    Raises:
        CommandFailed: ``EXIT_REJECTED``, naming each value that is too long.
    """
    if limit <= 0:
        return
    long = [
        f"{target.name}: {key} ({value_length(value):,} characters)"
        for target in targets
        for key, value in sorted(target.values.items())
        if value_length(value) > limit
    ]
    if long:
        raise CommandFailed(
            EXIT_REJECTED,
            f"value(s) longer than {limit:,} characters, which the portal would refuse "
            f"(Apollo's default item.value.length.limit is {APOLLO_VALUE_LIMIT:,}; a portal "
            "admin can raise it for an app or namespace, then pass --max-value-length N, or 0 "
            f"to not check): {'; '.join(long)}; {_NOTHING}",
        )


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})


def dump_mapping(values: Mapping[str, str]) -> str:
    """YAML (one ``key: "value"`` line each, sorted; every value double-quoted, so nothing is
    read back as a number or a boolean), or JSON when PyYAML is not installed to read it."""
    try:
        import yaml  # noqa: F401 - only to know `apply` can read YAML back
    except ImportError:
        return json.dumps(dict(sorted(values.items())), indent=2, ensure_ascii=False) + "\n"
    if not values:
        return "{}\n"
    lines = []
    for key, value in sorted(values.items()):
        plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
        shown = key if plain else json.dumps(key, ensure_ascii=False)
        lines.append(f"{shown}: {json.dumps(value, ensure_ascii=False)}\n")
    return "".join(lines)
