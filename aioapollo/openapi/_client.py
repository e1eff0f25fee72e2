"""ApolloOpenApiClient: an asyncio client for the Apollo portal's OpenAPI (the management plane)."""

from __future__ import annotations

import os
import ssl as _ssl
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from .._exceptions import ClientStateError
from ._http import HttpSettings, PortalHttp, encode_key, plain_key
from ._models import (
    App,
    AppNamespace,
    Cluster,
    EnvClusters,
    GrayRule,
    GrayRules,
    Item,
    Namespace,
    NamespaceLock,
    Release,
)
from ._ops import PortalOpsMixin
from ._shapes import list_of as _list
from ._shapes import ns as _ns
from ._shapes import present as _present
from ._shapes import release_body as _release_body
from ._spec import operation

__all__ = [
    "ENV_OPERATOR",
    "ENV_PORTAL_URL",
    "ENV_TIMEOUT",
    "ENV_TOKEN",
    "ENV_TOKEN_KIND",
    "ApolloOpenApiClient",
]

ENV_PORTAL_URL = "APOLLO_PORTAL_URL"
ENV_TOKEN = "APOLLO_OPENAPI_TOKEN"
ENV_OPERATOR = "APOLLO_OPENAPI_OPERATOR"
ENV_TIMEOUT = "APOLLO_OPENAPI_TIMEOUT"
ENV_TOKEN_KIND = "APOLLO_OPENAPI_TOKEN_KIND"


