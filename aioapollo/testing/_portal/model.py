"""The portal's records: consumers, working items and their changes, releases with ids, the
per-namespace working spaces and gray branches, and the portal's error answer."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from ..._apollo.wire import strip_properties
from .._store import GrayRule

__all__ = [
    "ACCESS_DENIED",
    "BAD_REQUEST",
    "EXTERNAL",
    "FORMATS",
    "NAME",
    "NOT_FOUND",
    "Branch",
    "Consumer",
    "Item",
    "ItemChange",
    "PortalError",
    "Record",
    "Space",
    "bad",
    "denied",
    "missing",
    "now",
]

BAD_REQUEST = "com.ctrip.framework.apollo.common.exception.BadRequestException"
NOT_FOUND = "com.ctrip.framework.apollo.common.exception.NotFoundException"
ACCESS_DENIED = "org.springframework.security.access.AccessDeniedException"
FORMATS = ("properties", "xml", "json", "yml", "yaml", "txt")
NAME = re.compile(r"[0-9a-zA-Z_.-]+")
EXTERNAL = "apollo"  # who releases made outside the portal are recorded under


class PortalError(Exception):
    """An error answer of the portal: ``status``, ``message`` and the Java ``exception``."""

    def __init__(self, status: int, message: str, exception: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.exception = exception


def bad(message: str) -> PortalError:
    return PortalError(400, message, BAD_REQUEST)


def missing(message: str) -> PortalError:
    return PortalError(404, message, NOT_FOUND)


def denied() -> PortalError:
    return PortalError(403, "Access is denied", ACCESS_DENIED)


def now() -> str:
    """A timestamp as the portal writes them (ISO 8601, milliseconds, offset)."""
    stamp = datetime.datetime.now(datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class Consumer:
    """An OpenAPI consumer: a token and what it may do.

    Attributes:
        token: The value of the ``Authorization`` header.
        apps: Apps the consumer may do everything in (``"*"``: every app): read, change
            items, publish, create namespaces, clusters and branches.
        namespaces: ``(appId, namespace)`` pairs it may read and change (and publish, with
            ``release``).
        release: Whether the ``namespaces`` grants include publishing.
        create_apps: Whether it may create apps.
        user: For a user access token (Apollo 3.0, ``Bearer apollo_pat_...``): the portal
            user it belongs to, whom every change is recorded under. ``None``: a consumer
            token, sent as the whole ``Authorization`` header.
        rate_limit: Requests per second it may make (``None``: unlimited); beyond it the
            portal answers 429.
    """

    token: str = field(repr=False)
    apps: frozenset[str] = frozenset()
    namespaces: frozenset[tuple[str, str]] = frozenset()
    release: bool = True
    create_apps: bool = False
    user: str | None = None
    rate_limit: float | None = None

    def app_level(self, app_id: str) -> bool:
        return "*" in self.apps or app_id in self.apps

    def may(self, app_id: str, namespace: str, action: str) -> bool:
        """``action``: ``read``, ``modify`` or ``release``."""
        if self.app_level(app_id):
            return True
        if (app_id, strip_properties(namespace).lower()) not in self.namespaces:
            return False
        return action != "release" or self.release


@dataclass
class Item:
    key: str
    value: str = field(repr=False)
    comment: str
    line_num: int
    created_by: str
    created_time: str
    modified_by: str
    modified_time: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "type": 0,
            "comment": self.comment,
            "lineNum": self.line_num,
            "dataChangeCreatedBy": self.created_by,
            "dataChangeCreatedTime": self.created_time,
            "dataChangeLastModifiedBy": self.modified_by,
            "dataChangeLastModifiedTime": self.modified_time,
        }


@dataclass(frozen=True)
class ItemChange:
    """One change to a working item (the namespace's modification history).

    Attributes:
        kind: ``"create"``, ``"update"`` or ``"delete"``.
        key: The item's key.
        operator: Who made it.
        time: When (ISO 8601).
        old_value, new_value: The values (left out of the repr).
    """

    kind: str
    key: str
    operator: str
    time: str
    old_value: str | None = field(default=None, repr=False)
    new_value: str | None = field(default=None, repr=False)


@dataclass
class Record:
    id: int
    key: str
    app_id: str
    cluster: str  # the branch name for a gray release
    namespace: str
    name: str
    comment: str
    configurations: dict[str, str] = field(repr=False)
    by: str
    time: str
    gray: bool = False
    abandoned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "appId": self.app_id,
            "clusterName": self.cluster,
            "namespaceName": self.namespace,
            "name": self.name,
            "comment": self.comment,
            "configurations": dict(self.configurations),
            "dataChangeCreatedBy": self.by,
            "dataChangeCreatedTime": self.time,
            "dataChangeLastModifiedBy": self.by,
            "dataChangeLastModifiedTime": self.time,
        }


@dataclass
class Space:
    """The portal's side of one namespace in one cluster (or gray branch)."""

    items: dict[str, Item] = field(default_factory=dict)
    history: list[ItemChange] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    lock: str | None = None
    known_key: str | None = None
    created: str = field(default_factory=now)

    def values(self) -> dict[str, str]:
        return {key: item.value for key, item in self.items.items() if key}


@dataclass
class Branch:
    name: str
    space: Space
    rules: tuple[GrayRule, ...] = ()
    created_by: str = EXTERNAL
