"""A namespace as text, as the portal's text editor reads it: properties lines (``key = value``,
``#``/``!`` comments) or a whole document for the other formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

from ..._apollo.wire import CONTENT_KEY, namespace_format
from .model import bad

__all__ = ["check_syntax", "parse_text"]


def _properties(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, separator, value = stripped.partition("=")
        if not separator:
            raise bad(f"line:{number} key value must separate by '='")
        key = key.strip()
        if not key:
            raise bad(f"line:{number} key can not be empty")
        if key in found:
            raise bad(f"key:{key} is duplicated")
        found[key] = value.strip()
    return found


def parse_text(namespace: str, text: str) -> dict[str, str]:
    """The items a text stands for in this namespace."""
    if namespace_format(namespace) == "properties":
        return _properties(text)
    return {CONTENT_KEY: text}


def check_syntax(fmt: str, text: str) -> None:
    """400 unless ``text`` parses as ``fmt`` (yaml only when PyYAML is installed)."""
    try:
        if fmt == "properties":
            _properties(text)
        elif fmt == "json":
            json.loads(text)
        elif fmt == "xml":
            ElementTree.fromstring(text)
        elif fmt in ("yaml", "yml"):
            try:
                import yaml
            except ImportError:  # pragma: no cover - PyYAML is in the test extra
                return
            yaml.safe_load(text)
    except (ValueError, ElementTree.ParseError) as exc:
        raise bad(f"invalid {fmt} content: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml at module level
        raise bad(f"invalid {fmt} content: {type(exc).__name__}") from None
