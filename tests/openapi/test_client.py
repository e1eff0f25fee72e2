"""The OpenAPI client against the test server's portal: every original operation, end to end."""

from __future__ import annotations

import pytest

from aioapollo.openapi import (
    ApolloOpenApiClient,
    App,
    GrayRule,
    OpenApiBadRequestError,
    OpenApiNotFoundError,
)
from aioapollo.testing import ApolloTestServer

from .conftest import APP, ENV, NS


async def test_apps_and_env_clusters(api: ApolloOpenApiClient, portal: ApolloTestServer) -> None:
    apps = await api.list_apps()
    assert [app.app_id for app in apps] == [APP]
    assert [app.app_id for app in await api.list_authorized_apps()] == [APP]
    clusters = await api.get_env_clusters(APP)
    assert [(c.env, c.clusters) for c in clusters] == [(ENV, ("default",))]
    created = await api.create_cluster(env=ENV, app_id=APP, cluster="SHAJQ")
    assert (created.name, created.app_id) == ("SHAJQ", APP)
    cluster = await api.get_cluster(env=ENV, app_id=APP, cluster="SHAJQ")
    assert cluster is not None and cluster.id == created.id
    assert await api.get_cluster(env=ENV, app_id=APP, cluster="nope") is None
    assert (await api.get_env_clusters(APP))[0].clusters == ("default", "SHAJQ")


async def test_read_namespace_items(api: ApolloOpenApiClient) -> None:
    ns = await api.get_namespace(**NS)
    assert (ns.app_id, ns.cluster, ns.name, ns.format) == (
        APP,
        "default",
        "application",
        "properties",
    )
    assert dict(ns.values) == {"greeting": "hello", "timeout": "30"}
    assert "hello" not in repr(ns) and "hello" not in repr(ns.items)
    item = await api.get_item(**NS, key="timeout")
    assert item is not None and item.value == "30"
    assert await api.get_item(**NS, key="absent") is None
    listed = await api.list_namespaces(env=ENV, app_id=APP)
    assert [n.name for n in listed] == ["application"]


