"""The portal closer to a real one (body and path errors, value-length limit, the lock on
revert) and Apollo 3.0's portal API (user tokens, 429 with Retry-After, the 0.3.x operations),
all against the test server over loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest

from aioapollo import ApolloClient
from aioapollo.openapi import (
    ApolloOpenApiClient,
    NamespaceLockedError,
    OpenApiBadRequestError,
    OpenApiForbiddenError,
    OpenApiRateLimitedError,
    OpenApiUnsupportedError,
)
from aioapollo.testing import ApolloTestServer

from .conftest import APP, ENV, FAST, TOKEN

PAT = "apollo_pat_0123456789abcdef"
NSA = {"env": ENV, "app_id": APP, "namespace": "application"}


async def test_a_body_that_is_not_utf8_and_a_newline_in_the_path_are_json_errors(
    portal: ApolloTestServer,
) -> None:
    portal.openapi_observer = None  # these requests break the spec on purpose
    base = f"{portal.url}/openapi/v1/envs/DEV/apps/{APP}/clusters/default/namespaces/application"
    async with aiohttp.ClientSession(headers={"Authorization": TOKEN}) as http:
        async with http.post(f"{base}/items?operator=x", data=b"\xff\xfe{") as resp:
            assert resp.status == 400
            assert "not UTF-8" in (await resp.json())["message"]
        url = f"{portal.url}/openapi/v1/envs/DEV/apps/a%0Ab"
        async with http.get(aiohttp.client.URL(url, encoded=True)) as resp:
            assert resp.status == 404
            assert resp.content_type == "application/json"
            assert (await resp.json())["status"] == 404


async def test_a_number_parameter_that_is_not_a_number_is_a_400_naming_it(
    portal: ApolloTestServer,
) -> None:
    portal.openapi_observer = None  # these requests break the spec on purpose
    base = f"{portal.url}/openapi/v1/envs/DEV"
    items = f"{base}/apps/{APP}/clusters/default/namespaces/application/items"
    async with aiohttp.ClientSession(headers={"Authorization": TOKEN}) as http:
        for method, url, name in [
            ("GET", f"{base}/releases/latest-one", "releaseId"),  # in the path
            ("PUT", f"{base}/releases/one/rollback?operator=x", "releaseId"),
            ("GET", f"{items}?page=first", "page"),  # in the query
            ("GET", f"{base}/releases/comparison?baseReleaseId=x&toCompareReleaseId=1",
             "baseReleaseId"),
        ]:  # fmt: skip
            async with http.request(method, url) as resp:
                assert resp.status == 400, url
                assert (await resp.json())["message"] == f"{name} must be a number"


async def test_the_value_length_limit(api: ApolloOpenApiClient, portal: ApolloTestServer) -> None:
    with pytest.raises(OpenApiBadRequestError, match="length limit:20000"):
        await api.create_item(**NSA, key="big", value="x" * 20_001)
    await api.create_item(**NSA, key="ok", value="x" * 20_000)
    portal.value_length_limit = 10
    with pytest.raises(OpenApiBadRequestError, match="length limit:10"):
        await api.set_text(**NSA, text="a = 12345678901\n")


async def test_the_lock_goes_when_the_items_are_back_to_the_published_state(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    portal.namespace_lock = True
    await api.update_item(**NSA, key="greeting", value="changed")
    assert (await api.get_namespace_lock(**NSA)).locked_by == "ci-bot"
    other = api.as_operator("someone-else")
    with pytest.raises(NamespaceLockedError):
        await other.update_item(**NSA, key="greeting", value="mine")
    await api.update_item(**NSA, key="greeting", value="hello")  # the published value again
    assert not (await api.get_namespace_lock(**NSA)).is_locked
    await other.update_item(**NSA, key="greeting", value="mine")
    await other.revert_items(**NSA)
    assert not (await api.get_namespace_lock(**NSA)).is_locked


async def test_text_validation_diff_sync_and_commits(api: ApolloOpenApiClient) -> None:
    await api.set_text(**NSA, text="# a comment\ngreeting = hi\nnew = 1\n")
    namespace = await api.get_namespace(**NSA)
    assert {i.key: i.value for i in namespace.items if i.key} == {"greeting": "hi", "new": "1"}
    await api.create_namespace(app_id=APP, name="db", format="json")
    with pytest.raises(OpenApiBadRequestError, match="invalid json"):
        await api.validate_text(env=ENV, app_id=APP, namespace="db.json", text="{nope")
    await api.validate_text(env=ENV, app_id=APP, namespace="db.json", text='{"a": 1}')
    await api.create_namespace(app_id=APP, name="other", format="properties")
    target = (ENV, APP, "default", "other")
    diff = await api.diff_items(**NSA, items={"greeting": "hi"}, targets=[target])
    assert [i["key"] for i in diff[0]["createItems"]] == ["greeting"]
    await api.sync_items(**NSA, items={"greeting": "hi"}, targets=[target])
    assert (
        await api.get_item(env=ENV, app_id=APP, namespace="other", key="greeting")
    ).value == "hi"
    commits = await api.list_commits(**NSA, key="new")
    assert json.loads(commits[0]["changeSets"])["createItems"][0]["key"] == "new"


async def test_diff_and_sync_need_a_grant_on_every_target(portal: ApolloTestServer) -> None:
    portal.create_namespace(APP, "other")
    portal.add_openapi_token("ns-token", namespaces=[(APP, "application")])
    target = (ENV, APP, "default", "other")
    async with ApolloOpenApiClient(portal.url, token="ns-token", operator="x", **FAST) as api:
        with pytest.raises(OpenApiForbiddenError):
            await api.diff_items(**NSA, items={"greeting": "hi"}, targets=[target])
        with pytest.raises(OpenApiForbiddenError):
            await api.sync_items(**NSA, items={"greeting": "hi"}, targets=[target])
    assert portal.item_history(APP, "other") == []  # nothing was synced


async def test_releases_history_compare_merge_and_instances(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    first = await api.publish(**NSA, title="one")
    await api.update_item(**NSA, key="greeting", value="bye")
    second = await api.publish(**NSA, title="two")
    changes = await api.compare_releases(env=ENV, base_release_id=first.id, release_id=second.id)
    assert changes == [
        {"changeType": "MODIFIED", "key": "greeting", "oldValue": "hello", "newValue": "bye"}
    ]
    await api.rollback(env=ENV, release_id=second.id)
    history = await api.release_history(**NSA)
    assert [h["operation"] for h in history[:3]] == [1, 0, 0]
    branch = await api.create_branch(**NSA)
    await api.update_item(**NSA, cluster=branch.cluster, key="greeting", value="gray", create=True)
    merged = await api.merge_into_main(**NSA, branch=branch.cluster, title="merge")
    assert merged.configurations["greeting"] == "gray"
    async with ApolloClient(APP, config_server=portal.url, cache_dir=None) as client:
        assert await client.get("greeting") == "gray"
    assert await api.count_instances(**NSA) == 1
    on_release = await api.list_instances(env=ENV, release_id=merged.id)
    assert len(on_release) == 1
    assert on_release[0]["configs"][0]["release"]["id"] == merged.id
    assert (
        await api.list_instances(
            env=ENV, app_id=APP, namespace="application", not_on_release_ids=[merged.id]
        )
        == []
    )


async def test_deletes_and_creating_namespaces(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    await api.create_cluster(env=ENV, app_id=APP, cluster="blue")
    await api.create_namespaces(env=ENV, app_id=APP, cluster="blue", namespaces=["application"])
    with pytest.raises(OpenApiBadRequestError, match="appNamespace not exist"):
        await api.create_namespaces(env=ENV, app_id=APP, cluster="blue", namespaces=["nope"])
    await api.delete_cluster(env=ENV, app_id=APP, cluster="blue")
    assert await api.get_cluster(env=ENV, app_id=APP, cluster="blue") is None
    await api.create_namespace(app_id=APP, name="gone", format="properties")
    await api.delete_namespace(app_id=APP, namespace="gone")
    assert "gone" not in [n.name for n in await api.list_namespaces(env=ENV, app_id=APP)]
    await api.delete_app(APP)
    assert await api.get_app(APP) is None
    assert portal.store.release(APP, "application") is None


async def test_access_keys_make_the_config_service_require_signatures(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    key = await api.create_access_key(env=ENV, app_id=APP)
    assert key["enabled"] is False
    await api.enable_access_key(env=ENV, app_id=APP, key_id=key["id"])
    assert portal.store.secrets(APP) == (key["secret"],)
    with pytest.raises(OpenApiBadRequestError, match="disable first"):
        await api.delete_access_key(env=ENV, app_id=APP, key_id=key["id"])
    await api.disable_access_key(env=ENV, app_id=APP, key_id=key["id"])
    assert portal.store.secrets(APP) == ()
    await api.delete_access_key(env=ENV, app_id=APP, key_id=key["id"])
    assert await api.list_access_keys(env=ENV, app_id=APP) == []


async def test_a_user_token_is_sent_as_bearer_and_acts_as_its_user(
    portal: ApolloTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    portal.add_openapi_token(PAT, apps=[APP], user="alice")
    caplog.set_level(logging.DEBUG)
    async with ApolloOpenApiClient(portal.url, token=PAT, **FAST) as api:  # no operator
        assert api.token_kind == "user"
        await api.update_item(**NSA, key="greeting", value="hi")
        assert PAT not in repr(api)
    assert portal.item_history(APP, "application")[-1].operator == "alice"
    async with ApolloOpenApiClient(portal.url, token=PAT, token_kind="consumer", **FAST) as api:
        with pytest.raises(Exception) as refused:
            await api.list_apps()
        assert PAT not in str(refused.value)
    assert PAT not in caplog.text


async def test_429_with_retry_after_is_waited_out_for_idempotent_requests(
    portal: ApolloTestServer,
) -> None:
    portal.add_openapi_token(PAT, apps=[APP], user="alice", rate_limit=1.0)
    async with ApolloOpenApiClient(portal.url, token=PAT, retries=2, **FAST) as api:
        await api.list_apps()
        started = time.monotonic()
        await api.list_apps()  # 429 Retry-After: 1, then it goes through
        assert time.monotonic() - started >= 0.9
        with pytest.raises(OpenApiRateLimitedError) as limited:
            await api.publish(**NSA, title="not retried")
        assert limited.value.retry_after == 1.0
    async with ApolloOpenApiClient(portal.url, token=PAT, retry_after_max=0.5, **FAST) as api:
        with pytest.raises(OpenApiRateLimitedError, match="wait 1s"):
            await api.list_apps()


async def test_a_later_operation_on_an_older_portal_says_unsupported(
    api: ApolloOpenApiClient, portal: ApolloTestServer
) -> None:
    body = '{"timestamp":"x","status":404,"error":"Not Found","path":"/openapi/v1/x"}'
    portal.inject("/openapi/v1/apps/test-app/envs/DEV/accesskeys", status=404, body=body)
    with pytest.raises(OpenApiUnsupportedError, match="does not support 'list access keys'"):
        await api.list_access_keys(env=ENV, app_id=APP)
    portal.inject("/openapi/v1/envs/DEV/releases/comparison", status=405, body="")
    with pytest.raises(OpenApiUnsupportedError, match="compare two releases"):
        await api.compare_releases(env=ENV, base_release_id=1, release_id=2)
    await asyncio.sleep(0)
