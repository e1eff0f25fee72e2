"""HTTP helpers of the test server: query decoding, JSON bodies and the Java error bodies."""

from __future__ import annotations

import datetime
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

__all__ = [
    "JSON",
    "JSON_UTF8",
    "decode_segment",
    "dumps",
    "empty",
    "gson_error",
    "json_response",
    "parse_query",
    "split_target",
    "spring_error",
]

JSON = "application/json"
JSON_UTF8 = "application/json;charset=UTF-8"


def split_target(raw_path: str) -> tuple[str, str]:
    """Split a raw request target into its (still encoded) path and query string."""
    path, _, query = raw_path.partition("?")
    return path, query


def parse_query(query: str) -> dict[str, str]:
    """Decode a raw query string form-style, as a servlet container does.

    A raw ``+`` becomes a space and ``%2B`` becomes ``+``. For a repeated name the first
    value wins (``getParameter``); a name without ``=`` has the value ``""``.
    """
    result: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        result.setdefault(name, value)
    return result


def decode_segment(segment: str) -> str:
    """Percent-decode one path segment (``+`` stays ``+`` in a path)."""
    return unquote(segment)


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept as is, like Gson."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_response(value: Any, *, status: int = 200, content_type: str = JSON_UTF8) -> web.Response:
    """A JSON reply with an exact ``Content-Type`` header (the config service's, by default)."""
    return web.Response(
        status=status, body=dumps(value).encode(), headers={"Content-Type": content_type}
    )


def empty(status: int) -> web.Response:
    """A reply without a body (304 and the ``/configfiles`` 404)."""
    return web.Response(status=status)


def _local_iso() -> str:
    # LocalDateTime.now().format(ISO_LOCAL_DATE_TIME), with millisecond precision.
    return datetime.datetime.now().isoformat(timespec="milliseconds")


def gson_error(status: int, message: str, exception: str) -> web.Response:
    """The body of Apollo's ``GlobalDefaultExceptionHandler`` (e.g. the bad-notifications 400)."""
    body = {"status": status, "message": message, "timestamp": _local_iso(), "exception": exception}
    return json_response(body, status=status)


def spring_error(status: int, message: str, path: str) -> web.Response:
    """A Spring Boot style error body for ``response.sendError(status, message)``.

    The real body depends on the server's Spring settings (``message`` is only included
    with ``server.error.include-message``); this shape is not verified against a server.
    """
    body = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": path,
    }
    return json_response(body, status=status)
