"""Parsed YAML/JSON content as flat dotted keys, as the Java client reads YAML namespaces.

``{"server": {"port": 8080, "hosts": ["a", "b"]}}`` becomes ``server.port=8080``,
``server.hosts[0]=a``, ``server.hosts[1]=b``. Scalars are written as Java would print them
(``true``/``false``, ``1.5``), ``null`` as an empty string; an empty map or list yields no key.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

__all__ = ["flatten"]


def flatten(data: Any) -> dict[str, str]:
    """The dotted-key form of parsed content; a document that is not a mapping gives ``{}``."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            _walk(_key(key), value, out)
    return out


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "" if key is None else str(key)


def _walk(path: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = _key(key)
            _walk(f"{path}.{name}" if path else name, inner, out)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _walk(f"{path}[{index}]", inner, out)
    else:
        out[path] = _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return str(value)
