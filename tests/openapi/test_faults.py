"""The OpenAPI client under faults: 401/403/404, the namespace lock, 5xx storms, timeouts."""

from __future__ import annotations

import socket

import pytest

from aioapollo import ApolloAuthError, ApolloConnectionError, ApolloTimeoutError
from aioapollo.openapi import (
    ApolloOpenApiClient,
    NamespaceLockedError,
    OpenApiAuthError,
    OpenApiForbiddenError,
    OpenApiNotFoundError,
    OpenApiRateLimitedError,
    OpenApiServerError,
    OpenApiUnsupportedError,
    PublishNotAllowedError,
)
from aioapollo.testing import ApolloTestServer

from .conftest import APP, ENV, FAST, NS, TOKEN

_SPRING_404 = '{"timestamp":"2026-01-01T00:00:00.000+00:00","status":404,"error":"Not Found"}'


def _ends(suffix: str):
    return lambda request: request.path.endswith(suffix)


def _count(server: ApolloTestServer, method: str, suffix: str) -> int:
    return sum(1 for r in server.requests if r.method == method and r.path.endswith(suffix))


async def test_wrong_token_is_401_and_never_shown(portal: ApolloTestServer) -> None:
    secret = "wrong-token-value-1234"
    async with ApolloOpenApiClient(portal.url, token=secret, operator="x", **FAST) as api:
        assert secret not in repr(api)
        with pytest.raises(OpenApiAuthError) as caught:
            await api.get_namespace(**NS)
    assert isinstance(caught.value, ApolloAuthError) and caught.value.status == 401
    assert secret not in str(caught.value) and "APOLLO_OPENAPI_TOKEN" in str(caught.value)
    assert _count(portal, "GET", "/application") == 1  # a 401 is not retried


async def test_grants_give_403_outside(portal: ApolloTestServer) -> None:
    portal.create_namespace(APP, "other")
    portal.add_openapi_token("ns-token", namespaces=[(APP, "application")], release=False)
    async with ApolloOpenApiClient(portal.url, token="ns-token", operator="x", **FAST) as api:
        await api.update_item(**NS, key="timeout", value="1")  # modify is granted
        with pytest.raises(OpenApiForbiddenError, match="no grant") as caught:
            await api.publish(**NS, title="t")
        assert isinstance(caught.value, PermissionError)
        with pytest.raises(OpenApiForbiddenError):
            await api.get_namespace(env=ENV, app_id=APP, namespace="other")
        assert [a.app_id for a in await api.list_authorized_apps()] == [APP]


async def test_missing_things_are_404(api: ApolloOpenApiClient) -> None:
    with pytest.raises(OpenApiNotFoundError, match="namespace not found"):
        await api.get_namespace(env=ENV, app_id=APP, namespace="nope")
    with pytest.raises(OpenApiNotFoundError, match="app not found"):
        await api.get_env_clusters("no-such-app")
    where = "appId:test-app clusterName:default namespaceName:application itemKey:nope"
    with pytest.raises(OpenApiNotFoundError, match=f"item not found for {where}"):
        await api.delete_item(**NS, key="nope")
    with pytest.raises(OpenApiNotFoundError, match=f"item not found for {where}"):
        await api.update_item(**NS, key="nope", value="1")
    assert await api.get_item(**NS, key="nope") is None
    with pytest.raises(OpenApiNotFoundError, match="branch not found for branchName:nope"):
        await api.get_gray_rules(**NS, branch="nope")


