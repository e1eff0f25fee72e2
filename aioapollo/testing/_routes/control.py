"""Control endpoints under ``/__aioapollo__/``: drive a running test server over HTTP (e.g. curl).

Apollo has no path starting with ``/__aioapollo__``, so these cannot clash with the protocol.
They are neither recorded nor subject to faults. When the server has a control token (always,
off loopback) every request must send it in the ``X-Aioapollo-Control-Token`` header.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import web

from .._http import json_response
from .._models import Fault
from .view import ServerView

__all__ = ["CONTROL_PREFIX", "CONTROL_TOKEN_HEADER", "handle_control"]

CONTROL_PREFIX = "/__aioapollo__"
CONTROL_TOKEN_HEADER = "X-Aioapollo-Control-Token"

T = TypeVar("T")


class _NotFound(Exception):
    pass


def _field(body: Mapping[str, Any], name: str, kind: type[T], default: Any = ...) -> T:
    if name not in body or body[name] is None:
        if default is ...:
            raise ValueError(f"missing field {name!r}")
        return default  # type: ignore[no-any-return]
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"field {name!r} must be {kind.__name__}")
    return value


def _strings(body: Mapping[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"field {name!r} must be a list of strings")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


async def _publish(server: ServerView, body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("items")
    content = body.get("content")
    if (items is None) == (content is None):
        raise ValueError("give exactly one of 'items' (object) or 'content' (text)")
    data: Mapping[str, str] | str
    if items is not None:
        if not isinstance(items, dict):
            raise ValueError("'items' must be an object of strings")
        data = items
    else:
        data = _field(body, "content", str)
    key = server.publish(
        _field(body, "appId", str),
        _field(body, "namespace", str),
        data,
        cluster=_field(body, "cluster", str, "default"),
        public=_field(body, "public", bool, False),
        gray_ips=_strings(body, "grayIps"),
        gray_labels=_strings(body, "grayLabels"),
        gray_client_app_id=_field(body, "grayClientAppId", str, None),
    )
    return {"releaseKey": key}


def _settings(server: ServerView) -> dict[str, Any]:
    return {
        "holdSeconds": server.hold_seconds,
        "incrementalSync": server.incremental_sync,
        "timeToleranceSeconds": server.time_tolerance_seconds,
        "configServices": server.config_services,
    }


def _update_settings(server: ServerView, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {
        "holdSeconds",
        "incrementalSync",
        "timeToleranceSeconds",
        "configServices",
    }
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    if "holdSeconds" in body:
        server.hold_seconds = _field(body, "holdSeconds", float)
    if "incrementalSync" in body:
        server.incremental_sync = _field(body, "incrementalSync", bool)
    if "timeToleranceSeconds" in body:
        server.time_tolerance_seconds = _field(body, "timeToleranceSeconds", float)
    if "configServices" in body:
        server.config_services = _strings(body, "configServices")
    return _settings(server)


#: What ``GET /__aioapollo__/`` lists (the URL ``aioapollo serve`` logs): every endpoint.
ENDPOINTS = (
    "GET /__aioapollo__/health",
    "POST /__aioapollo__/publish",
    "POST /__aioapollo__/namespaces",
    "DELETE /__aioapollo__/releases/{appId}/{cluster}/{namespace}",
    "DELETE /__aioapollo__/gray/{appId}/{cluster}/{namespace}",
    "PUT /__aioapollo__/secrets/{appId}",
    "DELETE /__aioapollo__/secrets/{appId}",
    "GET /__aioapollo__/settings",
    "PUT /__aioapollo__/settings",
    "GET /__aioapollo__/faults",
    "POST /__aioapollo__/faults",
    "DELETE /__aioapollo__/faults",
    "GET /__aioapollo__/requests",
    "DELETE /__aioapollo__/requests",
)


async def _route(server: ServerView, request: web.Request, parts: list[str]) -> Any:
    method = request.method
    match method, parts:
        case "GET", []:
            return {"url": server.url, "endpoints": list(ENDPOINTS)}
        case "GET", ["health"]:
            return {"status": "UP", "url": server.url, "heldPolls": server.hub.live_held}
        case "POST", ["publish"]:
            return await _publish(server, await _body(request))
        case "POST", ["namespaces"]:
            body = await _body(request)
            name = server.create_namespace(
                _field(body, "appId", str),
                _field(body, "namespace", str),
                public=_field(body, "public", bool, False),
            )
            return {"namespace": name}
        case "DELETE", ["releases", app_id, cluster, namespace]:
            server.delete_release(app_id, namespace, cluster)
            return {"deleted": True}
        case "DELETE", ["gray", app_id, cluster, namespace]:
            server.clear_gray(app_id, namespace, cluster)
            return {"deleted": True}
        case "PUT", ["secrets", app_id]:
            body = await _body(request)
            secrets = _strings(body, "secrets")
            server.set_secret(app_id, secrets if secrets is not None else body.get("secret"))
            return {"appId": app_id, "secrets": len(server.store.secrets(app_id))}
        case "DELETE", ["secrets", app_id]:
            server.set_secret(app_id, None)
            return {"appId": app_id, "secrets": 0}
        case "GET", ["settings"]:
            return _settings(server)
        case "PUT", ["settings"]:
            return _update_settings(server, await _body(request))
        case "GET", ["faults"]:
            return [fault.to_json() for fault in server.faults]
        case "POST", ["faults"]:
            fault = server.add_fault(Fault.from_json(await _body(request)))
            return fault.to_json()
        case "DELETE", ["faults"]:
            server.clear_faults()
            return {"cleared": True}
        case "GET", ["requests"]:
            prefix = request.query.get("path", "")
            return [r.to_json() for r in server.requests if r.path.startswith(prefix)]
        case "DELETE", ["requests"]:
            server.clear_requests()
            return {"cleared": True}
    raise _NotFound(f"no control endpoint {method} {request.path}")


async def handle_control(server: ServerView, request: web.Request) -> web.Response:
    """Answer a ``/__aioapollo__/...`` request; errors are ``{"error": "..."}``."""
    if not _authorized(server.control_token, request):
        message = (
            f"this test server wants its control token in the {CONTROL_TOKEN_HEADER} header "
            "(the aioapollo CLI sends AIOAPOLLO_CONTROL_TOKEN)"
        )
        return json_response({"error": message}, status=401)
    rest = request.raw_path.partition("?")[0][len(CONTROL_PREFIX) :].strip("/")
    parts = [unquote(part) for part in rest.split("/")] if rest else []
    try:
        result = await _route(server, request, parts)
    except _NotFound as exc:
        return json_response({"error": str(exc)}, status=404)
    except KeyError as exc:
        return json_response({"error": str(exc.args[0]) if exc.args else "not found"}, status=404)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc)}, status=400)
    return json_response(result)


def _authorized(token: str | None, request: web.Request) -> bool:
    if token is None:
        return True
    sent = request.headers.get(CONTROL_TOKEN_HEADER, "")
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), token.encode("utf-8"))
