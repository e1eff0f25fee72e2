"""Apollo wire details shared by the client and the test server: escaping and naming rules.

Everything here is pure. Query values use the form escaping of Apollo's Java client (letters,
digits and ``-_.*`` kept, space as ``+``, everything else, ``+`` included, as ``%XX``), because
the server decodes query strings form-style: a raw ``+`` would arrive as a space.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "APP_ID_PATTERN",
    "CONTENT_KEY",
    "FORMATS",
    "build_query",
    "form_escape",
    "namespace_format",
    "path_escape",
    "strip_properties",
    "watch_key",
]

#: Non-properties namespaces keep the whole file text under this single key.
CONTENT_KEY = "content"
#: Namespace formats Apollo knows, taken from the namespace name's suffix.
FORMATS = frozenset({"properties", "xml", "json", "yml", "yaml", "txt"})
#: appIds a v2.5.2+ config service accepts; anything else is answered with 400 InvalidAppId.
APP_ID_PATTERN = re.compile(r"[0-9a-zA-Z_-]+[0-9a-zA-Z_.-]*")

_PATH_SAFE = "-._~!$'()*,;&=@:+"
_PROPERTIES_SUFFIX = ".properties"


# Short values are escaped once and remembered: a client sends the same appId, cluster,
# namespace and ip with every request, and escaping them again cost more than building the
# rest of the URL. Long ones (the notifications and messages JSON) change with nearly every
# request: they would only push those out, and hold on to large strings.
_REMEMBERED = 64  # characters


def form_escape(value: str) -> str:
    """Escape one query value the way Apollo's Java client does (``+`` becomes ``%2B``)."""
    if len(value) <= _REMEMBERED:
        return _form_escape_short(value)
    return quote_plus(value, safe="-_.*")


@functools.lru_cache(maxsize=256)
def _form_escape_short(value: str) -> str:
    return quote_plus(value, safe="-_.*")


def path_escape(segment: str) -> str:
    """Escape one path segment (space becomes ``%20``; ``+`` is kept, as Guava does)."""
    if len(segment) <= _REMEMBERED:
        return _path_escape_short(segment)
    return quote(segment, safe=_PATH_SAFE)


@functools.lru_cache(maxsize=256)
def _path_escape_short(segment: str) -> str:
    return quote(segment, safe=_PATH_SAFE)


def build_query(params: Iterable[tuple[str, str | None]]) -> str:
    """Join ``(name, value)`` pairs into a query string, skipping ``None`` values."""
    return "&".join(f"{name}={form_escape(value)}" for name, value in params if value is not None)


def namespace_format(namespace: str) -> str:
    """Return the format of a namespace from its name's suffix (``properties`` when none)."""
    _, dot, suffix = namespace.rpartition(".")
    suffix = suffix.lower()
    return suffix if dot and suffix in FORMATS else "properties"


def strip_properties(namespace: str) -> str:
    """Drop a trailing ``.properties`` (any case), as the server does before lookups."""
    if namespace.lower().endswith(_PROPERTIES_SUFFIX):
        return namespace[: -len(_PROPERTIES_SUFFIX)]
    return namespace


def watch_key(app_id: str, cluster: str, namespace: str) -> str:
    """The release-message key ``appId+cluster+namespace`` used in ``messages.details``."""
    return f"{app_id}+{cluster}+{namespace}"
