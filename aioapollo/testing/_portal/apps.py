"""Apps, clusters and namespaces of the portal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._store import DEFAULT_CLUSTER
from .core import PortalCore
from .model import EXTERNAL, FORMATS, NAME, Consumer, bad, denied, missing, now

__all__ = ["AppsMixin"]


class AppsMixin(PortalCore):
    """Apps, clusters and namespaces."""

    def app_json(self, app_id: str) -> dict[str, Any]:
        info = self._apps.get(app_id, {})
        return {
            "appId": app_id,
            "name": info.get("name", app_id),
            "orgId": info.get("orgId", "default"),
            "orgName": info.get("orgName", "default"),
            "ownerName": info.get("ownerName", EXTERNAL),
            "ownerEmail": info.get("ownerEmail", ""),
            "dataChangeCreatedBy": info.get("by", EXTERNAL),
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
            raise denied()
        app = body.get("app")
        if not isinstance(app, dict):
            raise bad("App is null")
        for field_name, message in (
            ("appId", "appId can not be blank"),
            ("name", "app name can not be blank"),
            ("orgId", "orgId can not be blank"),
            ("ownerName", "ownerName can not be blank"),
        ):
            if not isinstance(app.get(field_name), str) or not app[field_name].strip():
                raise bad(message)
        app_id = app["appId"]
        with self.store.lock:
            if self.app_exists(app_id):
                raise bad(f"app already exists for appId:{app_id}")
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
                raise missing(f"cluster not found for appId:{app_id} clusterName:{cluster}")
            ids = self._clusters.setdefault(app_id, {})
            if cluster not in ids:
                ids[cluster] = next(self._cluster_ids)
            return {
                "id": ids[cluster],
                "name": cluster,
                "appId": app_id,
                "parentClusterId": 0,
                "comment": "",
                "dataChangeCreatedBy": EXTERNAL,
            }

    def create_cluster(self, app_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise bad(f"invalid clusterName format:{name}")
        if body.get("appId") != app_id:
            raise bad("AppId not equal")
        self.operator(None, body.get("dataChangeCreatedBy"))
        with self.store.lock:
            self._app(app_id)
            if name in self.clusters(app_id):
                raise bad(f"cluster already exists for clusterName:{name}")
            self._clusters.setdefault(app_id, {})[name] = next(self._cluster_ids)
            return self.cluster_json(app_id, name)

    def create_app_namespace(
        self, app_id: str, body: Mapping[str, Any], operator: str | None
    ) -> dict[str, Any]:
        if body.get("appId") != app_id:
            raise bad(
                f"AppId not equal. AppId in path = {app_id}, AppId in payload = {body.get('appId')}"
            )
        name, fmt = body.get("name"), body.get("format")
        if not isinstance(name, str) or not name or not isinstance(fmt, str) or not fmt:
            raise bad("Params(appId, name, format) can not be empty")
        if not NAME.fullmatch(name):
            raise bad(f"invalid namespace format:{name}")
        if fmt not in FORMATS:
            raise bad(f"invalid namespace format:{fmt}")
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
                raise bad(f"appNamespace already exists for appId:{app_id} namespaceName:{full}")
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

    # ------------------------------------------------------------------------ deleting

    def _forget(self, app_id: str, cluster: str | None, name: str | None) -> None:
        """Drop the portal's records of what the store dropped."""
        for key in [k for k in self._spaces if k[0] == app_id]:
            if (cluster is None or key[1] == cluster) and (name is None or key[2] == name):
                del self._spaces[key]
        for key in [k for k in self._branches if k[0] == app_id]:
            if (cluster is None or key[1] == cluster) and (name is None or key[2] == name):
                del self._branches[key]

    def delete_app(self, app_id: str, operator: str | None) -> None:
        """Delete an app with its clusters, namespaces, items and releases."""
        self.operator(operator, None)
        with self.store.lock:
            self._app(app_id)
            self.store.drop(app_id)
            self._forget(app_id, None, None)
            self._apps.pop(app_id, None)
            self._clusters.pop(app_id, None)
            for key_id in [k for k, v in self._access_keys.items() if v["appId"] == app_id]:
                del self._access_keys[key_id]

    def delete_cluster(self, app_id: str, cluster: str, operator: str | None) -> None:
        """Delete a cluster (not ``default``) with its items and releases."""
        self.operator(operator, None)
        with self.store.lock:
            self._app(app_id)
            if cluster not in self.clusters(app_id):
                raise missing(f"cluster not found for appId:{app_id} clusterName:{cluster}")
            if cluster == DEFAULT_CLUSTER:
                raise bad("Can't delete default cluster")
            self.store.drop(app_id, cluster=cluster)
            self._forget(app_id, cluster, None)
            self._clusters.get(app_id, {}).pop(cluster, None)

    def delete_namespace(
        self, app_id: str, cluster: str | None, namespace: str, operator: str | None
    ) -> None:
        """Delete a namespace in one cluster (its items and releases), or, with ``cluster``
        ``None``, the app namespace itself in every cluster."""
        self.operator(operator, None)
        with self.store.lock:
            name = self._namespace(app_id, cluster or DEFAULT_CLUSTER, namespace)
            if name == "application" and cluster is None:
                raise bad("can not delete the application namespace")
            self.store.drop(app_id, cluster=cluster, namespace=name)
            self._forget(app_id, cluster, name)

    def create_namespaces(self, body: Any, operator: str | None) -> None:
        """Create namespaces of existing app namespaces in an env and cluster (this server
        has every app namespace in every cluster, so this checks and confirms)."""
        self.operator(operator, None)
        if not isinstance(body, list) or not body:
            raise bad("namespaces can not be empty")
        with self.store.lock:
            for entry in body:
                if not isinstance(entry, dict):
                    raise bad("every namespace must be an object")
                app_id, cluster = entry.get("appId"), entry.get("clusterName")
                name, env = entry.get("appNamespaceName"), entry.get("env")
                if not all(isinstance(v, str) and v for v in (app_id, cluster, name, env)):
                    raise bad("appId, env, clusterName and appNamespaceName can not be empty")
                assert isinstance(app_id, str) and isinstance(cluster, str)
                assert isinstance(name, str) and isinstance(env, str)
                self.check_env(env)
                if not self.store.belongs_to(app_id, self.store.canonical(app_id, name)):
                    if self.store.public_owner(name) is None:
                        raise bad(f"appNamespace not exist. appId:{app_id} namespace:{name}")
                    self.store.create_namespace(app_id, name)  # associate the public one
                self._namespace(app_id, cluster, name)
