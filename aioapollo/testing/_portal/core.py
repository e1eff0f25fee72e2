"""What every part of the portal shares: its state, the checks every operation makes, the
adoption of releases made outside the portal, and the item and release bookkeeping."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ..._apollo.wire import CONTENT_KEY, namespace_format, strip_properties
from .._store import DEFAULT_CLUSTER, ReleaseStore
from .model import (
    EXTERNAL,
    Branch,
    Consumer,
    Item,
    ItemChange,
    Record,
    Space,
    bad,
    missing,
    now,
)

__all__ = ["DEFAULT_VALUE_LENGTH_LIMIT", "PortalCore"]

#: Apollo's default ``item.value.length.limit``.
DEFAULT_VALUE_LENGTH_LIMIT = 20_000


class PortalCore:
    """The portal's state and shared helpers; :class:`PortalState` adds the operations."""

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
        self._spaces: dict[tuple[str, str, str], Space] = {}
        self._branches: dict[tuple[str, str, str], Branch] = {}
        self._records: dict[int, Record] = {}
        self._release_ids = itertools.count(1)
        self._cluster_ids = itertools.count(1)
        self._lines = itertools.count(1)
        #: Apollo's ``item.value.length.limit``: the longest value an item may have.
        self.value_length_limit = DEFAULT_VALUE_LENGTH_LIMIT
        self._buckets: dict[str, tuple[float, float]] = {}
        self._access_keys: dict[int, dict[str, Any]] = {}
        self._key_ids = itertools.count(1)
        self._history_ids = itertools.count(1)
        self._histories: list[dict[str, Any]] = []
        # (appId, cluster, namespace, ip, dataCenter) -> (releaseKey, first seen, last seen)
        self._instances: dict[tuple[str, str, str, str, str], tuple[str, str, str]] = {}

    def check_env(self, env: str) -> str:
        if env.upper() != self.env.upper():
            raise bad(f"env {env} is not served by this test server (it serves {self.env})")
        return self.env

    def operator(self, query: str | None, payload: str | None) -> str:
        """Resolve the operator like the portal: the query parameter, else the payload's."""
        name = query if query and query.strip() else payload
        if not name or not name.strip():
            raise bad("operator should not be null or empty")
        if self.users is not None and name not in self.users:
            raise bad(f"user not exists for userName:{name}")
        return name

    def app_exists(self, app_id: str) -> bool:
        return app_id in self._apps or bool(self.store.namespaces(app_id))

    def _app(self, app_id: str) -> None:
        if not self.app_exists(app_id):
            raise missing(f"app not found for appId:{app_id}")

    def clusters(self, app_id: str) -> list[str]:
        names = {DEFAULT_CLUSTER, *self._clusters.get(app_id, {}), *self.store.clusters(app_id)}
        return sorted(names, key=lambda name: (name != DEFAULT_CLUSTER, name))

    def _namespace(self, app_id: str, cluster: str, namespace: str) -> str:
        """The stored name; 404 unless the app, the cluster and the namespace exist."""
        self._app(app_id)
        if cluster not in self.clusters(app_id):
            raise missing(f"cluster not found for appId:{app_id} clusterName:{cluster}")
        name = self.store.canonical(app_id, namespace)
        if not self.store.belongs_to(app_id, name):
            raise missing(
                f"namespace not found for appId:{app_id} clusterName:{cluster} "
                f"namespaceName:{namespace}"
            )
        return name

    def _space(self, app_id: str, cluster: str, namespace: str) -> tuple[Space, str, str | None]:
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
        space = self._spaces.setdefault(key, Space())
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
                    EXTERNAL,
                )
                space.releases.append(record.id)
                self._replace_items(space, configurations, EXTERNAL)
            space.known_key = current.key
        gray = self.store.gray_branch(app_id, name, cluster)
        branch = self._branches.get(key)
        if gray is not None and (branch is None or branch.space.known_key != gray[2].key):
            branch_name, rules, release = gray
            if branch is None or branch.name != branch_name:
                branch = Branch(branch_name, Space(), rules)
                self._branches[key] = branch
                main = current.configurations if current is not None else {}
                overrides = {k: v for k, v in release.configurations.items() if main.get(k) != v}
                self._replace_items(branch.space, overrides, EXTERNAL)
            branch.rules = rules
            record = self._record(
                release.key, app_id, branch_name, name, "gray release made outside the portal",
                "", dict(release.configurations), EXTERNAL, gray=True,
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
    ) -> Record:
        record = Record(
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

    def _replace_items(self, space: Space, values: Mapping[str, str], operator: str) -> None:
        for key in [key for key in space.items if key not in values]:
            self._delete(space, key, operator)
        for key, value in values.items():
            self._upsert(space, key, value, None, operator)

    def _upsert(
        self, space: Space, key: str, value: str, comment: str | None, operator: str
    ) -> None:
        stamp = now()
        item = space.items.get(key)
        if item is None:
            space.items[key] = Item(
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

    def _delete(self, space: Space, key: str, operator: str) -> None:
        item = space.items.pop(key)
        space.history.append(ItemChange("delete", key, operator, now(), item.value, None))

    def _namespace_json(self, app_id: str, cluster: str, name: str, space: Space) -> dict[str, Any]:
        items = sorted(space.items.values(), key=lambda item: item.line_num)
        return {
            "appId": app_id,
            "clusterName": cluster,
            "namespaceName": name,
            "comment": "",
            "format": namespace_format(name),
            "isPublic": self.store.public_owner(name) == app_id,
            "items": [item.to_json() for item in items],
            "dataChangeCreatedBy": EXTERNAL,
            "dataChangeCreatedTime": space.created,
        }

    def _edit(self, space: Space, name: str, operator: str) -> None:
        """The namespace lock: the first editor holds it until the namespace is published."""
        if not self.namespace_lock:
            return
        if space.lock is None:
            space.lock = operator
        elif space.lock != operator:
            raise bad(f"namespace:{name} is modified by {space.lock}")

    def _release_fields(
        self, body: Mapping[str, Any], operator: str | None
    ) -> tuple[str, str, str, bool]:
        title = body.get("releaseTitle")
        if not isinstance(title, str) or not title:
            raise bad("Params(releaseTitle) can not be empty")
        who = self.operator(operator, body.get("releasedBy"))
        comment = body.get("releaseComment")
        return (
            title,
            comment if isinstance(comment, str) else "",
            who,
            bool(body.get("isEmergencyPublish") is True),
        )

    def _check_publish(self, space: Space, who: str, emergency: bool) -> None:
        if self.namespace_lock and not emergency and space.lock == who:
            raise bad("Config can not be published by yourself.")

    def _publish_main(
        self,
        app_id: str,
        cluster: str,
        name: str,
        space: Space,
        title: str,
        comment: str,
        who: str,
        operation: int = 0,
    ) -> Record:
        previous = self._active(space)
        values = space.values()
        data: Mapping[str, str] = values
        if namespace_format(name) != "properties":
            data = {CONTENT_KEY: values.get(CONTENT_KEY, "")}
        release_key = self.store.publish(app_id, name, data, cluster=cluster)
        record = self._record(release_key, app_id, cluster, name, title, comment, dict(data), who)
        space.releases.append(record.id)
        space.known_key = release_key
        space.lock = None
        self._history(record, operation, who, previous[-1].id if previous else 0)
        return record

    def _active(self, space: Space) -> list[Record]:
        return [self._records[i] for i in space.releases if not self._records[i].abandoned]

    def check_value(self, value: str) -> None:
        """Apollo's value-length limit (``item.value.length.limit``)."""
        if len(value) > self.value_length_limit:
            raise bad(f"value too long. length limit:{self.value_length_limit}")

    def _published(self, space: Space) -> dict[str, str] | None:
        active = self._active(space)
        return None if not active else dict(active[-1].configurations)

    def _unlock_if_clean(self, space: Space) -> None:
        """Apollo releases the namespace lock when the items are back to the published state."""
        if space.lock is None:
            return
        published = self._published(space) or {}
        if space.values() == published:
            space.lock = None

    def _history(
        self,
        record: Record,
        operation: int,
        by: str,
        previous: int = 0,
        **context: Any,
    ) -> None:
        """One release history entry (Apollo's ``ReleaseOperation`` codes)."""
        stamp = now()
        self._histories.append(
            {
                "id": next(self._history_ids),
                "appId": record.app_id,
                "clusterName": record.cluster,
                "namespaceName": record.namespace,
                "branchName": record.cluster,
                "releaseId": record.id,
                "previousReleaseId": previous,
                "operation": operation,
                "operationContext": context,
                "dataChangeCreatedBy": by,
                "dataChangeCreatedTime": stamp,
                "dataChangeLastModifiedBy": by,
                "dataChangeLastModifiedTime": stamp,
            }
        )