async def test_a_later_operation_on_an_older_portal(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    portal.inject("/openapi/v1/envs/DEV/releases/", status=404, body=_SPRING_404, times=None)
    with pytest.raises(OpenApiUnsupportedError, match="does not support 'read a release by id'"):
        await api.get_release(env=ENV, release_id=1)
    # An original operation that 404s without Apollo's exception: the URL is wrong.
    portal.inject("/openapi/v1/apps", status=404, body=_SPRING_404)
    with pytest.raises(OpenApiNotFoundError, match="no such endpoint"):
        await api.list_apps()


async def test_a_portal_without_a_method_says_unsupported(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    body = (
        '{"status":400,"message":"Request method \'GET\' is not supported","exception":'
        '"org.springframework.web.HttpRequestMethodNotSupportedException"}'
    )
    portal.inject("/openapi/v1/envs", status=400, body=body)
    with pytest.raises(OpenApiUnsupportedError):
        await api.list_envs()


async def test_namespace_lock_and_the_four_eyes_rule(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    portal.namespace_lock = True
    await api.update_item(**NS, key="timeout", value="45")
    other = api.as_operator("reviewer")
    with pytest.raises(NamespaceLockedError) as caught:
        await other.update_item(**NS, key="timeout", value="46")
    assert caught.value.locked_by == "ci-bot"
    with pytest.raises(PublishNotAllowedError, match="another operator must publish"):
        await api.publish(**NS, title="mine")
    release = await other.publish(**NS, title="reviewed")
    assert release.configurations["timeout"] == "45" and release.audit.created_by == "reviewer"
    assert not (await api.get_namespace_lock(**NS)).is_locked
    await api.update_item(**NS, key="timeout", value="50")
    emergency = await api.publish(**NS, title="urgent", emergency=True)
    assert emergency.configurations["timeout"] == "50"


async def test_reads_and_idempotent_updates_ride_out_a_5xx_storm(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    portal.inject("/openapi/v1/envs/DEV/apps/test-app/clusters/default/namespaces/application",
                  method="GET", status=503, times=2)  # fmt: skip
    ns = await api.get_namespace(**NS)
    assert ns.values["timeout"] == "30"
    assert _count(portal, "GET", "/namespaces/application") == 3
    portal.inject("/openapi/v1/envs/DEV/apps/test-app/clusters/default/namespaces/application/items/",
                  method="PUT", status=502, times=2)  # fmt: skip
    await api.update_item(**NS, key="timeout", value="31")
    assert (await api.get_item(**NS, key="timeout")).value == "31"  # type: ignore[union-attr]
    portal.inject("/openapi/v1/apps", method="GET", status=429, times=1)
    assert [a.app_id for a in await api.list_apps()] == [APP]


async def test_a_storm_outlasting_the_retries_fails(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    portal.inject("/openapi/v1/apps", method="GET", status=500, times=None)
    with pytest.raises(OpenApiServerError):
        await api.list_apps()
    assert _count(portal, "GET", "/openapi/v1/apps") == 4  # one try and 3 retries
    portal.clear_faults()
    portal.inject("/openapi/v1/apps", method="GET", status=429, times=None)
    with pytest.raises(OpenApiRateLimitedError):
        await api.list_apps()


async def test_publish_rollback_and_creates_are_never_retried(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    before = await api.latest_release(**NS)
    portal.inject(_ends("/releases"), status=503, times=None, method="POST")
    portal.inject(_ends("/rollback"), status=502, times=None)
    portal.inject(_ends("/items"), status=500, times=None, method="POST")
    with pytest.raises(OpenApiServerError):
        await api.publish(**NS, title="once")
    with pytest.raises(OpenApiServerError):
        await api.rollback(env=ENV, release_id=1)
    with pytest.raises(OpenApiServerError):
        await api.create_item(**NS, key="k", value="v")
    assert _count(portal, "POST", "/releases") == 1
    assert _count(portal, "PUT", "/rollback") == 1
    assert _count(portal, "POST", "/items") == 1
    portal.clear_faults()
    after = await api.latest_release(**NS)
    assert before is not None and after is not None and after.id == before.id


async def test_timeouts(portal: ApolloTestServer) -> None:
    settings = {**FAST, "timeout": 0.3}
    async with ApolloOpenApiClient(portal.url, token=TOKEN, operator="x", **settings) as api:
        portal.inject("/openapi/v1/apps", method="GET", delay=1.0, times=1)
        assert [a.app_id for a in await api.list_apps()] == [APP]  # the retry answers in time
        portal.inject(_ends("/releases"), method="POST", hang=True, times=1)
        with pytest.raises(ApolloTimeoutError, match=r"did not answer within 0\.3s"):
            await api.publish(**NS, title="slow")
        assert _count(portal, "POST", "/releases") == 1


async def test_unreachable_portal() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with ApolloOpenApiClient(url, token=TOKEN, operator="x", **FAST) as api:
        with pytest.raises(ApolloConnectionError, match="connection refused"):
            await api.list_apps()
    with pytest.raises(ValueError, match="user:password"):
        ApolloOpenApiClient(f"http://user:pw@127.0.0.1:{port}", token=TOKEN)


async def test_writes_need_an_operator(portal: ApolloTestServer) -> None:
    async with ApolloOpenApiClient(portal.url, token=TOKEN, **FAST) as api:
        with pytest.raises(ValueError, match="APOLLO_OPENAPI_OPERATOR"):
            await api.publish(**NS, title="t")
        assert (await api.get_namespace(**NS)).values["timeout"] == "30"


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APOLLO_PORTAL_URL", "http://portal:8070/")
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", "env-token-xyz")
    monkeypatch.setenv("APOLLO_OPENAPI_OPERATOR", "bot")
    api = ApolloOpenApiClient.from_env()
    assert api.operator == "bot"
    assert repr(api) == "<ApolloOpenApiClient http://portal:8070 operator='bot' token=consumer>"
    monkeypatch.delenv("APOLLO_OPENAPI_TOKEN")
    with pytest.raises(ValueError, match="APOLLO_OPENAPI_TOKEN"):
        ApolloOpenApiClient.from_env()
    with pytest.raises(ValueError, match="http"):
        ApolloOpenApiClient("portal:8070", token="t")
