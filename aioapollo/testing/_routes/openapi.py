"""The portal OpenAPI endpoints of the test server (``/openapi/v1/...``), over :class:`PortalState`.

Token auth as in the portal's ``ConsumerAuthenticationFilter``: the ``Authorization`` header
must hold a consumer's token (401 otherwise), and each operation checks the consumer's grants
(403 outside them). Error bodies are the portal's ``{status, message, timestamp, exception}``;
an unknown path gets Spring's plain 404, which is how a portal too old for an operation answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .._http import gson_error, json_response, parse_query, split_target, spring_error
from .._models import OpenApiExchange
from .._portal import ACCESS_DENIED, BAD_REQUEST, NOT_FOUND, Consumer, PortalError, PortalState
from .view import ServerView

__all__ = ["OPENAPI_PREFIX", "handle_openapi"]

OPENAPI_PREFIX = "/openapi/"
#: The 401 message of a test server that accepts no token at all (a real portal cannot say so).
_NO_TOKEN = (
    "this test server has no OpenAPI token configured: start `aioapollo serve` with "
    "APOLLO_OPENAPI_TOKEN set, or call server.add_openapi_token(...)"
)
_NS = r"/envs/(?P<env>[^/]+)/apps/(?P<appId>[^/]+)/clusters/(?P<clusterName>[^/]+)" + (
    r"/namespaces/(?P<namespaceName>[^/]+)"
)
_BRANCH = _NS + r"/branches/(?P<branchName>[^/]+)"
# the 3.0 operations that name the app first
_NS2 = r"/apps/(?P<appId>[^/]+)/envs/(?P<env>[^/]+)/clusters/(?P<clusterName>[^/]+)" + (
    r"/namespaces/(?P<namespaceName>[^/]+)"
)
_KEYS = r"/apps/(?P<appId>[^/]+)/envs/(?P<env>[^/]+)/accesskeys"

# (method, path pattern after /openapi/v1, operationId)
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern + "$"), op_id)
    for method, pattern, op_id in [
        ("GET", r"/apps", "findApps"),
        ("POST", r"/apps", "createApp"),
        ("GET", r"/apps/authorized", "findAppsAuthorized"),
        ("GET", r"/apps/(?P<appId>[^/]+)/envclusters", "getEnvClusters"),
        ("GET", r"/apps/(?P<appId>[^/]+)", "getApp"),
        ("GET", r"/envs", "getEnvs"),
        ("POST", r"/apps/(?P<appId>[^/]+)/appnamespaces", "createAppNamespace"),
        ("GET", r"/envs/(?P<env>[^/]+)/apps/(?P<appId>[^/]+)/clusters/(?P<clusterName>[^/]+)",
         "getCluster"),
        ("POST", r"/envs/(?P<env>[^/]+)/apps/(?P<appId>[^/]+)/clusters", "createCluster"),
        ("GET", r"/envs/(?P<env>[^/]+)/apps/(?P<appId>[^/]+)/clusters/(?P<clusterName>[^/]+)"
         r"/namespaces", "findNamespaces"),
        ("GET", _NS, "findNamespace"),
        ("GET", _NS + r"/lock", "getNamespaceLock"),
        ("GET", _NS + r"/items", "findItemsByNamespace"),
        ("POST", _NS + r"/items", "createItem"),
        ("GET", _NS + r"/items/(?P<key>[^/]+)", "getItem"),
        ("PUT", _NS + r"/items/(?P<key>[^/]+)", "updateItem"),
        ("DELETE", _NS + r"/items/(?P<key>[^/]+)", "deleteItem"),
        ("GET", _NS + r"/encodedItems/(?P<key>[^/]+)", "getItemByEncodedKey"),
        ("PUT", _NS + r"/encodedItems/(?P<key>[^/]+)", "updateItemByEncodedKey"),
        ("DELETE", _NS + r"/encodedItems/(?P<key>[^/]+)", "deleteItemByEncodedKey"),
        ("POST", _NS + r"/releases", "createRelease"),
        ("GET", _NS + r"/releases/latest", "loadLatestActiveRelease"),
        ("GET", _NS + r"/releases/active", "findActiveReleases"),
        ("PUT", r"/envs/(?P<env>[^/]+)/releases/(?P<releaseId>[^/]+)/rollback", "rollback"),
        ("GET", r"/envs/(?P<env>[^/]+)/releases/comparison", "compareRelease"),
        ("GET", r"/envs/(?P<env>[^/]+)/releases/(?P<releaseId>[^/]+)", "getReleaseById"),
        ("GET", _NS + r"/branches", "findBranch"),
        ("POST", _NS + r"/branches", "createBranch"),
        ("DELETE", _BRANCH, "deleteBranch"),
        ("GET", _BRANCH + r"/rules", "getBranchGrayRules"),
        ("PUT", _BRANCH + r"/rules", "updateBranchRules"),
        ("POST", _BRANCH + r"/releases", "createGrayRelease"),
        ("POST", _BRANCH + r"/gray-del-releases", "createGrayDelRelease"),
        ("POST", _BRANCH + r"/merge", "merge"),
        ("POST", _BRANCH, "mergeBranch"),
        ("PUT", _NS + r"/items", "batchUpdateItemsByText"),
        ("POST", _NS + r"/items/diff", "compareItems"),
        ("POST", _NS + r"/items/synchronize", "syncItems"),
        ("POST", _NS + r"/items/validation", "syntaxCheck"),
        ("POST", _NS + r"/items/revocation", "revertItems"),
        ("GET", _NS + r"/instances", "getInstanceCountByNamespace"),
        ("POST", r"/namespaces", "createNamespaces"),
        ("GET", _NS2 + r"/releases/histories", "findReleaseHistoriesByNamespace"),
        ("GET", _NS2 + r"/commits", "findCommits"),
        ("DELETE", _NS2, "deleteNamespace"),
        ("DELETE", r"/apps/(?P<appId>[^/]+)", "deleteApp"),
        ("DELETE", r"/apps/(?P<appId>[^/]+)/appnamespaces/(?P<namespaceName>[^/]+)",
         "deleteAppNamespace"),
        ("DELETE", r"/envs/(?P<env>[^/]+)/apps/(?P<appId>[^/]+)/clusters/(?P<clusterName>[^/]+)",
         "deleteCluster"),
        ("GET", r"/envs/(?P<env>[^/]+)/instances/by-release", "getByRelease"),
        ("GET", r"/envs/(?P<env>[^/]+)/instances/by-namespace", "getByNamespace"),
        ("GET", r"/envs/(?P<env>[^/]+)/instances/by-namespace-and-releases-not-in",
         "getByReleasesAndNamespaceNotIn"),
        ("POST", _KEYS, "createAccessKey"),
        ("GET", _KEYS, "findAccessKeys"),
        ("DELETE", _KEYS + r"/(?P<accessKeyId>[^/]+)", "deleteAccessKey"),
        ("PUT", _KEYS + r"/(?P<accessKeyId>[^/]+)/activation", "enableAccessKey"),
        ("PUT", _KEYS + r"/(?P<accessKeyId>[^/]+)/deactivation", "disableAccessKey"),
    ]
]  # fmt: skip


def _route(method: str, rest: str) -> tuple[str | None, dict[str, str], bool]:
    """(operationId, path parameters, whether the path exists for another method)."""
    other = False
    for route_method, pattern, op_id in _ROUTES:
        found = pattern.match(rest)
        if found is None:
            continue
        if route_method != method:
            other = True
            continue
        return op_id, {k: unquote(v) for k, v in found.groupdict().items()}, False
    return None, {}, other


def _flag(query: dict[str, str], name: str, *, required: bool = False) -> bool:
    value = query.get(name)
    if value is None:
        if required:
            raise PortalError(
                400,
                f"Required request parameter '{name}' for method parameter type Boolean is not "
                "present",
                "org.springframework.web.bind.MissingServletRequestParameterException",
            )
        return False
    return value.lower() == "true"


def _id(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PortalError(400, f"{name} must be a number", BAD_REQUEST) from None


def _int(query: dict[str, str], name: str, default: int) -> int:
    return _id(query[name], name) if name in query else default


def _decode_key(key: str) -> str:
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(key.encode("ascii")).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
    raise PortalError(400, "Invalid encoded key", BAD_REQUEST)


def _require(consumer: Consumer, app_id: str, namespace: str | None, action: str) -> None:
    allowed = (
        consumer.app_level(app_id) if namespace is None else consumer.may(app_id, namespace, action)
    )
    if not allowed:
        raise PortalError(403, "Access is denied", ACCESS_DENIED)


def _require_targets(consumer: Consumer, payload: dict[str, Any], action: str) -> None:
    """The grant on every target namespace of an item diff or sync."""
    for target in payload.get("syncToNamespaces") or []:
        if isinstance(target, dict):
            _require(consumer, str(target.get("appId")), str(target.get("namespaceName")), action)


async def _dispatch(
    portal: PortalState,
    consumer: Consumer,
    op: str,
    p: dict[str, str],
    query: dict[str, str],
    body: Any,
) -> Any:
    """Run one operation; returns the JSON to answer (``None``: an empty 200)."""
    if "env" in p:
        portal.check_env(p["env"])
    app, cluster, ns = p.get("appId", ""), p.get("clusterName", ""), p.get("namespaceName")
    operator = consumer.user or query.get("operator")  # a user token acts as its user
    if "key" in p and op.endswith("ByEncodedKey"):
        p["key"] = _decode_key(p["key"])
        op = op.removesuffix("ByEncodedKey")
    if body is not None and not isinstance(body, dict) and op != "createNamespaces":
        raise PortalError(400, "the request body must be a JSON object", BAD_REQUEST)
    payload: dict[str, Any] = body or {}
    match op:
        case "findApps":
            ids = query.get("appIds")
            return portal.apps(None if not ids else [a for a in ids.split(",") if a])
        case "findAppsAuthorized":
            return portal.authorized_apps(consumer)
        case "createApp":
            portal.create_app(payload, consumer)
            return None
        case "getApp":
            _require(consumer, app, None, "read")
            if not portal.app_exists(app):
                raise PortalError(404, f"app not found for appId:{app}", NOT_FOUND)
            return portal.app_json(app)
        case "getEnvClusters":
            return portal.env_clusters(app)
        case "getEnvs":
            return [portal.env]
        case "getCluster":
            return portal.cluster_json(app, cluster)
        case "createCluster":
            _require(consumer, app, None, "modify")
            return portal.create_cluster(app, payload)
        case "createAppNamespace":
            _require(consumer, app, None, "modify")
            return portal.create_app_namespace(app, payload, operator)
        case "findNamespaces":
            _require(consumer, app, None, "read")
            return portal.namespaces_json(app, cluster)
    answer = _dispatch_3(portal, consumer, op, p, query, body, operator)
    if answer is not _UNHANDLED:
        return answer
    assert ns is not None or op == "rollback" or op == "getReleaseById"
    match op:
        case "rollback" | "getReleaseById":
            release_id = _id(p["releaseId"], "releaseId")
            record = portal.release(release_id)
            action = "release" if op == "rollback" else "read"
            _require(consumer, record.app_id, record.namespace, action)
            if op == "getReleaseById":
                return record.to_json()
            to = query.get("toReleaseId")
            to_id = _int(query, "toReleaseId", -1) if to else None
            portal.rollback(release_id, operator, to_id)
            return None
    assert ns is not None
    read, modify, release = ("read", "modify", "release")
    match op:
        case "findNamespace":
            _require(consumer, app, ns, read)
            _flag(query, "fillItemDetail", required=True)
            return portal.namespace_json(app, cluster, ns)
        case "getNamespaceLock":
            _require(consumer, app, ns, read)
            return portal.lock_json(app, cluster, ns)
        case "findItemsByNamespace":
            _require(consumer, app, ns, read)
            return portal.items_page(
                app, cluster, ns, _int(query, "page", 0), _int(query, "size", 50)
            )
        case "getItem":
            _require(consumer, app, ns, read)
            return portal.item_json(app, cluster, ns, p["key"])
        case "createItem":
            _require(consumer, app, ns, modify)
            return portal.create_item(app, cluster, ns, payload, operator)
        case "updateItem":
            _require(consumer, app, ns, modify)
            create = _flag(query, "createIfNotExists", required=True)
            portal.update_item(app, cluster, ns, p["key"], payload, operator, create)
            return None
        case "deleteItem":
            _require(consumer, app, ns, modify)
            portal.delete_item(app, cluster, ns, p["key"], operator)
            return None
        case "createRelease":
            _require(consumer, app, ns, release)
            return portal.publish(app, cluster, ns, payload, operator)
        case "loadLatestActiveRelease":
            _require(consumer, app, ns, read)
            return portal.latest_release(app, cluster, ns)
        case "findActiveReleases":
            _require(consumer, app, ns, read)
            return portal.active_releases(
                app, cluster, ns, _int(query, "page", 0), _int(query, "size", 5)
            )
        case "findBranch":
            _require(consumer, app, ns, read)
            return portal.branch_json(app, cluster, ns)
        case "createBranch":
            _require(consumer, app, None, modify)
            return portal.create_branch(app, cluster, ns, operator)
        case "deleteBranch":
            _require(consumer, app, ns, release)
            portal.abandon(app, cluster, ns, p["branchName"], operator)
            return None
        case "getBranchGrayRules":
            _require(consumer, app, ns, read)
            return portal.rules_json(app, cluster, ns, p["branchName"])
        case "updateBranchRules":
            _require(consumer, app, ns, modify)
            portal.set_rules(app, cluster, ns, p["branchName"], payload, operator)
            return None
        case "createGrayRelease" | "createGrayDelRelease":
            _require(consumer, app, ns, release)
            keys = payload.get("grayDelKeys") if op == "createGrayDelRelease" else []
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise PortalError(400, "Params(grayDelKeys) can not be null", BAD_REQUEST)
            return portal.gray_publish(app, cluster, ns, p["branchName"], payload, operator, keys)
        case "merge" | "mergeBranch":
            _require(consumer, app, ns, release)
            delete = _flag(query, "deleteBranch", required=True)
            return portal.merge(app, cluster, ns, p["branchName"], payload, operator, delete)
        case "batchUpdateItemsByText":
            _require(consumer, app, ns, modify)
            portal.batch_update_by_text(app, cluster, ns, payload, operator)
            return None
        case "syntaxCheck":
            _require(consumer, app, ns, read)
            portal.syntax_check(app, cluster, ns, payload)
            return None
        case "compareItems":
            _require(consumer, app, ns, read)
            _require_targets(consumer, payload, read)
            return portal.compare_items(payload)
        case "syncItems":
            _require(consumer, app, ns, read)
            _require_targets(consumer, payload, modify)
            portal.sync_items(payload, portal.operator(operator, None))
            return None
        case "revertItems":
            _require(consumer, app, ns, modify)
            portal.revert_items(app, cluster, ns, operator)
            return None
        case "getInstanceCountByNamespace":
            _require(consumer, app, ns, read)
            return len(portal.instances(app, cluster, ns))
        case "findReleaseHistoriesByNamespace":
            _require(consumer, app, ns, read)
            return portal.release_histories(
                app, cluster, ns, _int(query, "page", 0), _int(query, "size", 10)
            )
        case "findCommits":
            _require(consumer, app, ns, read)
            return portal.commits(
                app, cluster, ns, query.get("key") or None, _int(query, "page", 0),
                _int(query, "size", 10),
            )  # fmt: skip
        case "deleteNamespace":
            _require(consumer, app, None, modify)
            portal.delete_namespace(app, cluster, ns, operator)
            return None
        case "deleteAppNamespace":
            _require(consumer, app, None, modify)
            portal.delete_namespace(app, None, ns, operator)
            return None
    raise AssertionError(f"unrouted operation {op}")  # pragma: no cover


_UNHANDLED = object()


def _dispatch_3(
    portal: PortalState,
    consumer: Consumer,
    op: str,
    p: dict[str, str],
    query: dict[str, str],
    body: Any,
    operator: str | None,
) -> Any:
    """The operations of later portals that are not about one namespace of the path."""
    app = p.get("appId", "")
    match op:
        case "createNamespaces":
            for entry in body if isinstance(body, list) else []:
                if isinstance(entry, dict):
                    _require(consumer, str(entry.get("appId")), None, "modify")
            portal.create_namespaces(body, operator)
            return None
        case "compareRelease":
            base = portal.release(_id(query.get("baseReleaseId", ""), "baseReleaseId"))
            other = portal.release(_id(query.get("toCompareReleaseId", ""), "toCompareReleaseId"))
            _require(consumer, base.app_id, base.namespace, "read")
            _require(consumer, other.app_id, other.namespace, "read")
            return portal.compare_releases(base.id, other.id)
        case "getByRelease":
            record = portal.release(_id(query.get("releaseId", ""), "releaseId"))
            _require(consumer, record.app_id, record.namespace, "read")
            return _page(portal.release_instances(record.id), query)
        case "getByNamespace" | "getByReleasesAndNamespaceNotIn":
            app_id, cluster = query.get("appId", ""), query.get("clusterName", "")
            namespace = query.get("namespaceName", "")
            if not (app_id and cluster and namespace):
                raise PortalError(400, "appId, clusterName and namespaceName are required")
            _require(consumer, app_id, namespace, "read")
            if op == "getByNamespace":
                found = portal.instances(app_id, cluster, namespace)
                wanted = query.get("instanceAppId")
                if wanted:
                    found = [i for i in found if i["appId"] == wanted]
                return _page(found, query)
            ids = [_id(i, "releaseIds") for i in query.get("releaseIds", "").split(",") if i]
            keys = frozenset(portal.release(i).key for i in ids)
            return portal.instances(app_id, cluster, namespace, not_in=keys)
        case "deleteApp":
            _require(consumer, app, None, "modify")
            portal.delete_app(app, operator)
            return None
        case "deleteCluster":
            _require(consumer, app, None, "modify")
            portal.delete_cluster(app, p["clusterName"], operator)
            return None
        case "findAccessKeys":
            _require(consumer, app, None, "read")
            return portal.access_keys(app)
        case "createAccessKey":
            _require(consumer, app, None, "modify")
            return portal.create_access_key(app, portal.operator(operator, None))
        case "enableAccessKey" | "disableAccessKey" | "deleteAccessKey":
            _require(consumer, app, None, "modify")
            who = portal.operator(operator, None)
            key_id = _id(p["accessKeyId"], "accessKeyId")
            if op == "deleteAccessKey":
                portal.delete_access_key(app, key_id, who)
            else:
                mode = _int(query, "mode", 0)
                portal.switch_access_key(app, key_id, who, enabled=op == "enableAccessKey",
                                         mode=mode)  # fmt: skip
            return None
    return _UNHANDLED


def _page(found: list[Any], query: dict[str, str]) -> dict[str, Any]:
    page, size = _int(query, "page", 0), _int(query, "size", 20)
    chunk = found[page * size : (page + 1) * size] if size > 0 else []
    return {"page": page, "size": size, "total": len(found), "instances": chunk}


async def handle_openapi(server: ServerView, request: web.Request) -> web.Response:
    """Answer one ``/openapi/...`` request (after faults, like every recorded request)."""
    path = request.path
    raw_path, raw_query = split_target(request.raw_path)
    query = parse_query(raw_query)
    raw = await request.read()
    body: Any = None
    bad_body = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        bad_body = "the request body is not UTF-8"
    else:
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            bad_body = "the request body is not JSON"
    op_id, params, other_method = _route(request.method, raw_path.removeprefix("/openapi/v1"))
    response: web.Response
    header = request.headers.get("Authorization")
    consumer = server.portal.consumer(header)
    user_token = server.portal.is_user_token(header)
    wait = server.portal.throttle(consumer) if consumer is not None else None
    if not raw_path.startswith("/openapi/v1/") or (op_id is None and not other_method):
        response = spring_error(404, "Not Found", path)
    elif consumer is None and user_token:
        response = json_response({"message": "Unauthorized user token"}, status=401)
    elif consumer is None:
        response = spring_error(
            401, "Unauthorized" if server.portal.has_consumers else _NO_TOKEN, path
        )
    elif wait is not None:
        message = "Too Many Requests, the flow is limited"
        if user_token:
            response = json_response({"message": message}, status=429)
        else:
            response = spring_error(429, message, path)
        response.headers["Retry-After"] = server.portal.retry_after(wait)
    elif op_id is None:
        response = gson_error(
            400,
            f"Request method '{request.method}' is not supported",
            "org.springframework.web.HttpRequestMethodNotSupportedException",
        )
    elif bad_body is not None:
        response = gson_error(400, bad_body, BAD_REQUEST)
    else:
        try:
            answer = await _dispatch(server.portal, consumer, op_id, params, query, body)
        except PortalError as exc:
            response = gson_error(exc.status, exc.message, exc.exception)
        else:
            response = web.Response(status=200) if answer is None else json_response(answer)
    observer: Callable[[OpenApiExchange], None] | None = server.openapi_observer
    if observer is not None:
        sent = None
        if response.body:
            assert isinstance(response.body, bytes)
            sent = json.loads(response.body)
        observer(OpenApiExchange(op_id, request.method, path, query, body, response.status, sent))
    return response
