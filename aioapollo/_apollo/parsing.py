"""Parsing of json/yaml/yml namespace content into ``NamespaceSnapshot.data``.

YAML is read with ``yaml.safe_load`` only (PyYAML is an optional dependency): nothing from
the server is ever evaluated. A text that does not parse (an empty one included) keeps the
previous parsed value and reports why, so a bad publish never replaces good data with nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .wire import CONTENT_KEY

__all__ = ["parse_content", "require_parsers"]

_YAML_HINT = "pip install 'aioapollo-client[yaml]'"


def require_parsers(formats: Mapping[str, str]) -> None:
    """Raise ImportError naming the extra when a namespace's format needs a missing parser.

    Called by ``start()``, so a YAML namespace without PyYAML fails there, clearly, instead of
    starting with ``data`` None and failing later where the data is used.
    """
    yaml_names = sorted(name for name, fmt in formats.items() if fmt in ("yaml", "yml"))
    if not yaml_names:
        return
    try:
        import yaml  # noqa: F401
    except ImportError as exc:
        names = ", ".join(repr(name) for name in yaml_names)
        what = f"namespace {names} is" if len(yaml_names) == 1 else f"namespaces {names} are"
        raise ImportError(
            f"{what} YAML, and parsing YAML needs PyYAML, which is not installed: {_YAML_HINT}"
        ) from exc


def parse_content(fmt: str, items: Mapping[str, str], previous: Any) -> tuple[Any, str | None]:
    """Return ``(data, error)``: the parsed content, or ``previous`` and the reason it failed."""
    if fmt not in ("json", "yaml", "yml"):
        return None, None
    text = items.get(CONTENT_KEY)
    if text is None or not text.strip():
        return previous, f"{fmt} content is empty"
    if fmt == "json":
        try:
            return json.loads(text), None
        except ValueError as exc:
            return previous, f"invalid JSON at line {getattr(exc, 'lineno', '?')}"
    try:
        import yaml
    except ImportError:
        return previous, f"PyYAML is not installed ({_YAML_HINT})"
    try:
        return yaml.safe_load(text), None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return previous, f"invalid YAML{where}"
