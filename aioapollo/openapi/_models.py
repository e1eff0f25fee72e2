"""Typed, immutable views of the portal's OpenAPI bodies (``Open*DTO`` in the spec).

Each ``from_json`` checks the types of the fields it reads and raises ``ApolloResponseError``
for a body that is not what the portal sends; unknown fields are ignored (newer portals add
some). Config values (``Item.value``, ``Release.configurations``, ``Namespace.items``) are left
out of every ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from .._exceptions import ApolloResponseError

__all__ = [
    "CONTENT_KEY",
    "App",
    "AppNamespace",
    "Audit",
    "Cluster",
    "EnvClusters",
    "GrayRule",
    "GrayRules",
    "Item",
    "Namespace",
    "NamespaceLock",
    "Release",
]

#: The item under which a non-properties namespace (``x.json``, ``x.yaml``, ...) keeps its text.
CONTENT_KEY = "content"

T = TypeVar("T")


def _get(data: Mapping[str, Any], name: str, kind: type[T], what: str) -> T | None:
    value = data.get(name)
    if value is None:
        return None
    if kind is int and isinstance(value, bool):
        raise ApolloResponseError(f"{what}: field {name!r} is not an integer")
    if not isinstance(value, kind):
        raise ApolloResponseError(f"{what}: field {name!r} is not a {kind.__name__}")
    return value


def _str(data: Mapping[str, Any], name: str, what: str) -> str:
    return _get(data, name, str, what) or ""


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ApolloResponseError(f"{what}: expected a JSON object")
    return data


def _strings(data: Mapping[str, Any], name: str, what: str) -> tuple[str, ...]:
    value = _get(data, name, list, what) or []
    if not all(isinstance(item, str) for item in value):
        raise ApolloResponseError(f"{what}: field {name!r} is not a list of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Audit:
    """Who created and last changed a record, and when (ISO 8601 text, as the portal sends)."""

    created_by: str | None = None
    created_time: str | None = None
    modified_by: str | None = None
    modified_time: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], what: str) -> Audit:
        return cls(
            _get(data, "dataChangeCreatedBy", str, what),
            _get(data, "dataChangeCreatedTime", str, what),
            _get(data, "dataChangeLastModifiedBy", str, what),
            _get(data, "dataChangeLastModifiedTime", str, what),
        )


@dataclass(frozen=True, slots=True)
class App:
    """An app (``OpenAppDTO``)."""

    app_id: str
    name: str
    org_id: str = ""
    org_name: str = ""
    owner_name: str = ""
    owner_email: str = ""
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> App:
        what = "an app"
        obj = _object(data, what)
        return cls(
            _str(obj, "appId", what),
            _str(obj, "name", what),
            _str(obj, "orgId", what),
            _str(obj, "orgName", what),
            _str(obj, "ownerName", what),
            _str(obj, "ownerEmail", what),
            Audit.from_json(obj, what),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``OpenAppDTO`` body."""
        return {
            "appId": self.app_id,
            "name": self.name,
            "orgId": self.org_id,
            "orgName": self.org_name,
            "ownerName": self.owner_name,
            "ownerEmail": self.owner_email,
        }


@dataclass(frozen=True, slots=True)
class EnvClusters:
    """The clusters an app has in one environment (``OpenEnvClusterDTO``)."""

    env: str
    clusters: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Any) -> EnvClusters:
        what = "an env's clusters"
        obj = _object(data, what)
        return cls(_str(obj, "env", what), _strings(obj, "clusters", what))


