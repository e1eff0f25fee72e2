"""The client's operations of later portals (OpenAPI spec 0.3.x, Apollo 3.0): text edits,
item diff, validation and synchronization, deletes, release history and comparison,
instances, commits and access keys. On a portal without one, it raises
``OpenApiUnsupportedError`` ("this portal does not support ...")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._models import Release
from ._shapes import list_of, ns, present, release_body

__all__ = ["PortalOpsMixin"]

_Namespace = tuple[str, str, str, str]  # (env, appId, cluster, namespace)


def _identifier(target: _Namespace) -> dict[str, str | int]:
    env, app_id, cluster, namespace = target
    return ns(env, app_id, cluster, namespace)


def _sync_body(targets: Iterable[_Namespace], items: Mapping[str, str]) -> dict[str, Any]:
    wanted = [_identifier(target) for target in targets]
    if not wanted:
        raise ValueError("name at least one target namespace (env, app_id, cluster, namespace)")
    for key, value in items.items():
        if not isinstance(value, str):
            raise TypeError(f"the value of {key!r} must be a str")
    return {
        "syncToNamespaces": wanted,
        "syncItems": [{"key": key, "value": value} for key, value in items.items()],
    }


class PortalOpsMixin:
    """Operations of later portals; mixed into ``ApolloOpenApiClient``."""

    async def _call(
        self,
        op_id: str,
        params: Mapping[str, str | int],
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        raise NotImplementedError  # pragma: no cover - ApolloOpenApiClient's

    def _operator(self, what: str) -> str:
        raise NotImplementedError  # pragma: no cover - ApolloOpenApiClient's

    # --------------------------------------------------------------------------- items

    async def set_text(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, text: str
    ) -> None:
        """Replace the namespace's working items by a text, as the portal's text editor does
        (a properties text: ``key = value`` lines; keys it lacks are deleted; other formats:
        the whole document). Not published. Retried (it is idempotent)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        operator = self._operator("set_text")
        await self._call(
            "batchUpdateItemsByText",
            ns(env, app_id, cluster, namespace),
            query={"operator": operator},
            body={"configText": text, "operator": operator} if operator else {"configText": text},
        )

    async def validate_text(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, text: str
    ) -> None:
        """Have the portal check ``text`` in the namespace's format; raises
        ``OpenApiBadRequestError`` with the portal's reason if it does not parse."""
        await self._call(
            "syntaxCheck", ns(env, app_id, cluster, namespace), body={"configText": text}
        )

    async def diff_items(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        items: Mapping[str, str],
        targets: Iterable[_Namespace],
    ) -> list[dict[str, Any]]:
        """What synchronizing ``items`` into each target ``(env, app_id, cluster,
        namespace)`` would change there: the portal's ``createItems``/``updateItems``/
        ``deleteItems`` per target (``code`` 200, or the reason it cannot)."""
        data = await self._call(
            "compareItems", ns(env, app_id, cluster, namespace), body=_sync_body(targets, items)
        )
        return list_of(data, "item diff")

    async def sync_items(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        items: Mapping[str, str],
        targets: Iterable[_Namespace],
    ) -> None:
        """Set ``items`` in every target namespace (not published). Retried."""
        operator = self._operator("sync_items")
        await self._call(
            "syncItems",
            ns(env, app_id, cluster, namespace),
            query={"operator": operator},
            body=_sync_body(targets, items),
        )

    async def revert_items(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> None:
        """Throw away the namespace's unpublished changes (the lock goes with them)."""
        operator = self._operator("revert_items")
        await self._call(
            "revertItems", ns(env, app_id, cluster, namespace), query={"operator": operator}
        )

    async def list_commits(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        key: str | None = None,
        page: int = 0,
        size: int = 10,
    ) -> list[dict[str, Any]]:
        """The namespace's commits (item changes), newest first; ``changeSets`` is JSON text."""
        data = await self._call(
            "findCommits",
            ns(env, app_id, cluster, namespace),
            query={"key": key, "page": page, "size": size},
        )
        return list_of(data, "commits")

    # --------------------------------------------------------------- namespaces, deletes

    async def create_namespaces(
        self, *, env: str, app_id: str, cluster: str = "default", namespaces: Iterable[str]
    ) -> None:
        """Create the namespaces of existing app namespaces in one env and cluster (e.g. a
        cluster made later). Never retried."""
        operator = self._operator("create_namespaces")
        body = [
            {"appId": app_id, "env": env, "clusterName": cluster, "appNamespaceName": name}
            for name in namespaces
        ]
        if not body:
            raise ValueError("name at least one namespace")
        await self._call("createNamespaces", {}, query={"operator": operator}, body=body)

    async def delete_namespace(
        self, *, env: str | None = None, app_id: str, cluster: str = "default", namespace: str
    ) -> None:
        """Delete a namespace: in one ``env`` and ``cluster`` (its items and releases), or,
        without ``env``, the app namespace everywhere. Clients then get 404s. Never retried."""
        operator = self._operator("delete_namespace")
        if env is None:
            await self._call(
                "deleteAppNamespace",
                {"appId": app_id, "namespaceName": namespace},
                query={"operator": operator},
            )
        else:
            await self._call(
                "deleteNamespace",
                ns(env, app_id, cluster, namespace),
                query={"operator": operator},
            )

    async def delete_cluster(self, *, env: str, app_id: str, cluster: str) -> None:
        """Delete a cluster (not ``default``) with its namespaces' items and releases."""
        operator = self._operator("delete_cluster")
        await self._call(
            "deleteCluster",
            {"env": env, "appId": app_id, "clusterName": cluster},
            query={"operator": operator},
        )

    async def delete_app(self, app_id: str) -> None:
        """Delete an app with everything in it. Never retried."""
        operator = self._operator("delete_app")
        await self._call("deleteApp", {"appId": app_id}, query={"operator": operator})

    # ------------------------------------------------------------------------- releases

    async def merge_into_main(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        branch: str,
        title: str,
        comment: str = "",
        delete_branch: bool = True,
        emergency: bool = False,
    ) -> Release:
        """``merge_branch`` through the later route (``mergeBranch``), which also records
        the operator. Never retried."""
        operator = self._operator("merge_into_main")
        params = {**ns(env, app_id, cluster, namespace), "branchName": branch}
        data = await self._call(
            "mergeBranch",
            params,
            query={"deleteBranch": delete_branch, "operator": operator},
            body=release_body(title, comment, operator, emergency),
        )
        return Release.from_json(present(data, "merge release"))

    async def release_history(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        page: int = 0,
        size: int = 10,
    ) -> list[dict[str, Any]]:
        """The namespace's release history, newest first: ``operation`` is Apollo's code
        (0 publish, 1 rollback, 2 gray publish, 4 gray merge, ...)."""
        data = await self._call(
            "findReleaseHistoriesByNamespace",
            ns(env, app_id, cluster, namespace),
            query={"page": page, "size": size},
        )
        return list_of(data, "release history")

    async def compare_releases(
        self, *, env: str, base_release_id: int, release_id: int
    ) -> list[dict[str, Any]]:
        """What changes from one release to another: ``changeType`` (ADDED, MODIFIED,
        DELETED), ``key``, ``oldValue``, ``newValue``."""
        data = await self._call(
            "compareRelease",
            {"env": env},
            query={"baseReleaseId": base_release_id, "toCompareReleaseId": release_id},
        )
        changes = present(data, "release comparison").get("changes")
        return list_of(changes, "release comparison")

    # ------------------------------------------------------------------------ instances

    async def count_instances(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> int:
        """How many clients fetched the namespace."""
        data = await self._call("getInstanceCountByNamespace", ns(env, app_id, cluster, namespace))
        return int(present(data, "instance count"))

    async def list_instances(
        self,
        *,
        env: str,
        app_id: str | None = None,
        cluster: str = "default",
        namespace: str | None = None,
        release_id: int | None = None,
        not_on_release_ids: Iterable[int] | None = None,
        page: int = 0,
        size: int = 20,
    ) -> list[dict[str, Any]]:
        """Clients of a namespace (``app_id`` and ``namespace``), of one release
        (``release_id``), or of a namespace that are not on any of ``not_on_release_ids``."""
        if release_id is not None:
            data = await self._call(
                "getByRelease",
                {"env": env},
                query={"releaseId": release_id, "page": page, "size": size},
            )
            return list_of(present(data, "instances").get("instances"), "instances")
        if not app_id or not namespace:
            raise ValueError("give release_id, or app_id and namespace")
        where: dict[str, str | int | bool | None] = {
            "appId": app_id,
            "clusterName": cluster,
            "namespaceName": namespace,
        }
        if not_on_release_ids is not None:
            ids = ",".join(str(int(i)) for i in not_on_release_ids)
            data = await self._call(
                "getByReleasesAndNamespaceNotIn",
                {"env": env},
                query={**where, "releaseIds": ids},
            )
            return list_of(data, "instances")
        data = await self._call(
            "getByNamespace", {"env": env}, query={**where, "page": page, "size": size}
        )
        return list_of(present(data, "instances").get("instances"), "instances")

    # ---------------------------------------------------------------------- access keys

    async def list_access_keys(self, *, env: str, app_id: str) -> list[dict[str, Any]]:
        """The app's access keys in ``env`` (``id``, ``secret``, ``enabled``, ``mode``)."""
        data = await self._call("findAccessKeys", {"appId": app_id, "env": env})
        return list_of(data, "access keys")

    async def create_access_key(self, *, env: str, app_id: str) -> dict[str, Any]:
        """A new, disabled access key; its ``secret`` is what clients sign with."""
        operator = self._operator("create_access_key")
        data = await self._call(
            "createAccessKey", {"appId": app_id, "env": env}, query={"operator": operator}
        )
        found = present(data, "access key")
        if not isinstance(found, dict):
            raise TypeError("the portal's access key reply is not an object")
        return found

    async def enable_access_key(
        self, *, env: str, app_id: str, key_id: int, observe_only: bool = False
    ) -> None:
        """Turn a key on: the config service then refuses unsigned requests (with
        ``observe_only``, it only logs them)."""
        operator = self._operator("enable_access_key")
        await self._call(
            "enableAccessKey",
            {"appId": app_id, "env": env, "accessKeyId": key_id},
            query={"mode": 1 if observe_only else 0, "operator": operator},
        )

    async def disable_access_key(self, *, env: str, app_id: str, key_id: int) -> None:
        """Turn a key off."""
        operator = self._operator("disable_access_key")
        await self._call(
            "disableAccessKey",
            {"appId": app_id, "env": env, "accessKeyId": key_id},
            query={"operator": operator},
        )

    async def delete_access_key(self, *, env: str, app_id: str, key_id: int) -> None:
        """Delete a (disabled) key."""
        operator = self._operator("delete_access_key")
        await self._call(
            "deleteAccessKey",
            {"appId": app_id, "env": env, "accessKeyId": key_id},
            query={"operator": operator},
        )
