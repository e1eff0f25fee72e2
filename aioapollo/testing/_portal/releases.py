"""Releases: publish, read, list and roll back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core import PortalCore
from .model import Record, bad, missing, now

__all__ = ["ReleasesMixin"]


class ReleasesMixin(PortalCore):
    """Releases of the main cluster."""

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
                raise bad(f"{cluster} is a gray branch: publish it with a gray release")
            self._check_publish(space, who, emergency)
            return self._publish_main(app_id, cluster, name, space, title, comment, who).to_json()

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

    def release(self, release_id: int) -> Record:
        with self.store.lock:
            record = self._records.get(release_id)
            if record is None:
                raise missing(f"release not found for releaseId:{release_id}")
            return record

    def rollback(self, release_id: int, operator: str | None, to_release_id: int | None) -> None:
        who = self.operator(operator, None)
        with self.store.lock:
            record = self.release(release_id)
            if record.gray:
                raise bad("this test server cannot roll back gray releases")
            space, _name, _branch = self._space(record.app_id, record.cluster, record.namespace)
            active = self._active(space)
            if to_release_id is not None and to_release_id > -1:
                if to_release_id == release_id:
                    raise bad("current release equal to target release")
                target = self.release(to_release_id)
                if record.abandoned or target.abandoned:
                    raise bad("release is not active")
                for other in active:
                    if to_release_id < other.id <= release_id:
                        other.abandoned = True
            else:
                if record.abandoned:
                    raise bad("release is not active")
                if len(active) < 2:
                    raise bad(
                        f"Can't rollback namespace(appId={record.app_id}, clusterName="
                        f"{record.cluster}, namespaceName={record.namespace}) because there is "
                        "only one active release"
                    )
                record.abandoned = True
            newest = self._active(space)[-1]
            self._history(newest, 1, who, record.id)
            if newest.key != space.known_key:
                space.known_key = newest.key
                self.store.reinstate(record.app_id, record.namespace, newest.key, record.cluster)

    def release_histories(
        self, app_id: str, cluster: str, namespace: str, page: int, size: int
    ) -> list[dict[str, Any]]:
        """The namespace's release history (publishes, rollbacks, gray releases), newest first."""
        with self.store.lock:
            _space, name, _branch = self._space(app_id, cluster, namespace)
            branches = {b.name for b in self._branches.values()}
            found = [
                h
                for h in reversed(self._histories)
                if h["appId"] == app_id
                and h["namespaceName"] == name
                and (h["clusterName"] == cluster or h["clusterName"] in branches)
            ]
            return found[page * size : (page + 1) * size] if size > 0 else []

    def compare_releases(self, base_id: int, other_id: int) -> dict[str, Any]:
        """What changes from release ``base_id`` to release ``other_id``."""
        with self.store.lock:
            base = self.release(base_id).configurations
            other = self.release(other_id).configurations
        changes: list[dict[str, Any]] = []
        for key, value in base.items():
            if key not in other:
                changes.append({"changeType": "DELETED", "key": key, "oldValue": value})
            elif other[key] != value:
                changes.append(
                    {"changeType": "MODIFIED", "key": key, "oldValue": value,
                     "newValue": other[key]}
                )  # fmt: skip
        for key, value in other.items():
            if key not in base:
                changes.append({"changeType": "ADDED", "key": key, "newValue": value})
        return {"changes": changes}

    # ------------------------------------------------------------------------ instances

    def record_instance(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        ip: str,
        data_center: str,
        release_key: str,
    ) -> None:
        """A client fetched ``release_key`` (the config service tells the portal, as Apollo's
        instance tables do)."""
        with self.store.lock:
            key = (app_id, cluster, self.store.canonical(app_id, namespace), ip, data_center)
            stamp = now()
            known = self._instances.get(key)
            first = known[1] if known is not None else stamp
            delivered = stamp if known is None or known[0] != release_key else known[2]
            self._instances[key] = (release_key, first, delivered)

    def _instance_json(self, index: int, key: tuple[str, ...], seen: tuple[str, str, str]) -> Any:
        app_id, cluster, _name, ip, data_center = key
        records = [r for r in self._records.values() if r.key == seen[0]]
        configs = []
        if records:
            configs.append(
                {"release": records[0].to_json(), "releaseDeliveryTime": seen[2],
                 "dataChangeLastModifiedTime": seen[2]}
            )  # fmt: skip
        return {
            "id": index,
            "appId": app_id,
            "clusterName": cluster,
            "dataCenter": data_center,
            "ip": ip,
            "configs": configs,
            "dataChangeCreatedTime": seen[1],
        }

    def instances(
        self,
        app_id: str,
        cluster: str,
        namespace: str,
        *,
        release_key: str | None = None,
        not_in: frozenset[str] = frozenset(),
    ) -> list[Any]:
        """Clients that fetched the namespace (those holding ``release_key``, or not holding
        any of ``not_in``), in the order first seen."""
        with self.store.lock:
            self._space(app_id, cluster, namespace)
            name = self.store.canonical(app_id, namespace)
            found = []
            for index, (key, seen) in enumerate(self._instances.items(), start=1):
                if key[0] != app_id or key[2] != name:
                    continue
                if key[1] != cluster and release_key is None:
                    continue
                if release_key is not None and seen[0] != release_key:
                    continue
                if seen[0] in not_in:
                    continue
                found.append(self._instance_json(index, key, seen))
            return found

    def release_instances(self, release_id: int) -> list[Any]:
        """Clients holding this release."""
        record = self.release(release_id)
        with self.store.lock:
            namespace_cluster = record.cluster
            for (app, cluster, _name), branch in self._branches.items():
                if branch.name == record.cluster and app == record.app_id:
                    namespace_cluster = cluster
            return self.instances(
                record.app_id, namespace_cluster, record.namespace, release_key=record.key
            )
