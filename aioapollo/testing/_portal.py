"""The portal side of the test server: apps, clusters, working items, releases with ids, locks,
gray branches and OpenAPI consumers, over the same :class:`ReleaseStore` the config service
reads. A publish here is a ``store.publish``, so it wakes long polls like any other.

Mirrors Apollo's portal and admin service closely enough for clients and CI scripts: working
items are separate from releases (a publish releases the whole working set), releases have
numeric ids, a rollback abandons releases and serves the previous one again without touching
the items, and, with the namespace lock on, the first editor of a namespace holds it until it
is published and may not publish it. Releases made outside the portal (``server.publish``)
are adopted on the next portal request: they get an id and become the working items.

Every method runs under the store's lock and raises :class:`PortalError` with the status, the
message and the Java exception class the portal would answer with.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._apollo.wire import CONTENT_KEY, namespace_format, strip_properties
from ._store import DEFAULT_CLUSTER, GrayRule, ReleaseStore

__all__ = ["Consumer", "ItemChange", "PortalError", "PortalState"]

BAD_REQUEST = "com.ctrip.framework.apollo.common.exception.BadRequestException"
NOT_FOUND = "com.ctrip.framework.apollo.common.exception.NotFoundException"
ACCESS_DENIED = "org.springframework.security.access.AccessDeniedException"
_FORMATS = ("properties", "xml", "json", "yml", "yaml", "txt")
_NAME = re.compile(r"[0-9a-zA-Z_.-]+")
_EXTERNAL = "apollo"  # who releases made outside the portal are recorded under


class PortalError(Exception):
    """An error answer of the portal: ``status``, ``message`` and the Java ``exception``."""

    def __init__(self, status: int, message: str, exception: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.exception = exception


def _bad(message: str) -> PortalError:
    return PortalError(400, message, BAD_REQUEST)


def _missing(message: str) -> PortalError:
    return PortalError(404, message, NOT_FOUND)


def _denied() -> PortalError:
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
    """

    token: str = field(repr=False)
    apps: frozenset[str] = frozenset()
    namespaces: frozenset[tuple[str, str]] = frozenset()
    release: bool = True
    create_apps: bool = False

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
class _Item:
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
class _Record:
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
class _Space:
    """The portal's side of one namespace in one cluster (or gray branch)."""

    items: dict[str, _Item] = field(default_factory=dict)
    history: list[ItemChange] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    lock: str | None = None
    known_key: str | None = None
    created: str = field(default_factory=now)

    def values(self) -> dict[str, str]:
        return {key: item.value for key, item in self.items.items() if key}


@dataclass
class _Branch:
    name: str
    space: _Space
    rules: tuple[GrayRule, ...] = ()
    created_by: str = _EXTERNAL


