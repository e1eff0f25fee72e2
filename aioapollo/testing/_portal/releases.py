"""Releases: publish, read, list and roll back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core import PortalCore
from .model import Record, bad, missing

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
        del who  # recorded nowhere else in this test server
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
            if newest.key != space.known_key:
                space.known_key = newest.key
                self.store.reinstate(record.app_id, record.namespace, newest.key, record.cluster)