def _check_url(url: str) -> str:
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"portal_url must be the portal's URL (or set {ENV_PORTAL_URL})")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("portal_url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "portal_url must not hold user:password@: the OpenAPI authenticates with the token"
        )
    if parts.query or parts.fragment:
        raise ValueError("portal_url must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise ValueError("portal_url has an invalid port") from None
    return url.strip().rstrip("/")


class ApolloOpenApiClient(PortalOpsMixin):
    """Manage Apollo through the portal's OpenAPI: apps, namespaces, items, releases, gray.

    ``async with ApolloOpenApiClient(url, token=..., operator="ci-bot") as api: ...``; the
    session is opened on entry (or by the first call) and closed by :meth:`aclose`.

    Every write names an *operator*: the portal user the change is recorded under (the token
    belongs to a consumer, not a user). Reads and idempotent updates (``update_item``,
    ``set_items``, ``delete_item(s)``, ``set_gray_rules``) are retried with jittered backoff
    after a timeout, a dropped connection, a 5xx or a 429; creates, publishes, rollbacks, gray
    publishes, merges and branch changes never are: a retry could do them twice.

    Args:
        portal_url: The portal's base URL, e.g. ``http://apollo-portal:8070`` (with its path
            prefix if it is served under one).
        token: The OpenAPI token of a consumer (from the portal's Open Platform
            Authorization page). Never logged, never in a repr or an error message.
        operator: The portal user writes are made as (``APOLLO_OPENAPI_OPERATOR``).
        timeout: Seconds for one request, end to end.
        connect_timeout: Seconds to connect.
        retries: How many times a retryable request is retried.
        backoff_initial: First retry delay in seconds (doubled each retry, jittered).
        backoff_max: Longest retry delay.
        ssl: ``ssl.SSLContext`` for a portal behind a private CA, or ``False`` to skip
            verification (not recommended).
        token_kind: ``"consumer"`` (a consumer's token, sent as the ``Authorization``
            header), ``"user"`` (an Apollo 3.0 user access token, sent as ``Bearer <token>``;
            changes are recorded under its user, so ``operator`` is optional) or ``"auto"``:
            by the token's form, ``apollo_pat_...`` being a user token
            (``APOLLO_OPENAPI_TOKEN_KIND``).
        retry_after_max: The longest ``Retry-After`` of a 429 that a retryable request
            waits out; a longer one raises ``OpenApiRateLimitedError`` at once.

    Raises:
        ValueError: The URL is malformed, or the token is empty.
    """

    def __init__(
        self,
        portal_url: str,
        *,
        token: str,
        operator: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        ssl: _ssl.SSLContext | bool | None = None,
        token_kind: str = "auto",
        retry_after_max: float = 30.0,
    ) -> None:
        url = _check_url(portal_url)
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"token must be the portal OpenAPI token (or set {ENV_TOKEN})")
        if not timeout > 0 or not connect_timeout > 0:
            raise ValueError("timeout and connect_timeout must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        settings = HttpSettings(
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            ssl=ssl,
            retry_after_max=retry_after_max,
        )
        self._http = PortalHttp(url, token.strip(), settings, token_kind)
        self.operator = operator or None
        self._owner = True
        self._closed = False

    @classmethod
    def from_env(cls, **overrides: Any) -> ApolloOpenApiClient:
        """Build a client from ``APOLLO_PORTAL_URL``, ``APOLLO_OPENAPI_TOKEN``,
        ``APOLLO_OPENAPI_OPERATOR`` and ``APOLLO_OPENAPI_TIMEOUT``; keyword arguments win.

        Raises:
            ValueError: The URL or the token is missing or malformed.
        """
        url = overrides.pop("portal_url", None) or os.environ.get(ENV_PORTAL_URL, "")
        overrides.setdefault("token", os.environ.get(ENV_TOKEN, ""))
        if overrides.get("operator") is None:
            overrides["operator"] = os.environ.get(ENV_OPERATOR) or None
        kind = os.environ.get(ENV_TOKEN_KIND)
        if kind and "token_kind" not in overrides:
            overrides["token_kind"] = kind.strip().lower()
        timeout = os.environ.get(ENV_TIMEOUT)
        if timeout and "timeout" not in overrides:
            try:
                overrides["timeout"] = float(timeout)
            except ValueError:
                raise ValueError(f"{ENV_TIMEOUT} must be a number of seconds") from None
        return cls(url, **overrides)

    def __repr__(self) -> str:
        return (
            f"<ApolloOpenApiClient {self._http.where} operator={self.operator!r} "
            f"token={self._http.token_kind}>"
        )

    def as_operator(self, operator: str) -> ApolloOpenApiClient:
        """A client sharing this one's session whose writes are made as ``operator``.

        Closing it does not close the shared session. With the portal's namespace lock on, the
        editor of a namespace may not publish it: publish through ``api.as_operator("other")``.
        """
        other = object.__new__(ApolloOpenApiClient)
        other._http = self._http
        other.operator = operator
        other._owner = False
        other._closed = False
        return other

    # --------------------------------------------------------------------------- lifecycle

    async def open(self) -> Self:
        """Open the HTTP session (done by ``async with`` or the first call)."""
        if self._closed:
            raise ClientStateError("this ApolloOpenApiClient is closed; make a new one")
        await self._http.open()
        return self

    async def aclose(self) -> None:
        """Close the HTTP session (only the owning client does); idempotent."""
        self._closed = True
        if self._owner:
            await self._http.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        op_id: str,
        params: Mapping[str, str | int],
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        if self._closed:
            raise ClientStateError("this ApolloOpenApiClient is closed")
        if query is not None and query.get("operator") == "":
            query = {name: value for name, value in query.items() if name != "operator"}
        if not self._http.is_open:
            await self._http.open()
        return await self._http.call(
            operation(op_id), params, query=query, body=body, missing_ok=missing_ok
        )

    @property
    def token_kind(self) -> str:
        """``"consumer"`` or ``"user"``: how the token is sent."""
        return self._http.token_kind

    def _operator(self, what: str) -> str:
        if not self.operator and self._http.token_kind == "user":
            return ""  # the portal records the change under the token's user
        if not self.operator:
            raise ValueError(
                f"{what} needs an operator (the portal user the change is recorded under): "
                f"pass operator= or set {ENV_OPERATOR}"
            )
        return self.operator

    # -------------------------------------------------------------------- apps and clusters

    async def list_apps(self, app_ids: Iterable[str] | None = None) -> list[App]:
        """Apps (all the portal has, or those with these ids)."""
        ids = None if app_ids is None else ",".join(app_ids)
        data = await self._call("findApps", {}, query={"appIds": ids})
        return [App.from_json(item) for item in _list(data, "apps")]

    async def list_authorized_apps(self) -> list[App]:
        """The apps the token's consumer is authorized for."""
        data = await self._call("findAppsAuthorized", {})
        return [App.from_json(item) for item in _list(data, "apps")]

    async def create_app(
        self, app: App, *, admins: Iterable[str] = (), assign_to_self: bool = False
    ) -> None:
        """Create an app (the token needs the create-application role)."""
        body: dict[str, Any] = {"app": app.to_json(), "admins": sorted(set(admins))}
        if assign_to_self:
            body["assignAppRoleToSelf"] = True
        if self.operator:
            body["app"]["dataChangeCreatedBy"] = self.operator
        await self._call("createApp", {}, body=body)

    async def get_app(self, app_id: str) -> App | None:
        """One app (later portals only)."""
        data = await self._call("getApp", {"appId": app_id}, missing_ok=True)
        return None if data is None else App.from_json(data)

    async def list_envs(self) -> list[str]:
        """The portal's environments (later portals only)."""
        return [str(env) for env in _list(await self._call("getEnvs", {}), "envs")]

    async def get_env_clusters(self, app_id: str) -> list[EnvClusters]:
        """Each environment of the app with its clusters."""
        data = await self._call("getEnvClusters", {"appId": app_id})
        return [EnvClusters.from_json(item) for item in _list(data, "env clusters")]

    async def get_cluster(self, *, env: str, app_id: str, cluster: str) -> Cluster | None:
        """A cluster, or ``None`` if it does not exist."""
        params = {"env": env, "appId": app_id, "clusterName": cluster}
        data = await self._call("getCluster", params, missing_ok=True)
        return None if data is None else Cluster.from_json(data)

    async def create_cluster(
        self, *, env: str, app_id: str, cluster: str, comment: str = ""
    ) -> Cluster:
        """Create a cluster in one environment."""
        operator = self._operator("create_cluster")
        body = {
            "name": cluster,
            "appId": app_id,
            "comment": comment,
            "dataChangeCreatedBy": operator,
        }
        data = await self._call("createCluster", {"env": env, "appId": app_id}, body=body)
        return Cluster.from_json(data)

    # ------------------------------------------------------------------------- namespaces

    async def list_namespaces(
        self, *, env: str, app_id: str, cluster: str = "default"
    ) -> list[Namespace]:
        """Every namespace of a cluster, with its working items."""
        params = {"env": env, "appId": app_id, "clusterName": cluster}
        data = await self._call("findNamespaces", params, query={"fillItemDetail": True})
        return [Namespace.from_json(item) for item in _list(data, "namespaces")]

    async def get_namespace(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> Namespace:
        """A namespace with its working items (what the next publish releases)."""
        data = await self._call(
            "findNamespace", _ns(env, app_id, cluster, namespace), query={"fillItemDetail": True}
        )
        return Namespace.from_json(_present(data, "namespace"))

    async def create_namespace(
        self,
        *,
        app_id: str,
        name: str,
        format: str = "properties",
        public: bool = False,
        comment: str = "",
        append_org_prefix: bool = True,
    ) -> AppNamespace:
        """Create a namespace of an app (in every environment and cluster).

        The portal appends ``.{format}`` to the name of a non-properties namespace, and, with
        ``append_org_prefix``, puts the app's org id before a public namespace's name.
        """
        operator = self._operator("create_namespace")
        body = {
            "name": name,
            "appId": app_id,
            "format": format,
            "isPublic": public,
            "comment": comment,
            "appendNamespacePrefix": append_org_prefix,
            "dataChangeCreatedBy": operator,
        }
        data = await self._call(
            "createAppNamespace", {"appId": app_id}, query={"operator": operator}, body=body
        )
        return AppNamespace.from_json(data)

    async def get_namespace_lock(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> NamespaceLock:
        """Whether another editor holds the namespace (with the portal's lock switch on)."""
        data = await self._call("getNamespaceLock", _ns(env, app_id, cluster, namespace))
        return NamespaceLock.from_json(_present(data, "namespace lock"))

    # ------------------------------------------------------------------------------ items

    async def get_item(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, key: str
    ) -> Item | None:
        """One working item, or ``None`` if the namespace has no such key."""
        op_id, params = _item("getItem", env, app_id, cluster, namespace, key)
        data = await self._call(op_id, params, missing_ok=True)
        return None if data is None else Item.from_json(data)

    async def create_item(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        key: str,
        value: str,
        comment: str = "",
    ) -> Item:
        """Add an item to the working set (400 if the key exists). Not retried."""
        operator = self._operator("create_item")
        body = _item_body(key, value, comment, operator, created=True)
        data = await self._call(
            "createItem",
            _ns(env, app_id, cluster, namespace),
            query={"operator": operator},
            body=body,
        )
        return Item.from_json(data)

    async def update_item(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        key: str,
        value: str,
        comment: str = "",
        create: bool = False,
    ) -> None:
        """Change an item's value (and comment); with ``create``, add it if missing."""
        operator = self._operator("update_item")
        op_id, params = _item("updateItem", env, app_id, cluster, namespace, key)
        await self._call(
            op_id,
            params,
            query={"createIfNotExists": create, "operator": operator},
            body=_item_body(key, value, comment, operator, created=create),
        )

    async def delete_item(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, key: str
    ) -> None:
        """Remove an item from the working set (``OpenApiNotFoundError`` if there is none)."""
        operator = self._operator("delete_item")
        op_id, params = _item("deleteItem", env, app_id, cluster, namespace, key)
        await self._call(op_id, params, query={"operator": operator})

    async def set_items(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        items: Mapping[str, str],
        comment: str = "",
    ) -> None:
        """Create or update several items, one request each, in the mapping's order.

        Not atomic: an error stops at that key, and the earlier keys stay changed (running it
        again is safe: each request is idempotent).
        """
        for key, value in items.items():
            await self.update_item(
                env=env,
                app_id=app_id,
                cluster=cluster,
                namespace=namespace,
                key=key,
                value=value,
                comment=comment,
                create=True,
            )

    async def delete_items(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        keys: Iterable[str],
    ) -> None:
        """Delete several items, one request each; keys that are already gone are skipped."""
        operator = self._operator("delete_items")
        for key in keys:
            op_id, params = _item("deleteItem", env, app_id, cluster, namespace, key)
            await self._call(op_id, params, query={"operator": operator}, missing_ok=True)

    # --------------------------------------------------------------------------- releases

    async def publish(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        title: str,
        comment: str = "",
        emergency: bool = False,
    ) -> Release:
        """Release the namespace's whole working set. Never retried."""
        operator = self._operator("publish")
        data = await self._call(
            "createRelease",
            _ns(env, app_id, cluster, namespace),
            query={"operator": operator},
            body=_release_body(title, comment, operator, emergency),
        )
        return Release.from_json(_present(data, "release"))

    async def latest_release(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> Release | None:
        """The namespace's latest active release, or ``None`` if it was never released."""
        data = await self._call("loadLatestActiveRelease", _ns(env, app_id, cluster, namespace))
        return None if data is None else Release.from_json(data)

    async def rollback(
        self, *, env: str, release_id: int, to_release_id: int | None = None
    ) -> None:
        """Roll back a release: ``release_id`` (the latest) is abandoned and clients get the
        release before it again; with ``to_release_id`` (portals that support it), every
        release after that one is abandoned. Working items are not changed. Never retried."""
        operator = self._operator("rollback")
        await self._call(
            "rollback",
            {"env": env, "releaseId": release_id},
            query={"operator": operator, "toReleaseId": to_release_id},
        )

    async def get_release(self, *, env: str, release_id: int) -> Release | None:
        """A release by id (later portals only)."""
        data = await self._call(
            "getReleaseById", {"env": env, "releaseId": release_id}, missing_ok=True
        )
        return None if data is None else Release.from_json(data)

    async def list_releases(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        page: int = 0,
        size: int = 5,
    ) -> list[Release]:
        """Active releases, newest first (later portals only)."""
        data = await self._call(
            "findActiveReleases",
            _ns(env, app_id, cluster, namespace),
            query={"page": page, "size": size},
        )
        return [Release.from_json(item) for item in _list(data, "releases")]

    # ------------------------------------------------------------------------------- gray

    async def get_branch(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> Namespace | None:
        """The namespace's gray branch (its ``cluster`` is the branch name), or ``None``."""
        data = await self._call("findBranch", _ns(env, app_id, cluster, namespace))
        return None if data is None else Namespace.from_json(data)

    async def create_branch(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str
    ) -> Namespace:
        """Create the namespace's gray branch; change its items with the item methods and
        ``cluster=branch.cluster``. Never retried."""
        operator = self._operator("create_branch")
        data = await self._call(
            "createBranch", _ns(env, app_id, cluster, namespace), query={"operator": operator}
        )
        return Namespace.from_json(_present(data, "branch"))

    async def get_gray_rules(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, branch: str
    ) -> GrayRules | None:
        """The branch's gray rules."""
        params = {**_ns(env, app_id, cluster, namespace), "branchName": branch}
        data = await self._call("getBranchGrayRules", params)
        return None if data is None else GrayRules.from_json(data)

    async def set_gray_rules(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        branch: str,
        rules: Iterable[GrayRule],
    ) -> None:
        """Replace the branch's gray rules (who gets its gray release)."""
        operator = self._operator("set_gray_rules")
        params = {**_ns(env, app_id, cluster, namespace), "branchName": branch}
        body = {
            "appId": app_id,
            "clusterName": cluster,
            "namespaceName": namespace,
            "branchName": branch,
            "ruleItems": [rule.to_json() for rule in rules],
            "dataChangeLastModifiedBy": operator,
        }
        await self._call("updateBranchRules", params, query={"operator": operator}, body=body)

    async def gray_publish(
        self,
        *,
        env: str,
        app_id: str,
        cluster: str = "default",
        namespace: str,
        branch: str,
        title: str,
        comment: str = "",
        emergency: bool = False,
        delete_keys: Iterable[str] | None = None,
    ) -> Release:
        """Release the branch to the clients its rules match; ``delete_keys`` also removes
        those keys for them. Never retried."""
        operator = self._operator("gray_publish")
        params = {**_ns(env, app_id, cluster, namespace), "branchName": branch}
        body = _release_body(title, comment, operator, emergency)
        op_id = "createGrayRelease"
        if delete_keys is not None:
            op_id = "createGrayDelRelease"
            body["grayDelKeys"] = list(delete_keys)
        data = await self._call(op_id, params, query={"operator": operator}, body=body)
        return Release.from_json(_present(data, "gray release"))

    async def merge_branch(
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
        """Merge the branch's items into the main namespace and publish it (to every client);
        the branch is deleted unless ``delete_branch=False``. Never retried."""
        operator = self._operator("merge_branch")
        params = {**_ns(env, app_id, cluster, namespace), "branchName": branch}
        data = await self._call(
            "merge",
            params,
            query={"deleteBranch": delete_branch},
            body=_release_body(title, comment, operator, emergency),
        )
        return Release.from_json(_present(data, "merge release"))

    async def abandon_branch(
        self, *, env: str, app_id: str, cluster: str = "default", namespace: str, branch: str
    ) -> None:
        """Delete the gray branch: every client gets the main release again. Never retried."""
        operator = self._operator("abandon_branch")
        params = {**_ns(env, app_id, cluster, namespace), "branchName": branch}
        await self._call("deleteBranch", params, query={"operator": operator})


def _item(
    op_id: str, env: str, app_id: str, cluster: str, namespace: str, key: str
) -> tuple[str, dict[str, str | int]]:
    """The plain-key operation, or its ``...ByEncodedKey`` twin for keys a path cannot carry."""
    params = _ns(env, app_id, cluster, namespace)
    if not key:
        raise ValueError("an item key must not be empty")
    if plain_key(key):
        params["key"] = key
        return op_id, params
    params["key"] = encode_key(key)
    return op_id + "ByEncodedKey", params


def _item_body(key: str, value: str, comment: str, operator: str, *, created: bool) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"the value of {key!r} must be a str")
    body = {"key": key, "value": value, "comment": comment, "dataChangeLastModifiedBy": operator}
    if created:
        body["dataChangeCreatedBy"] = operator
    return body