class PortalState:
    """What the portal knows beyond the releases (see the module docstring).

    Args:
        store: The releases the config service serves.
        env: The one environment this portal serves (Apollo's ``DEV``, ``PRO``, ...).
    """

    def __init__(self, store: ReleaseStore, env: str = "DEV") -> None:
        self.store = store
        self.env = env
        #: Apollo's ``namespace.lock.switch``: off by default, as in Apollo.
        self.namespace_lock = False
        #: Portal users that may be named as operator (``None``: any name).
        self.users: set[str] | None = None
        self._consumers: dict[str, Consumer] = {}
        self._apps: dict[str, dict[str, str]] = {}
        self._clusters: dict[str, dict[str, int]] = {}
        self._spaces: dict[tuple[str, str, str], _Space] = {}
        self._branches: dict[tuple[str, str, str], _Branch] = {}
        self._records: dict[int, _Record] = {}
        self._release_ids = itertools.count(1)
        self._cluster_ids = itertools.count(1)
        self._lines = itertools.count(1)

    # ---------------------------------------------------------------------- consumers

    def add_consumer(self, consumer: Consumer) -> None:
        """Accept ``consumer.token`` (replacing a consumer with the same token)."""
        if not consumer.token:
            raise ValueError("a token must not be empty")
        with self.store.lock:
            self._consumers[consumer.token] = consumer

    def consumer(self, token: str | None) -> Consumer | None:
        """The consumer holding ``token``."""
        with self.store.lock:
            return self._consumers.get(token or "")

    @property
    def has_consumers(self) -> bool:
        with self.store.lock:
            return bool(self._consumers)

    # ------------------------------------------------------------------------- checks

    def check_env(self, env: str) -> str:
        if env.upper() != self.env.upper():
            raise _bad(f"env {env} is not served by this test server (it serves {self.env})")
        return self.env

    def operator(self, query: str | None, payload: str | None) -> str:
        """Resolve the operator like the portal: the query parameter, else the payload's."""
        name = query if query and query.strip() else payload
        if not name or not name.strip():
            raise _bad("operator should not be null or empty")
        if self.users is not None and name not in self.users:
            raise _bad(f"user not exists for userName:{name}")
        return name

    def app_exists(self, app_id: str) -> bool:
        return app_id in self._apps or bool(self.store.namespaces(app_id))

    def _app(self, app_id: str) -> None:
        if not self.app_exists(app_id):
            raise _missing(f"app not found for appId:{app_id}")

    def clusters(self, app_id: str) -> list[str]:
        names = {DEFAULT_CLUSTER, *self._clusters.get(app_id, {}), *self.store.clusters(app_id)}
        return sorted(names, key=lambda name: (name != DEFAULT_CLUSTER, name))

    def _namespace(self, app_id: str, cluster: str, namespace: str) -> str:
        """The stored name; 404 unless the app, the cluster and the namespace exist."""
        self._app(app_id)
        if cluster not in self.clusters(app_id):
            raise _missing(f"cluster not found for appId:{app_id} clusterName:{cluster}")
        name = self.store.canonical(app_id, namespace)
        if not self.store.belongs_to(app_id, name):
            raise _missing(
                f"namespace not found for appId:{app_id} clusterName:{cluster} "
                f"namespaceName:{namespace}"
            )
        return name

    # ------------------------------------------------------------------------ sync

    def _space(self, app_id: str, cluster: str, namespace: str) -> tuple[_Space, str, str | None]:
        """The working space for ``cluster`` (a cluster or a branch name): (space, stored name,
        branch name or None). Adopts releases made outside the portal first."""
        for (app, main_cluster, name), branch in self._branches.items():
            if app == app_id and branch.name == cluster:
                if name.lower() == strip_properties(namespace).lower():
                    self._sync(app_id, main_cluster, name)
                    return branch.space, name, branch.name
        name = self._namespace(app_id, cluster, namespace)
        self._sync(app_id, cluster, name)
        return self._spaces[(app_id, cluster, name)], name, None

    def _sync(self, app_id: str, cluster: str, name: str) -> None:
        key = (app_id, cluster, name)
        space = self._spaces.setdefault(key, _Space())
        current = self.store.release(app_id, name, cluster)
        if current is None:
            space.known_key = None
        elif current.key != space.known_key:
            known = [r for r in self._records.values() if r.key == current.key]
            if known:  # one of ours served again (reinstated by hand): make it the newest
                for record in self._records.values():
                    if record.gray or (record.app_id, record.cluster) != (app_id, cluster):
                        continue
                    if record.namespace == name and record.id > known[0].id:
                        record.abandoned = True
                known[0].abandoned = False
            else:
                configurations = dict(current.configurations)
                record = self._record(
                    current.key,
                    app_id,
                    cluster,
                    name,
                    "release made outside the portal",
                    "",
                    configurations,
                    _EXTERNAL,
                )
                space.releases.append(record.id)
                self._replace_items(space, configurations, _EXTERNAL)
            space.known_key = current.key
        gray = self.store.gray_branch(app_id, name, cluster)
        branch = self._branches.get(key)
        if gray is not None and (branch is None or branch.space.known_key != gray[2].key):
            branch_name, rules, release = gray
            if branch is None or branch.name != branch_name:
                branch = _Branch(branch_name, _Space(), rules)
                self._branches[key] = branch
                main = current.configurations if current is not None else {}
                overrides = {k: v for k, v in release.configurations.items() if main.get(k) != v}
                self._replace_items(branch.space, overrides, _EXTERNAL)
            branch.rules = rules
            record = self._record(
                release.key, app_id, branch_name, name, "gray release made outside the portal",
                "", dict(release.configurations), _EXTERNAL, gray=True,
            )  # fmt: skip
            branch.space.releases.append(record.id)
            branch.space.known_key = release.key
        elif gray is None and branch is not None and branch.space.known_key is not None:
            del self._branches[key]  # its gray release was withdrawn outside the portal

    def _record(
        self,
        release_key: str,
        app_id: str,
        cluster: str,
        namespace: str,
        title: str,
        comment: str,
        configurations: dict[str, str],
        by: str,
        *,
        gray: bool = False,
    ) -> _Record:
        record = _Record(
            next(self._release_ids),
            release_key,
            app_id,
            cluster,
            namespace,
            title,
            comment,
            configurations,
            by,
            now(),
            gray,
        )
        self._records[record.id] = record
        return record

    def _replace_items(self, space: _Space, values: Mapping[str, str], operator: str) -> None:
        for key in [key for key in space.items if key not in values]:
            self._delete(space, key, operator)
        for key, value in values.items():
            self._upsert(space, key, value, None, operator)

    def _upsert(
        self, space: _Space, key: str, value: str, comment: str | None, operator: str
    ) -> None:
        stamp = now()
        item = space.items.get(key)
        if item is None:
            space.items[key] = _Item(
                key, value, comment or "", next(self._lines), operator, stamp, operator, stamp
            )
            space.history.append(ItemChange("create", key, operator, stamp, None, value))
            return
        if item.value == value and (comment is None or comment == item.comment):
            return
        space.history.append(ItemChange("update", key, operator, stamp, item.value, value))
        item.value = value
        if comment is not None:
            item.comment = comment
        item.modified_by, item.modified_time = operator, stamp

    def _delete(self, space: _Space, key: str, operator: str) -> None:
        item = space.items.pop(key)
        space.history.append(ItemChange("delete", key, operator, now(), item.value, None))

    # --------------------------------------------------------------------------- apps

    def app_json(self, app_id: str) -> dict[str, Any]:
        info = self._apps.get(app_id, {})
        return {
            "appId": app_id,
            "name": info.get("name", app_id),
            "orgId": info.get("orgId", "default"),
            "orgName": info.get("orgName", "default"),
            "ownerName": info.get("ownerName", _EXTERNAL),
            "ownerEmail": info.get("ownerEmail", ""),
            "dataChangeCreatedBy": info.get("by", _EXTERNAL),
            "dataChangeCreatedTime": info.get("time", ""),
        }

    def apps(self, app_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        with self.store.lock:
            known = {*self._apps, *self.store.app_ids()}
            wanted = known if app_ids is None else [a for a in app_ids if self.app_exists(a)]
            return [self.app_json(app_id) for app_id in sorted(wanted)]

    def authorized_apps(self, consumer: Consumer) -> list[dict[str, Any]]:
        with self.store.lock:
            known = {*self._apps, *self.store.app_ids()}
            apps = {a for a in known if consumer.app_level(a)}
            apps |= {app for app, _ in consumer.namespaces if self.app_exists(app)}
            return [self.app_json(app_id) for app_id in sorted(apps)]

    def create_app(self, body: Mapping[str, Any], consumer: Consumer) -> None:
        if not consumer.create_apps:
            raise _denied()
        app = body.get("app")
        if not isinstance(app, dict):
            raise _bad("App is null")
        for field_name, message in (
            ("appId", "appId can not be blank"),
            ("name", "app name can not be blank"),
            ("orgId", "orgId can not be blank"),
            ("ownerName", "ownerName can not be blank"),
        ):
            if not isinstance(app.get(field_name), str) or not app[field_name].strip():
                raise _bad(message)
        app_id = app["appId"]
        with self.store.lock:
            if self.app_exists(app_id):
                raise _bad(f"app already exists for appId:{app_id}")
            self._apps[app_id] = {
                "name": app["name"],
                "orgId": app["orgId"],
                "orgName": str(app.get("orgName") or app["orgId"]),
                "ownerName": app["ownerName"],
                "ownerEmail": str(app.get("ownerEmail") or ""),
                "by": str(app.get("dataChangeCreatedBy") or app["ownerName"]),
                "time": now(),
            }
            self.store.create_namespace(app_id, "application")

    def env_clusters(self, app_id: str) -> list[dict[str, Any]]:
        with self.store.lock:
            self._app(app_id)
            return [{"env": self.env, "clusters": self.clusters(app_id)}]

    def cluster_json(self, app_id: str, cluster: str) -> dict[str, Any]:
        with self.store.lock:
            self._app(app_id)
            if cluster not in self.clusters(app_id):
                raise _missing(f"cluster not found for appId:{app_id} clusterName:{cluster}")
            ids = self._clusters.setdefault(app_id, {})
            if cluster not in ids:
                ids[cluster] = next(self._cluster_ids)
            return {
                "id": ids[cluster],
                "name": cluster,
                "appId": app_id,
                "parentClusterId": 0,
                "comment": "",
                "dataChangeCreatedBy": _EXTERNAL,
            }

    def create_cluster(self, app_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _bad(f"invalid clusterName format:{name}")
        if body.get("appId") != app_id:
            raise _bad("AppId not equal")
        self.operator(None, body.get("dataChangeCreatedBy"))
        with self.store.lock:
            self._app(app_id)
            if name in self.clusters(app_id):
                raise _bad(f"cluster already exists for clusterName:{name}")
            self._clusters.setdefault(app_id, {})[name] = next(self._cluster_ids)
            return self.cluster_json(app_id, name)

    # --------------------------------------------------------------------- namespaces

    def create_app_namespace(
        self, app_id: str, body: Mapping[str, Any], operator: str | None
    ) -> dict[str, Any]:
        if body.get("appId") != app_id:
            raise _bad(
                f"AppId not equal. AppId in path = {app_id}, AppId in payload = {body.get('appId')}"
            )
        name, fmt = body.get("name"), body.get("format")
        if not isinstance(name, str) or not name or not isinstance(fmt, str) or not fmt:
            raise _bad("Params(appId, name, format) can not be empty")
        if not _NAME.fullmatch(name):
            raise _bad(f"invalid namespace format:{name}")
        if fmt not in _FORMATS:
            raise _bad(f"invalid namespace format:{fmt}")
        who = self.operator(operator, body.get("dataChangeCreatedBy"))
        public = body.get("isPublic") is True
        with self.store.lock:
            self._app(app_id)
            prefix = ""
            if public and body.get("appendNamespacePrefix", True) is not False:
                prefix = self._apps.get(app_id, {}).get("orgId", "default") + "."
            full = prefix + name + ("" if fmt == "properties" else f".{fmt}")
            if self.store.belongs_to(app_id, full) or (
                public and self.store.public_owner(full) is not None
            ):
                raise _bad(f"appNamespace already exists for appId:{app_id} namespaceName:{full}")
            stored = self.store.create_namespace(app_id, full, public=public)
            return {
                "name": stored,
                "appId": app_id,
                "format": fmt,
                "isPublic": public,
                "appendNamespacePrefix": bool(prefix),
                "comment": str(body.get("comment") or ""),
                "dataChangeCreatedBy": who,
                "dataChangeCreatedTime": now(),
            }

    def namespace_json(self, app_id: str, cluster: str, namespace: str) -> dict[str, Any]:
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            return self._namespace_json(app_id, cluster, name, space)

    def _namespace_json(
        self, app_id: str, cluster: str, name: str, space: _Space
    ) -> dict[str, Any]:
        items = sorted(space.items.values(), key=lambda item: item.line_num)
        return {
            "appId": app_id,
            "clusterName": cluster,
            "namespaceName": name,
            "comment": "",
            "format": namespace_format(name),
            "isPublic": self.store.public_owner(name) == app_id,
            "items": [item.to_json() for item in items],
            "dataChangeCreatedBy": _EXTERNAL,
            "dataChangeCreatedTime": space.created,
        }

    def namespaces_json(self, app_id: str, cluster: str) -> list[dict[str, Any]]:
        with self.store.lock:
            self._app(app_id)
            return [
                self.namespace_json(app_id, cluster, name) for name in self.store.namespaces(app_id)
            ]

    def lock_json(self, app_id: str, cluster: str, namespace: str) -> dict[str, Any]:
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            return {
                "namespaceName": name,
                "isLocked": space.lock is not None,
                "lockedBy": space.lock or "",
                "isEmergencyPublishAllowed": True,
            }

    def history(self, app_id: str, cluster: str, namespace: str) -> list[ItemChange]:
        """The changes made to the namespace's working items, oldest first."""
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            return list(space.history)

    # -------------------------------------------------------------------------- items

    def _edit(self, space: _Space, name: str, operator: str) -> None:
        """The namespace lock: the first editor holds it until the namespace is published."""
        if not self.namespace_lock:
            return
        if space.lock is None:
            space.lock = operator
        elif space.lock != operator:
            raise _bad(f"namespace:{name} is modified by {space.lock}")

    def item_json(self, app_id: str, cluster: str, namespace: str, key: str) -> dict[str, Any]:
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            item = space.items.get(key)
            if item is None:
                raise _missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
            return item.to_json()

    def items_page(
        self, app_id: str, cluster: str, namespace: str, page: int, size: int
    ) -> dict[str, Any]:
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            items = sorted(space.items.values(), key=lambda item: item.line_num)
            chunk = items[page * size : (page + 1) * size] if size > 0 else []
            return {
                "page": page,
                "size": size,
                "total": len(items),
                "content": [item.to_json() for item in chunk],
            }

    @staticmethod
    def _item_fields(body: Mapping[str, Any]) -> tuple[str, str, str | None]:
        key, value, comment = body.get("key"), body.get("value"), body.get("comment")
        if not isinstance(key, str) or not key.strip():
            raise _bad("key should not be null or empty")
        if not isinstance(value, str):
            raise _bad("value should not be null")
        if comment is not None and not isinstance(comment, str):
            raise _bad("comment must be a string")
        if comment is not None and len(comment) > 256:
            raise _bad("Comment length should not exceed 256 characters")
        return key, value, comment

    def create_item(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> dict[str, Any]:
        key, value, comment = self._item_fields(body)
        who = self.operator(operator, body.get("dataChangeCreatedBy"))
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key in space.items:
                raise _bad(f"item already exists for itemKey:{key}")
            self._edit(space, name, who)
            self._upsert(space, key, value, comment, who)
            return space.items[key].to_json()

    def update_item(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        key: str,
        body: Mapping[str, Any],
        operator: str | None,
        create: bool,
    ) -> None:
        body_key, value, comment = self._item_fields(body)
        if body_key != key:
            raise _bad("Key in path and payload is not consistent")
        payload = body.get("dataChangeLastModifiedBy") or (
            body.get("dataChangeCreatedBy") if create else None
        )
        who = self.operator(operator, payload)
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key not in space.items and not create:
                raise _missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
            self._edit(space, name, who)
            self._upsert(space, key, value, comment, who)

    def delete_item(
        self, app_id: str, cluster: str, namespace: str, key: str, operator: str | None
    ) -> None:
        who = self.operator(operator, None)
        with self.store.lock:
            space, name, _branch = self._space(app_id, cluster, namespace)
            if key not in space.items:
                raise _missing(
                    f"item not found for appId:{app_id} clusterName:{cluster} "
                    f"namespaceName:{name} itemKey:{key}"
                )
            self._edit(space, name, who)
            self._delete(space, key, who)

    # ----------------------------------------------------------------------- releases

    def _release_fields(
        self, body: Mapping[str, Any], operator: str | None
    ) -> tuple[str, str, str, bool]:
        title = body.get("releaseTitle")
        if not isinstance(title, str) or not title:
            raise _bad("Params(releaseTitle) can not be empty")
        who = self.operator(operator, body.get("releasedBy"))
        comment = body.get("releaseComment")
        return (
            title,
            comment if isinstance(comment, str) else "",
            who,
            bool(body.get("isEmergencyPublish") is True),
        )

    def _check_publish(self, space: _Space, who: str, emergency: bool) -> None:
        if self.namespace_lock and not emergency and space.lock == who:
            raise _bad("Config can not be published by yourself.")

    def publish(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> dict[str, Any]:
        title, comment, who, emergency = self._release_fields(body, operator)
        with self.store.lock:
            space, name, branch = self._space(app_id, cluster, namespace)
            if branch is not None:
                raise _bad(f"{cluster} is a gray branch: publish it with a gray release")
            self._check_publish(space, who, emergency)
            return self._publish_main(app_id, cluster, name, space, title, comment, who).to_json()

    def _publish_main(
        self,
        app_id: str,
        cluster: str,
        name: str,
        space: _Space,
        title: str,
        comment: str,
        who: str,
    ) -> _Record:
        values = space.values()
        data: Mapping[str, str] = values
        if namespace_format(name) != "properties":
            data = {CONTENT_KEY: values.get(CONTENT_KEY, "")}
        release_key = self.store.publish(app_id, name, data, cluster=cluster)
        record = self._record(release_key, app_id, cluster, name, title, comment, dict(data), who)
        space.releases.append(record.id)
        space.known_key = release_key
        space.lock = None
        return record

    def _active(self, space: _Space) -> list[_Record]:
        return [self._records[i] for i in space.releases if not self._records[i].abandoned]

    def latest_release(self, app_id: str, cluster: str, namespace: str) -> dict[str, Any] | None:
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            active = self._active(space)
            return active[-1].to_json() if active else None

    def active_releases(
        self, app_id: str, cluster: str, namespace: str, page: int, size: int
    ) -> list[dict[str, Any]]:
        with self.store.lock:
            space, _name, _branch = self._space(app_id, cluster, namespace)
            newest = list(reversed(self._active(space)))
            return [r.to_json() for r in newest[page * size : (page + 1) * size]]

    def release(self, release_id: int) -> _Record:
        with self.store.lock:
            record = self._records.get(release_id)
            if record is None:
                raise _missing(f"release not found for releaseId:{release_id}")
            return record

    def rollback(self, release_id: int, operator: str | None, to_release_id: int | None) -> None:
        who = self.operator(operator, None)
        del who  # recorded nowhere else in this test server
        with self.store.lock:
            record = self.release(release_id)
            if record.gray:
                raise _bad("this test server cannot roll back gray releases")
            space, _name, _branch = self._space(record.app_id, record.cluster, record.namespace)
            active = self._active(space)
            if to_release_id is not None and to_release_id > -1:
                if to_release_id == release_id:
                    raise _bad("current release equal to target release")
                target = self.release(to_release_id)
                if record.abandoned or target.abandoned:
                    raise _bad("release is not active")
                for other in active:
                    if to_release_id < other.id <= release_id:
                        other.abandoned = True
            else:
                if record.abandoned:
                    raise _bad("release is not active")
                if len(active) < 2:
                    raise _bad(
                        f"Can't rollback namespace(appId={record.app_id}, clusterName="
                        f"{record.cluster}, namespaceName={record.namespace}) because there is "
                        "only one active release"
                    )
                record.abandoned = True
            newest = self._active(space)[-1]
            if newest.key != space.known_key:
                space.known_key = newest.key
                self.store.reinstate(record.app_id, record.namespace, newest.key, record.cluster)

    # --------------------------------------------------------------------------- gray

    def branch_json(self, app_id: str, cluster: str, namespace: str) -> dict[str, Any] | None:
        with self.store.lock:
            name = self._namespace(app_id, cluster, namespace)
            self._sync(app_id, cluster, name)
            branch = self._branches.get((app_id, cluster, name))
            if branch is None:
                return None
            return self._namespace_json(app_id, branch.name, name, branch.space)

    def create_branch(
        self, app_id: str, cluster: str, namespace: str, operator: str | None
    ) -> dict[str, Any]:
        who = self.operator(operator, None)
        with self.store.lock:
            name = self._namespace(app_id, cluster, namespace)
            self._sync(app_id, cluster, name)
            branch = self._branches.get((app_id, cluster, name))
            if branch is None:
                stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
                branch_name = f"{stamp}-{next(self._release_ids):016x}"
                branch = _Branch(branch_name, _Space(), (), who)
                self._branches[(app_id, cluster, name)] = branch
            return self._namespace_json(app_id, branch.name, name, branch.space)

    def _branch(self, app_id: str, cluster: str, namespace: str, branch_name: str) -> tuple[
        _Branch, str
    ]:  # fmt: skip
        name = self._namespace(app_id, cluster, namespace)
        self._sync(app_id, cluster, name)
        branch = self._branches.get((app_id, cluster, name))
        if branch is None or branch.name != branch_name:
            raise _missing(f"branch not found for branchName:{branch_name}")
        return branch, name

    def rules_json(
        self, app_id: str, cluster: str, namespace: str, branch_name: str
    ) -> dict[str, Any]:
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            return {
                "appId": app_id,
                "clusterName": cluster,
                "namespaceName": name,
                "branchName": branch.name,
                "ruleItems": [
                    {
                        "clientAppId": rule.client_app_id,
                        "clientIpList": sorted(rule.ips),
                        "clientLabelList": sorted(rule.labels),
                    }
                    for rule in branch.rules
                ],
            }

    def set_rules(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
    ) -> None:
        self.operator(operator, body.get("dataChangeLastModifiedBy"))
        raw = body.get("ruleItems")
        if not isinstance(raw, list):
            raise _bad("ruleItems can not be null")
        rules = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("clientAppId"), str):
                raise _bad("a rule item needs clientAppId")
            ips, labels = item.get("clientIpList") or [], item.get("clientLabelList") or []
            if not all(isinstance(x, str) for x in [*ips, *labels]):
                raise _bad("clientIpList and clientLabelList must hold strings")
            rules.append(GrayRule(item["clientAppId"], frozenset(ips), frozenset(labels)))
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            branch.rules = tuple(rules)
            if branch.space.known_key is not None:
                self.store.set_gray_rules(app_id, name, branch.rules, cluster)

    def gray_publish(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
        delete_keys: Iterable[str] = (),
    ) -> dict[str, Any]:
        title, comment, who, emergency = self._release_fields(body, operator)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            self._check_publish(branch.space, who, emergency)
            main = self.store.release(app_id, name, cluster)
            data = dict(main.configurations) if main is not None else {}
            data.update(branch.space.values())
            for key in delete_keys:
                data.pop(key, None)
            release_key = self.store.publish_gray(
                app_id, name, data, branch=branch.name, rules=branch.rules, cluster=cluster
            )
            record = self._record(
                release_key, app_id, branch.name, name, title, comment, data, who, gray=True
            )
            branch.space.releases.append(record.id)
            branch.space.known_key = release_key
            branch.space.lock = None
            return record.to_json()

    def merge(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        branch_name: str,
        body: Mapping[str, Any],
        operator: str | None,
        delete_branch: bool,
    ) -> dict[str, Any]:
        title, comment, who, _emergency = self._release_fields(body, operator)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            space = self._spaces[(app_id, cluster, name)]
            for key, value in branch.space.values().items():
                self._upsert(space, key, value, None, who)
            record = self._publish_main(app_id, cluster, name, space, title, comment, who)
            if delete_branch:
                self._drop_branch(app_id, cluster, name, branch)
            return record.to_json()

    def abandon(
        self, app_id: str, cluster: str, namespace: str, branch_name: str, operator: str | None
    ) -> None:
        self.operator(operator, None)
        with self.store.lock:
            branch, name = self._branch(app_id, cluster, namespace, branch_name)
            self._drop_branch(app_id, cluster, name, branch)

    def _drop_branch(self, app_id: str, cluster: str, name: str, branch: _Branch) -> None:
        del self._branches[(app_id, cluster, name)]
        if self.store.gray_branch(app_id, name, cluster) is not None:
            self.store.clear_gray(app_id, name, cluster)