@dataclass(frozen=True, slots=True)
class Cluster:
    """A cluster (``OpenClusterDTO``)."""

    name: str
    app_id: str
    id: int | None = None
    parent_cluster_id: int | None = None
    comment: str = ""
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Cluster:
        what = "a cluster"
        obj = _object(data, what)
        return cls(
            _str(obj, "name", what),
            _str(obj, "appId", what),
            _get(obj, "id", int, what),
            _get(obj, "parentClusterId", int, what),
            _str(obj, "comment", what),
            Audit.from_json(obj, what),
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One configuration item of a namespace's working set (``OpenItemDTO``).

    ``value`` is left out of the repr. A non-properties namespace has one item, ``content``.
    """

    key: str
    value: str = field(repr=False)
    comment: str = ""
    type: int = 0
    line_num: int | None = None
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Item:
        what = "an item"
        obj = _object(data, what)
        return cls(
            _str(obj, "key", what),
            _str(obj, "value", what),
            _str(obj, "comment", what),
            _get(obj, "type", int, what) or 0,
            _get(obj, "lineNum", int, what),
            Audit.from_json(obj, what),
        )


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace of one cluster with its working items (``OpenNamespaceDTO``).

    For a gray branch, ``cluster`` is the branch name (that is how the portal names it).
    ``items`` are the *working* items: what the next publish would release.
    """

    app_id: str
    cluster: str
    name: str
    format: str
    is_public: bool = False
    comment: str = ""
    items: tuple[Item, ...] = field(default=(), repr=False)
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Namespace:
        what = "a namespace"
        obj = _object(data, what)
        raw_items = _get(obj, "items", list, what) or []
        return cls(
            _str(obj, "appId", what),
            _str(obj, "clusterName", what),
            _str(obj, "namespaceName", what),
            _str(obj, "format", what) or "properties",
            bool(_get(obj, "isPublic", bool, what)),
            _str(obj, "comment", what),
            tuple(Item.from_json(item) for item in raw_items),
            Audit.from_json(obj, what),
        )

    @property
    def values(self) -> Mapping[str, str]:
        """The working items as ``{key: value}`` (empty keys, which are comment lines, left out)."""
        return MappingProxyType({item.key: item.value for item in self.items if item.key})

    @property
    def content(self) -> str | None:
        """The text of a non-properties namespace (``None`` for properties namespaces)."""
        if self.format == "properties":
            return None
        return self.values.get(CONTENT_KEY, "")


@dataclass(frozen=True, slots=True)
class AppNamespace:
    """A namespace definition of an app (``OpenAppNamespaceDTO``)."""

    name: str
    app_id: str
    format: str = "properties"
    is_public: bool = False
    comment: str = ""
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> AppNamespace:
        what = "an app namespace"
        obj = _object(data, what)
        return cls(
            _str(obj, "name", what),
            _str(obj, "appId", what),
            _str(obj, "format", what) or "properties",
            bool(_get(obj, "isPublic", bool, what)),
            _str(obj, "comment", what),
            Audit.from_json(obj, what),
        )


@dataclass(frozen=True, slots=True)
class Release:
    """A release (``OpenReleaseDTO``); ``configurations`` is left out of the repr."""

    id: int
    name: str
    app_id: str
    cluster: str
    namespace: str
    configurations: Mapping[str, str] = field(repr=False)
    comment: str = ""
    audit: Audit = field(default_factory=Audit, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Release:
        what = "a release"
        obj = _object(data, what)
        release_id = _get(obj, "id", int, what)
        if release_id is None:
            raise ApolloResponseError(f"{what}: no 'id'")
        configurations = _get(obj, "configurations", dict, what) or {}
        if not all(isinstance(v, str) for v in configurations.values()):
            raise ApolloResponseError(f"{what}: configurations are not all strings")
        return cls(
            release_id,
            _str(obj, "name", what),
            _str(obj, "appId", what),
            _str(obj, "clusterName", what),
            _str(obj, "namespaceName", what),
            MappingProxyType(dict(configurations)),
            _str(obj, "comment", what),
            Audit.from_json(obj, what),
        )


@dataclass(frozen=True, slots=True)
class NamespaceLock:
    """Whether a namespace is locked by an editor (``OpenNamespaceLockDTO``).

    With the portal's namespace lock on, the first change to a namespace locks it to its
    editor until it is published; others cannot change it meanwhile, and the editor cannot
    publish it (someone else must, or an emergency publish).
    """

    namespace: str
    is_locked: bool
    locked_by: str | None = None
    emergency_publish_allowed: bool | None = None

    @classmethod
    def from_json(cls, data: Any) -> NamespaceLock:
        what = "a namespace lock"
        obj = _object(data, what)
        return cls(
            _str(obj, "namespaceName", what),
            bool(_get(obj, "isLocked", bool, what)),
            _get(obj, "lockedBy", str, what) or None,
            _get(obj, "isEmergencyPublishAllowed", bool, what),
        )


@dataclass(frozen=True, slots=True)
class GrayRule:
    """One gray-release rule item: clients of ``client_app_id`` with one of these IPs or labels
    get the branch's gray release (``"*"`` in ``ips`` matches every instance)."""

    client_app_id: str
    ips: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> GrayRule:
        what = "a gray rule"
        obj = _object(data, what)
        return cls(
            _str(obj, "clientAppId", what),
            _strings(obj, "clientIpList", what),
            _strings(obj, "clientLabelList", what),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``OpenGrayReleaseRuleItemDTO`` body (lists deduplicated, order kept)."""
        return {
            "clientAppId": self.client_app_id,
            "clientIpList": list(dict.fromkeys(self.ips)),
            "clientLabelList": list(dict.fromkeys(self.labels)),
        }


@dataclass(frozen=True, slots=True)
class GrayRules:
    """The rules of a gray branch (``OpenGrayReleaseRuleDTO``)."""

    branch: str
    rules: tuple[GrayRule, ...]
    app_id: str = ""
    cluster: str = ""
    namespace: str = ""

    @classmethod
    def from_json(cls, data: Any) -> GrayRules:
        what = "gray rules"
        obj = _object(data, what)
        raw = _get(obj, "ruleItems", list, what) or []
        return cls(
            _str(obj, "branchName", what),
            tuple(GrayRule.from_json(item) for item in raw),
            _str(obj, "appId", what),
            _str(obj, "clusterName", what),
            _str(obj, "namespaceName", what),
        )
