"""Pure request building and reply parsing for the config service's endpoints (no I/O).

Every parser checks the shape and types of what it reads and raises
:class:`ApolloResponseError` for anything a real config service would not send, so a broken
proxy or a garbage body can never replace good config with nonsense.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import url_problem
from .._exceptions import ApolloResponseError
from .wire import build_query, path_escape

__all__ = [
    "ConfigReply",
    "Notification",
    "config_target",
    "notifications_target",
    "parse_config",
    "parse_notifications",
    "parse_services",
    "services_target",
]


@dataclass(frozen=True, slots=True)
class ConfigReply:
    """A 200 from ``/configs``: either a full map or incremental changes to the held one."""

    release_key: str
    configurations: dict[str, str] | None
    #: For IncrementalSync: ``(key, new_value or None for DELETED)`` in server order.
    changes: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One entry of a ``/notifications/v2`` reply."""

    namespace: str
    notification_id: int
    messages: dict[str, int]


def config_target(
    app_id: str,
    cluster: str,
    namespace: str,
    *,
    release_key: str | None,
    data_center: str | None,
    ip: str | None,
    label: str | None,
    messages: Mapping[str, int] | None,
) -> str:
    """The ``/configs`` path and query, escaped as they go on the wire (and are signed)."""
    path = f"/configs/{path_escape(app_id)}/{path_escape(cluster)}/{path_escape(namespace)}"
    query = build_query(
        [
            ("releaseKey", release_key),
            ("dataCenter", data_center),
            ("ip", ip),
            ("label", label),
            ("messages", _dumps({"details": dict(messages)}) if messages else None),
        ]
    )
    return f"{path}?{query}" if query else path


def notifications_target(
    app_id: str,
    cluster: str,
    notifications: Iterable[tuple[str, int]],
    *,
    data_center: str | None,
    ip: str | None,
) -> str:
    """The ``/notifications/v2`` path and query. No ``label``: the server ignores it there."""
    payload = [{"namespaceName": ns, "notificationId": nid} for ns, nid in notifications]
    query = build_query(
        [
            ("appId", app_id),
            ("cluster", cluster),
            ("notifications", _dumps(payload)),
            ("dataCenter", data_center),
            ("ip", ip),
        ]
    )
    return f"/notifications/v2?{query}"


def services_target(app_id: str, ip: str | None) -> str:
    """The meta service's ``/services/config`` path and query."""
    return "/services/config?" + build_query([("appId", app_id), ("ip", ip)])


#: One encoder for every request: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _loads(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApolloResponseError(f"{what}: reply is not valid JSON ({len(body)} bytes)") from None


def parse_config(body: bytes) -> ConfigReply:
    """Parse a 200 reply of ``/configs``."""
    data = _loads(body, "/configs")
    if not isinstance(data, dict):
        raise ApolloResponseError("/configs: reply is not a JSON object")
    release_key = data.get("releaseKey")
    if not isinstance(release_key, str) or not release_key:
        raise ApolloResponseError("/configs: reply has no releaseKey string")
    sync_type = data.get("configSyncType") or "FullSync"
    if sync_type == "FullSync":
        configurations = data.get("configurations")
        if not isinstance(configurations, dict):
            raise ApolloResponseError("/configs: reply has no configurations object")
        for key, value in configurations.items():
            if not isinstance(value, str):
                raise ApolloResponseError(f"/configs: value of key {key!r} is not a string")
        return ConfigReply(release_key, configurations)
    if sync_type == "IncrementalSync":
        raw_changes = data.get("configurationChanges")
        if not isinstance(raw_changes, list):
            raise ApolloResponseError("/configs: incremental reply has no change list")
        return ConfigReply(release_key, None, tuple(_parse_change(c) for c in raw_changes))
    raise ApolloResponseError(f"/configs: unknown configSyncType {sync_type!r}")


def _parse_change(change: Any) -> tuple[str, str | None]:
    if not isinstance(change, dict) or not isinstance(change.get("key"), str):
        raise ApolloResponseError("/configs: malformed entry in configurationChanges")
    kind = change.get("configurationChangeType")
    if kind == "DELETED":
        return change["key"], None
    if kind in ("ADDED", "MODIFIED") and isinstance(change.get("newValue"), str):
        return change["key"], change["newValue"]
    raise ApolloResponseError(f"/configs: malformed change of key {change['key']!r}")


def parse_notifications(body: bytes) -> list[Notification]:
    """Parse a 200 reply of ``/notifications/v2``."""
    data = _loads(body, "/notifications/v2")
    if not isinstance(data, list):
        raise ApolloResponseError("/notifications/v2: reply is not a JSON array")
    result = []
    for entry in data:
        if not isinstance(entry, dict):
            raise ApolloResponseError("/notifications/v2: entry is not an object")
        name, nid = entry.get("namespaceName"), entry.get("notificationId")
        if not isinstance(name, str) or type(nid) is not int:
            raise ApolloResponseError("/notifications/v2: entry lacks namespaceName/id")
        messages: dict[str, int] = {}
        raw = entry.get("messages")
        details = raw.get("details") if isinstance(raw, dict) else None
        if isinstance(details, dict):
            messages = {k: v for k, v in details.items() if type(v) is int}
        result.append(Notification(name, nid, messages))
    return result


def parse_services(body: bytes, where: str = "/services/config") -> list[str]:
    """Parse ``/services/config`` into homepage URLs without their trailing ``/``.

    Entries without a usable ``homepageUrl`` are skipped. ``where`` (the redacted URL asked)
    starts the error messages.
    """
    data = _loads(body, where)
    if not isinstance(data, list):
        raise ApolloResponseError(f"{where}: reply is not a JSON array")
    urls = []
    for entry in data:
        url = entry.get("homepageUrl") if isinstance(entry, dict) else None
        if isinstance(url, str) and url_problem(url.rstrip("/")) is None:
            urls.append(url.rstrip("/"))
    return urls