async def test_items_publish_and_long_poll(
    api: ApolloOpenApiClient, portal: ApolloTestServer, make_client, events
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    await api.set_items(**NS, items={"timeout": "60", "new.key": "x"}, comment="raise timeout")
    await api.delete_item(**NS, key="greeting")
    assert client.get_nowait("timeout") == "30"  # nothing is released before publish
    release = await api.publish(**NS, title="raise timeout", comment="ci")
    assert dict(release.configurations) == {"timeout": "60", "new.key": "x"}
    event = await events.next()
    assert {k: (c.old_value, c.new_value) for k, c in event.changes.items()} == {
        "timeout": ("30", "60"),
        "new.key": (None, "x"),
        "greeting": ("hello", None),
    }
    latest = await api.latest_release(**NS)
    assert latest is not None and latest.id == release.id
    history = portal.item_history(APP, "application")
    assert [(c.kind, c.key, c.operator) for c in history][-3:] == [
        ("update", "timeout", "ci-bot"),
        ("create", "new.key", "ci-bot"),
        ("delete", "greeting", "ci-bot"),
    ]


async def test_rollback_serves_the_previous_release(
    api: ApolloOpenApiClient, make_client, events
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    await api.update_item(**NS, key="timeout", value="90")
    release = await api.publish(**NS, title="90")
    await events.next()
    assert client.get_nowait("timeout") == "90"
    await api.rollback(env=ENV, release_id=release.id)
    event = await events.next()
    assert event.changes["timeout"].new_value == "30"
    latest = await api.latest_release(**NS)
    assert (
        latest is not None and latest.id != release.id and latest.configurations["timeout"] == "30"
    )
    # Rolling back the only active release left is refused, as by Apollo.
    with pytest.raises(OpenApiBadRequestError, match="only one active release"):
        await api.rollback(env=ENV, release_id=latest.id)


async def test_rollback_to_a_release(api: ApolloOpenApiClient, make_client, events) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    first = await api.latest_release(**NS)
    assert first is not None
    for value in ("1", "2", "3"):
        await api.update_item(**NS, key="timeout", value=value)
        last = await api.publish(**NS, title=value)
        await events.next()
    await api.rollback(env=ENV, release_id=last.id, to_release_id=first.id)
    event = await events.next()
    assert event.changes["timeout"].new_value == "30"
    releases = await api.list_releases(**NS, size=10)
    assert [r.id for r in releases] == [first.id]


async def test_create_item_twice_is_refused(api: ApolloOpenApiClient) -> None:
    created = await api.create_item(**NS, key="k", value="v", comment="c")
    assert (created.key, created.comment, created.audit.created_by) == ("k", "c", "ci-bot")
    with pytest.raises(OpenApiBadRequestError, match="item already exists") as caught:
        await api.create_item(**NS, key="k", value="v")
    assert caught.value.status == 400 and caught.value.operation == "createItem"
    with pytest.raises(OpenApiNotFoundError):
        await api.update_item(**NS, key="absent", value="v")
    with pytest.raises(OpenApiNotFoundError):
        await api.delete_item(**NS, key="absent")


async def test_keys_a_path_cannot_carry(api: ApolloOpenApiClient, portal: ApolloTestServer) -> None:
    key = "a/b c%d?é"
    await api.update_item(**NS, key=key, value="v1", create=True)
    item = await api.get_item(**NS, key=key)
    assert item is not None and (item.key, item.value) == (key, "v1")
    await api.delete_items(**NS, keys=[key, "never-there"])
    assert await api.get_item(**NS, key=key) is None
    assert any("/encodedItems/" in r.path for r in portal.requests)


async def test_create_namespace_json(api: ApolloOpenApiClient, make_client) -> None:
    created = await api.create_namespace(app_id=APP, name="db", format="json", comment="db")
    assert (created.name, created.format) == ("db.json", "json")
    await api.update_item(env=ENV, app_id=APP, namespace="db.json", key="content",
                          value='{"pool": 5}', create=True)  # fmt: skip
    await api.publish(env=ENV, app_id=APP, namespace="db.json", title="db")
    ns = await api.get_namespace(env=ENV, app_id=APP, namespace="db.json")
    assert ns.content == '{"pool": 5}'
    client = make_client(namespaces=["db.json"])
    await client.start()
    assert (await client.namespace("db.json")).data == {"pool": 5}
    with pytest.raises(OpenApiBadRequestError, match="already exists"):
        await api.create_namespace(app_id=APP, name="db", format="json")


async def test_lock_status(api: ApolloOpenApiClient, portal: ApolloTestServer) -> None:
    lock = await api.get_namespace_lock(**NS)
    assert (lock.namespace, lock.is_locked, lock.locked_by) == ("application", False, None)
    portal.namespace_lock = True
    await api.update_item(**NS, key="timeout", value="1")
    lock = await api.get_namespace_lock(**NS)
    assert (lock.is_locked, lock.locked_by) == (True, "ci-bot")


async def test_gray_release_cycle(api: ApolloOpenApiClient, make_client, events) -> None:
    canary = make_client(ip="10.0.0.7")
    canary.on_change(events)
    other = make_client(ip="10.0.0.8")
    await canary.start()
    await other.start()
    assert await api.get_branch(**NS) is None
    branch = await api.create_branch(**NS)
    name = branch.cluster
    assert name != "default"
    assert (await api.get_branch(**NS)).cluster == name  # type: ignore[union-attr]
    await api.set_gray_rules(**NS, branch=name, rules=[GrayRule(APP, ips=("10.0.0.7",))])
    rules = await api.get_gray_rules(**NS, branch=name)
    assert rules is not None and rules.rules == (GrayRule(APP, ("10.0.0.7",), ()),)
    await api.update_item(env=ENV, app_id=APP, cluster=name, namespace="application",
                          key="timeout", value="5", create=True)  # fmt: skip
    gray = await api.gray_publish(**NS, branch=name, title="canary")
    assert gray.configurations["timeout"] == "5" and gray.configurations["greeting"] == "hello"
    event = await events.next()
    assert event.changes["timeout"].new_value == "5"
    assert other.get_nowait("timeout") == "30"
    merged = await api.merge_branch(**NS, branch=name, title="merge canary")
    assert merged.configurations["timeout"] == "5"
    assert await api.get_branch(**NS) is None
    ns = await api.get_namespace(**NS)
    assert ns.values["timeout"] == "5"


async def test_gray_delete_and_abandon(api: ApolloOpenApiClient, make_client, events) -> None:
    canary = make_client(label="canary")
    canary.on_change(events)
    await canary.start()
    branch = await api.create_branch(**NS)
    await api.set_gray_rules(**NS, branch=branch.cluster, rules=[GrayRule(APP, labels=("canary",))])
    await api.gray_publish(
        **NS, branch=branch.cluster, title="no greeting", delete_keys=["greeting"]
    )
    event = await events.next()
    assert event.changes["greeting"].new_value is None
    await api.abandon_branch(**NS, branch=branch.cluster)
    event = await events.next()
    assert event.changes["greeting"].new_value == "hello"
    assert await api.get_branch(**NS) is None


async def test_later_portal_operations(api: ApolloOpenApiClient) -> None:
    assert await api.list_envs() == [ENV]
    app = await api.get_app(APP)
    assert app is not None and app.app_id == APP
    latest = await api.latest_release(**NS)
    assert latest is not None
    again = await api.get_release(env=ENV, release_id=latest.id)
    assert again is not None and again.configurations == latest.configurations
    assert await api.get_release(env=ENV, release_id=99999) is None


async def test_create_app(portal: ApolloTestServer) -> None:
    portal.add_openapi_token("admin-token", apps=["*"], create_apps=True)
    async with ApolloOpenApiClient(portal.url, token="admin-token", operator="admin") as api:
        await api.create_app(App("new-app", "New", org_id="org", owner_name="owner"))
        assert [a.app_id for a in await api.list_apps(["new-app"])] == ["new-app"]
        ns = await api.get_namespace(env=ENV, app_id="new-app", namespace="application")
        assert ns.items == ()
        with pytest.raises(OpenApiBadRequestError, match="app already exists"):
            await api.create_app(App("new-app", "New", org_id="org", owner_name="owner"))
