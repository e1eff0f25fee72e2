"""``GET /notifications/v2``: the long poll, against the protocol doc section 5."""

from __future__ import annotations

import asyncio
import threading
import time

from aioapollo.testing import ApolloTestServer, ReleaseStore

from .conftest import Http, notifications_query

APP = "SampleApp"


def poll_url(server: ApolloTestServer, entries: list[tuple[str, int]], **extra: str) -> str:
    return f"{server.url}/notifications/v2?{notifications_query(APP, entries, **extra)}"


async def test_first_poll_answers_at_once_with_all_known_keys(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    apollo_server.publish(APP, "application", {"a": "2"}, cluster="SHAJQ")
    apollo_server.publish(APP, "db.json", "{}")
    url = poll_url(
        apollo_server,
        [("application", -1), ("db.json", -1), ("never", -1)],
        cluster="SHAJQ",
        ip="10.0.0.1",
    )
    url = url.replace("cluster=default&", "")
    reply = await http.get(url)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json;charset=UTF-8"
    entries = {entry["namespaceName"]: entry for entry in reply.json()}
    assert entries == {
        "application": {
            "namespaceName": "application",
            "notificationId": 2,
            "messages": {
                "details": {"SampleApp+SHAJQ+application": 2, "SampleApp+default+application": 1}
            },
        },
        "db.json": {
            "namespaceName": "db.json",
            "notificationId": 3,
            "messages": {"details": {"SampleApp+default+db.json": 3}},
        },
    }


async def test_up_to_date_poll_is_held_then_304_without_body(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    started = time.monotonic()
    reply = await http.get(poll_url(apollo_server, [("application", 1)]))
    elapsed = time.monotonic() - started
    assert reply.status == 304
    assert reply.body == b""
    assert 0.45 <= elapsed < 3  # the fixture's hold is 0.5 s


async def test_release_wakes_held_poll_with_one_entry(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.hold_seconds = 30
    apollo_server.publish(APP, "application", {"a": "1"})
    apollo_server.publish(APP, "other", {"a": "1"})
    url = poll_url(apollo_server, [("application.properties", 1), ("other", 2)], dataCenter="DC")
    poll = asyncio.create_task(http.get(url))
    await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
    apollo_server.publish(APP, "application", {"a": "2"}, cluster="DC")
    reply = await asyncio.wait_for(poll, 5)
    assert reply.status == 200
    # Only the changed key in details; the name loses its .properties suffix.
    assert reply.json() == [
        {
            "namespaceName": "application",
            "notificationId": 3,
            "messages": {"details": {"SampleApp+DC+application": 3}},
        }
    ]
    assert apollo_server.held_polls == 0


async def test_unrelated_release_does_not_wake(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    poll = asyncio.create_task(http.get(poll_url(apollo_server, [("application", 1)])))
    await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
    apollo_server.publish(APP, "other", {"a": "1"})
    apollo_server.publish("OtherApp", "application", {"a": "1"})
    apollo_server.publish(APP, "application", {"a": "1"}, cluster="not-watched")
    assert (await asyncio.wait_for(poll, 5)).status == 304


async def test_delete_and_gray_are_release_messages(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.hold_seconds = 30
    apollo_server.publish(APP, "application", {"a": "1"})
    for change in (
        lambda: apollo_server.publish(APP, "application", {"a": "g"}, gray_ips=["1.2.3.4"]),
        lambda: apollo_server.clear_gray(APP, "application"),
        lambda: apollo_server.delete_release(APP, "application"),
    ):
        apollo_server.clear_requests()
        last = apollo_server.store.notification_ids([f"{APP}+default+application"])
        url = poll_url(apollo_server, [("application", last[f"{APP}+default+application"])])
        poll = asyncio.create_task(http.get(url))
        await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
        change()
        assert (await asyncio.wait_for(poll, 5)).status == 200


async def test_case_restored_and_duplicates_keep_smaller_id(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "FX.apollo", {"a": "1"})  # id 1
    apollo_server.publish(APP, "FX.apollo", {"a": "2"})  # id 2
    # Two spellings of one namespace: the smaller id (1) is kept, so the answer is immediate,
    # under the kept entry's name.
    reply = await http.get(poll_url(apollo_server, [("fx.apollo", 5), ("Fx.Apollo", 1)]))
    assert reply.json() == [
        {
            "namespaceName": "Fx.Apollo",
            "notificationId": 2,
            "messages": {"details": {"SampleApp+default+FX.apollo": 2}},
        }
    ]
    # On the held path the client's spelling is restored too.
    apollo_server.hold_seconds = 30
    poll = asyncio.create_task(http.get(poll_url(apollo_server, [("fx.APOLLO.properties", 2)])))
    await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
    apollo_server.publish(APP, "FX.apollo", {"a": "3"})
    reply = await asyncio.wait_for(poll, 5)
    assert reply.json()[0]["namespaceName"] == "fx.APOLLO"


async def test_public_namespace_watches_owner_keys(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish("Owner", "TEST1.shared", {"a": "1"}, public=True)  # id 1
    reply = await http.get(poll_url(apollo_server, [("application", -1), ("test1.shared", -1)]))
    assert reply.json() == [
        {
            "namespaceName": "test1.shared",
            "notificationId": 1,
            "messages": {"details": {"Owner+default+TEST1.shared": 1}},
        }
    ]
    apollo_server.hold_seconds = 30
    poll = asyncio.create_task(http.get(poll_url(apollo_server, [("TEST1.shared", 1)])))
    await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
    apollo_server.publish("Owner", "TEST1.shared", {"a": "2"}, public=True)
    assert (await asyncio.wait_for(poll, 5)).json()[0]["notificationId"] == 2


async def test_bad_notifications_is_400_with_gson_body(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    base = f"{apollo_server.url}/notifications/v2?appId={APP}&cluster=default&notifications="
    for raw, decoded in (
        ("xx", "xx"),
        ("%5B%5D", "[]"),
        ("%7B%7D", "{}"),
        ("%5B%7B%22namespaceName%22%3A%22%22%7D%5D", '[{"namespaceName":""}]'),
        ("%5B%7B%22notificationId%22%3A%22x%22%7D%5D", '[{"notificationId":"x"}]'),
    ):
        reply = await http.get(base + raw)
        assert reply.status == 400, raw
        body = reply.json()
        assert set(body) == {"status", "message", "timestamp", "exception"}
        assert body["status"] == 400
        assert body["message"] == f"invalid notifications format:{decoded}"
        assert body["exception"] == (
            "com.ctrip.framework.apollo.common.exception.BadRequestException"
        )


async def test_missing_parameters(apollo_server: ApolloTestServer, http: Http) -> None:
    assert (await http.get(f"{apollo_server.url}/notifications/v2?cluster=default")).status == 400
    reply = await http.get(f"{apollo_server.url}/notifications/v2?appId={APP}&cluster=default")
    assert reply.status == 500
    assert "notifications" in reply.json()["message"]


async def test_publish_from_another_thread_wakes_poll(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.hold_seconds = 30
    apollo_server.publish(APP, "application", {"a": "1"})
    poll = asyncio.create_task(http.get(poll_url(apollo_server, [("application", 1)])))
    await asyncio.wait_for(apollo_server.wait_for_polls(1), 5)
    thread = threading.Thread(target=apollo_server.publish, args=(APP, "application", {"a": "2"}))
    thread.start()
    thread.join()
    assert (await asyncio.wait_for(poll, 5)).status == 200


async def test_servers_sharing_a_store_all_wake(http: Http) -> None:
    store = ReleaseStore()
    store.publish(APP, "application", {"a": "1"})
    async with (
        ApolloTestServer(store=store, hold_seconds=30) as one,
        ApolloTestServer(store=store, hold_seconds=30) as two,
    ):
        polls = [
            asyncio.create_task(http.get(poll_url(s, [("application", 1)]))) for s in (one, two)
        ]
        for server in (one, two):
            await asyncio.wait_for(server.wait_for_polls(1), 5)
        one.publish(APP, "application", {"a": "2"})
        replies = await asyncio.wait_for(asyncio.gather(*polls), 5)
        assert [r.json()[0]["notificationId"] for r in replies] == [2, 2]
        assert (await http.get(f"{two.url}/configs/{APP}/default/application")).json()[
            "configurations"
        ] == {"a": "2"}


async def test_close_answers_held_polls(http: Http) -> None:
    server = ApolloTestServer(hold_seconds=30)
    await server.start()
    poll = asyncio.create_task(http.get(poll_url(server, [("application", -1)])))
    await asyncio.wait_for(server.wait_for_polls(1), 5)
    started = time.monotonic()
    await server.close()
    await server.close()  # idempotent
    assert (await asyncio.wait_for(poll, 5)).status == 304
    assert time.monotonic() - started < 3
