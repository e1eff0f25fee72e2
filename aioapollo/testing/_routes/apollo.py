"""The Apollo endpoints of the test server: access-key filter, configs, configfiles, poll, meta.

Each handler follows the config service's controller of the same name (see
``docs/apollo-protocol.md`` sections 2 to 7). Handlers get the raw request and the
form-decoded query.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from yarl import URL

from ..._apollo.auth import sign
from ..._apollo.wire import APP_ID_PATTERN, CONTENT_KEY, namespace_format
from .._http import (
    JSON_UTF8,
    decode_segment,
    dumps,
    empty,
    gson_error,
    json_response,
    split_target,
    spring_error,
)
from .._longpoll import immediate_reply, parse_notifications
from .._resolve import Resolved, incremental_changes, properties_text, resolve, watch_keys
from .view import ServerView

__all__ = ["route"]

_LONG = re.compile(r"[+-]?[0-9]{1,19}")
_BAD_REQUEST = "com.ctrip.framework.apollo.common.exception.BadRequestException"
_RAW_TYPES = {
    "json": "application/json;charset=UTF-8",
    "yml": "application/yaml;charset=UTF-8",
    "yaml": "application/yaml;charset=UTF-8",
    "xml": "application/xml;charset=UTF-8",
}
_TEXT = "text/plain;charset=UTF-8"


def _covered_app_id(path: str, query: dict[str, str]) -> tuple[bool, str | None]:
    """Whether the access-key filter covers ``path``, and the appId it reads (``AccessKeyUtil``)."""
    for prefix in ("/configs/", "/configfiles/json/", "/configfiles/raw/", "/configfiles/"):
        if path.startswith(prefix):
            app_id, slash, _ = path[len(prefix) :].partition("/")
            return True, app_id if slash else None
    if path in ("/configs", "/configfiles"):
        return True, None
    if path == "/notifications" or path.startswith("/notifications/"):
        return True, query.get("appId")
    return False, None


def _parse_long(text: str | None) -> int:
    if text is None or not _LONG.fullmatch(text):
        return 0
    value = int(text)
    return value if -(2**63) <= value < 2**63 else 0


def check_access(
    server: ServerView, request: web.Request, path: str, query: dict[str, str]
) -> web.Response | None:
    """The ``ClientAuthenticationFilter``: ``None`` lets the request through."""
    covered, app_id = _covered_app_id(path, query)
    if not covered:
        return None
    if not app_id or not app_id.strip() or not APP_ID_PATTERN.fullmatch(app_id):
        return spring_error(400, "InvalidAppId", path)
    secrets = server.store.secrets(app_id)
    if not secrets:
        return None
    timestamp = request.headers.get("Timestamp")
    skew = server.clock() - _parse_long(timestamp)
    if not abs(skew) < server.time_tolerance_seconds * 1000:
        return spring_error(401, "RequestTimeTooSkewed", path)
    parts = request.headers.get("Authorization", "").split(":")
    while parts and not parts[-1]:
        parts.pop()  # Java's String.split drops trailing empty strings
    signature = parts[1] if len(parts) > 1 else None
    raw_path, raw_query = split_target(request.raw_path)
    path_with_query = f"{raw_path}?{raw_query}" if raw_query else raw_path
    stamp = "null" if timestamp is None else timestamp
    if any(sign(stamp, path_with_query, secret) == signature for secret in secrets):
        return None
    return spring_error(401, "Unauthorized", path)


def _client_ip(request: web.Request, query: dict[str, str]) -> str | None:
    ip = query.get("ip")
    if ip:
        return ip
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[0] if forwarded else request.remote


def _resolve(
    server: ServerView,
    request: web.Request,
    query: dict[str, str],
    app_id: str,
    cluster: str,
    namespace: str,
) -> Resolved | None:
    return resolve(
        server.store,
        app_id,
        cluster,
        namespace,
        data_center=query.get("dataCenter") or None,
        ip=_client_ip(request, query),
        label=query.get("label"),
    )


def configs(
    server: ServerView, request: web.Request, query: dict[str, str], segments: list[str]
) -> web.Response:
    """``GET /configs/{appId}/{cluster}/{namespace}`` (``ConfigController#queryConfig``)."""
    app_id, cluster, namespace = segments
    client_key = query.get("releaseKey") or "-1"  # Spring's defaultValue also replaces ""
    found = _resolve(server, request, query, app_id, cluster, namespace)
    if found is None:
        message = (
            f"Could not load configurations with appId: {app_id}, clusterName: {cluster}, "
            f"namespace: {namespace}"
        )
        return spring_error(404, message, request.path)
    release_key = found.release_key
    ip = _client_ip(request, query) or request.remote or ""
    server.portal.record_instance(
        app_id, found.cluster, namespace, ip, query.get("dataCenter") or "", release_key
    )
    if release_key == client_key:
        return empty(304)
    latest = found.configurations
    body: dict[str, object] = {
        "appId": app_id,
        "cluster": found.cluster,
        "namespaceName": namespace,
        "releaseKey": release_key,
    }
    if server.incremental_sync:
        changes = incremental_changes(server.store, client_key, latest)
        if changes is not None:
            body["configSyncType"] = "IncrementalSync"
            body["configurationChanges"] = changes
            return json_response(body)
    return json_response({**body, "configurations": latest})


def configfiles(
    server: ServerView,
    request: web.Request,
    query: dict[str, str],
    form: str,
    segments: list[str],
) -> web.Response:
    """``GET /configfiles[/json|/raw]/{appId}/{cluster}/{namespace}`` (``ConfigFileController``)."""
    app_id, cluster, namespace = segments
    found = _resolve(server, request, query, app_id, cluster, namespace)
    if found is None:
        return empty(404)
    items = found.configurations
    if form == "json":
        return web.Response(body=dumps(items).encode(), headers={"Content-Type": JSON_UTF8})
    if form == "raw" and namespace_format(found.namespace) != "properties":
        content = items.get(CONTENT_KEY)
        if content is None:
            return empty(404)
        content_type = _RAW_TYPES.get(namespace_format(namespace), _TEXT)
        return web.Response(body=content.encode(), headers={"Content-Type": content_type})
    return web.Response(body=properties_text(items).encode(), headers={"Content-Type": _TEXT})


async def notifications(
    server: ServerView, request: web.Request, query: dict[str, str]
) -> web.Response:
    """``GET /notifications/v2`` (``NotificationControllerV2#pollNotification``)."""
    for name in ("appId", "cluster", "notifications"):
        if name not in query:
            # Most likely turned into a 500 by GlobalDefaultExceptionHandler [inferred].
            return gson_error(
                500,
                f"Required request parameter '{name}' for method parameter type String is not "
                "present",
                "org.springframework.web.bind.MissingServletRequestParameterException",
            )
    app_id, cluster, raw = query["appId"], query["cluster"], query["notifications"]
    namespaces = parse_notifications(server.store, app_id, raw)
    if not namespaces:
        return gson_error(400, f"invalid notifications format:{raw}", _BAD_REQUEST)
    keys = watch_keys(server.store, app_id, cluster, namespaces, query.get("dataCenter") or None)
    every_key = set().union(*keys.values())
    reply_names = {
        name: client.reply_name for name, client in namespaces.items() if client.reply_name != name
    }
    hub = server.hub
    if server.closing:
        return empty(304)
    waiter = hub.register(every_key, reply_names, lambda: request.transport is not None)
    try:
        reply = immediate_reply(namespaces, keys, server.store.notification_ids(every_key))
        if reply:
            return json_response(reply)
        try:
            async with asyncio.timeout(server.hold_seconds):
                result = await waiter.future
        except TimeoutError:
            result = None
    finally:
        hub.unregister(waiter)
    if result is None:
        return empty(304)
    return json_response(result)


def services(server: ServerView) -> web.Response:
    """``/services/config`` (any method): one ``ServiceDTO`` per config service URL."""
    instances = []
    for url in server.config_services:
        parsed = URL(url)
        instances.append(
            {
                "appName": "APOLLO-CONFIGSERVICE",
                "instanceId": f"{parsed.host}:apollo-configservice:{parsed.port}",
                "homepageUrl": url if url.endswith("/") else url + "/",
            }
        )
    return json_response(instances)


async def route(server: ServerView, request: web.Request, query: dict[str, str]) -> web.Response:
    """Answer one Apollo request, after the access-key filter (``query`` is form-decoded)."""
    raw_path = split_target(request.raw_path)[0]
    path = request.path
    denied = check_access(server, request, path, query)
    if denied is not None:
        return denied
    if path in ("/services/config", "/services/admin", "/services/meta"):
        return services(server) if path == "/services/config" else json_response([])
    segments = [decode_segment(part) for part in raw_path.split("/")[1:]]
    handler: str | None = None
    if segments[:2] == ["notifications", "v2"] and len(segments) == 2:
        handler = "notifications"
    elif segments[0] == "configs" and len(segments) == 4 and all(segments[1:]):
        handler = "configs"
    elif segments[0] == "configfiles" and all(segments[1:]):
        if len(segments) == 5 and segments[1] in ("json", "raw"):
            handler = segments[1]
        elif len(segments) == 4:
            handler = "properties"
    if handler is None:
        return spring_error(404, "Not Found", path)
    if request.method not in ("GET", "HEAD"):
        return gson_error(
            400,
            f"Request method '{request.method}' is not supported",
            "org.springframework.web.HttpRequestMethodNotSupportedException",
        )
    if handler == "notifications":
        return await notifications(server, request, query)
    if handler == "configs":
        return configs(server, request, query, segments[1:])
    if handler == "properties":
        return configfiles(server, request, query, handler, segments[1:])
    return configfiles(server, request, query, handler, segments[2:])
