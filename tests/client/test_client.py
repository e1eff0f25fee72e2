"""ApolloClient against the real test server over loopback: load, poll, listeners, lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

import pytest

from aioapollo import (
    ApolloClient,
    ChangeType,
    ClientState,
    ClientStateError,
    NamespaceNotFoundError,
    NamespaceUnavailableError,
    Source,
)
from aioapollo.testing import ApolloTestServer, RecordedRequest

from .._support import wait_until
from .._workers import Child, Report
from ..conftest import APP, ClientFactory, Events


async def test_start_loads_every_namespace(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "db.json", '{"url": "postgres://db", "pool": 5}')
    server.publish(APP, "app.yaml", "feature:\n  enabled: true\n")
    client = make_client(namespaces=["application", "db.json", "app.yaml"])
    await client.start()
    assert client.state is ClientState.RUNNING
    assert await client.get("greeting") == "hello"
    assert client.get_nowait("missing", "dflt") == "dflt"
    assert await client.get_int("timeout") == 30
    db = await client.namespace("db.json")
    assert db.format == "json"
    assert db.data == {"url": "postgres://db", "pool": 5}
    assert json.loads(db.content or "") == db.data
    assert db.items.keys() == {"content"}
    assert (await client.namespace("app.yaml")).data == {"feature": {"enabled": True}}
    assert dict(client.sources) == dict.fromkeys(client.namespaces, Source.REMOTE)


async def test_publish_reaches_listener_once_with_change_types(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "application", {"a": "1", "b": "2"})
    client = make_client()
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"a": "10", "c": "3"})
    event = await events.next()
    assert event.namespace == "application"
    assert {k: c.change_type for k, c in event.changes.items()} == {
        "a": ChangeType.MODIFIED,
        "b": ChangeType.DELETED,
        "c": ChangeType.ADDED,
    }
    assert event.changes["a"].old_value == "1" and event.changes["a"].new_value == "10"
    assert await client.get("a") == "10"
    assert await client.get("b") is None
    # An identical release (new releaseKey, same values) fires nothing; the next real one does.
    server.publish(APP, "application", {"a": "10", "c": "3"})
    server.publish(APP, "application", {"a": "11", "c": "3"})
    event = await events.next()
    assert set(event.changes) == {"a"}
    assert len(events.seen) == 2  # no event for the first load, none for the identical one


async def test_two_namespaces_in_one_notification_are_both_refetched(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "second", {"x": "1"})
    client = make_client(namespaces=["application", "second"])
    client.on_change(events)
    # Hold back the first long poll so both releases below are pending when it is answered.
    server.inject("/notifications/v2", delay=0.3)
    await client.start()
    server.publish(APP, "application", {"greeting": "bonjour"})
    server.publish(APP, "second", {"x": "2"})
    got = {(await events.next()).namespace, (await events.next()).namespace}
    assert got == {"application", "second"}
    assert await client.get("greeting") == "bonjour"
    assert await client.get("x", namespace="second") == "2"
    polls = [r for r in server.requests if r.path == "/notifications/v2"]
    names = {n["namespaceName"] for n in json.loads(polls[0].query["notifications"])}
    assert names == {"application", "second"}  # one request covers every namespace


async def test_properties_suffix_is_matched_in_notifications(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(namespaces=["application.properties"])
    client.on_change(events)
    await client.start()
    assert await client.get("greeting", namespace="application.properties") == "hello"
    server.publish(APP, "application", {"greeting": "hi"})
    event = await events.next()
    assert event.namespace == "application.properties"
    await wait_until(lambda: client.notification_ids["application.properties"] > 0)


async def test_merged_release_key_is_sent_encoded_and_gets_304(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish("owner-app", "shared.ns", {"p": "public", "q": "public"}, public=True)
    server.publish(APP, "shared.ns", {"q": "own"})
    client = make_client(namespaces=["shared.ns"], refresh_interval=0.2)
    await client.start()
    snap = client.snapshot("shared.ns")
    assert dict(snap.items) == {"p": "public", "q": "own"}
    assert snap.release_key is not None and "+" in snap.release_key

    def refreshed_with_304(r: RecordedRequest) -> bool:
        return (
            r.path == f"/configs/{APP}/default/shared.ns"
            and r.query.get("releaseKey") == snap.release_key
            and r.status == 304
        )

    sent = await server.wait_for_request(refreshed_with_304)
    assert "%2B" in sent.raw_path


async def test_messages_are_sent_with_refetch(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"greeting": "hey"})
    await events.next()
    fetch = [r for r in server.requests if r.path.startswith("/configs/") and "messages" in r.query]
    assert fetch, "a notified refetch must pass messages"
    details = json.loads(fetch[-1].query["messages"])["details"]
    sent = details[f"{APP}+default+application"]
    await wait_until(lambda: client.notification_ids["application"] == sent)


async def test_get_waits_for_start(server: ApolloTestServer, make_client: ClientFactory) -> None:
    server.inject("/configs/", delay=0.2)
    client = make_client()
    starting = asyncio.create_task(client.start())
    await asyncio.sleep(0)
    assert client.state is ClientState.STARTING
    assert await client.get("greeting") == "hello"
    await starting


async def test_read_errors_are_specific(make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(ClientStateError, match="start"):
        client.get_nowait("greeting")
    await client.start()
    with pytest.raises(NamespaceNotFoundError):
        await client.get("x", namespace="nope")
    with pytest.raises(NamespaceNotFoundError):
        client.add_listener(lambda e: None, namespaces=["nope"])
    # A string for a collection is named as such (not as an unknown namespace "a").
    with pytest.raises(TypeError, match="not a string"):
        client.add_listener(lambda e: None, namespaces="application")


async def test_lifecycle_rules(make_client: ClientFactory) -> None:
    client = make_client()
    async with client:
        with pytest.raises(ClientStateError, match="already started"):
            await client.start()
    assert client.state is ClientState.CLOSED
    await client.aclose()  # idempotent
    assert client.get_nowait("greeting") == "hello"  # last values stay readable
    with pytest.raises(ClientStateError, match="reopen"):
        await client.start()


async def test_aclose_cancels_tasks(make_client: ClientFactory) -> None:
    client = make_client()
    await client.start()
    tasks = {t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo-")}
    kinds = sorted(t.get_name().split("-")[1] for t in tasks)
    # poll, refresh, the cache writer, the listener dispatcher and its delivery task
    assert kinds == ["cache", "listeners", "listeners", "poll", "refresh"], kinds
    await client.aclose()
    assert all(t.done() for t in tasks)


async def test_unreleased_namespace_does_not_block_others(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(namespaces=["application", "later"], allow_empty=True)
    client.on_change(events)
    await client.start()
    assert client.sources["later"] is Source.NONE
    server.publish(APP, "application", {"greeting": "still"})
    assert (await events.next()).namespace == "application"
    server.publish(APP, "later", {"k": "v"})
    event = await events.next()
    assert event.namespace == "later" and event.changes["k"].change_type is ChangeType.ADDED
    assert await client.get("k", namespace="later") == "v"


async def test_start_fails_naming_namespaces_and_can_retry(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client(namespaces=["application", "ghost"], cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    assert info.value.namespaces == ("ghost",)
    assert "ghost" in str(info.value)
    assert client.state is ClientState.CREATED
    server.publish(APP, "ghost", {"boo": "1"})
    await client.start()
    assert await client.get("boo", namespace="ghost") == "1"


async def test_listener_filters(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "other", {"z": "0"})
    client = make_client(namespaces=["application", "other"])
    calls: dict[str, list[str]] = {"keys": [], "prefix": [], "ns": []}

    @client.on_change(keys={"DB_URL"})
    async def by_key(event):
        calls["keys"].append(event.namespace)

    @client.on_change(prefixes=("redis.",))
    async def by_prefix(event):
        calls["prefix"].append(event.namespace)

    @client.on_change(namespaces=("other",))
    def by_namespace(event):  # a plain function is accepted too (it runs in a thread)
        calls["ns"].append(event.namespace)

    client.on_change(events)  # registered last: it runs after the filtered ones
    await client.start()
    server.publish(APP, "application", {"greeting": "hello", "timeout": "30", "DB_URL": "x"})
    assert (await events.next()).changed_keys == {"DB_URL"}
    server.publish(
        APP, "application", {"greeting": "hello", "timeout": "30", "DB_URL": "x", "redis.host": "r"}
    )
    assert (await events.next()).changed_keys == {"redis.host"}
    server.publish(APP, "other", {"z": "1"})
    assert (await events.next()).namespace == "other"
    assert calls == {"keys": ["application"], "prefix": ["application"], "ns": ["other"]}
    client.remove_listener(events)
    with pytest.raises(ValueError, match="not registered"):
        client.remove_listener(events)


async def test_crashing_and_slow_listeners_do_not_stop_polling(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(close_timeout=1.0)
    never = asyncio.Event()

    @client.on_change
    async def crashes(event):
        raise RuntimeError("listener bug")

    client.on_change(events)

    @client.on_change
    async def hangs(event):
        await never.wait()

    await client.start()
    server.publish(APP, "application", {"greeting": "one"})
    await events.next()  # delivered although the listener before it raised
    assert any("listener" in r.message and r.exc_info for r in caplog.records)
    # The dispatcher is now stuck in `hangs`; polling must go on regardless.
    server.publish(APP, "application", {"greeting": "two"})
    await wait_until(lambda: client.get_nowait("greeting") == "two")
    async with asyncio.timeout(3):
        await client.aclose()


async def test_gray_release_by_label_and_ip(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"greeting": "gray"}, gray_labels=["canary"])
    server.publish(APP, "application", {"greeting": "ip-gray"}, gray_ips=["10.9.8.7"])
    # The second gray publish replaces the branch's release and rule; match on ip now.
    plain = make_client()
    by_ip = make_client(ip="10.9.8.7")
    await asyncio.gather(plain.start(), by_ip.start())
    assert await plain.get("greeting") == "hello"
    assert await by_ip.get("greeting") == "ip-gray"


async def test_cluster_and_data_center_fallback(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"where": "dc"}, cluster="dc1")
    in_dc = make_client(cluster="missing-cluster", data_center="dc1")
    fallback = make_client(cluster="missing-cluster")
    await asyncio.gather(in_dc.start(), fallback.start())
    assert await in_dc.get("where") == "dc"
    assert await fallback.get("greeting") == "hello"
    poll = await _first_poll(server)
    assert poll is not None


async def _first_poll(server: ApolloTestServer) -> RecordedRequest:
    return await server.wait_for_request(lambda r: r.path == "/notifications/v2")


async def test_long_poll_sends_no_label(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client(label="canary", ip="10.0.0.1")
    await client.start()
    poll = await _first_poll(server)
    assert "label" not in poll.query and poll.query["ip"] == "10.0.0.1"
    fetch = next(r for r in server.requests if r.path.startswith("/configs/"))
    assert fetch.query["label"] == "canary"


async def test_incremental_sync_is_applied() -> None:
    async with ApolloTestServer(hold_seconds=0.5, incremental_sync=True) as server:
        server.publish(APP, "application", {"a": "1", "b": "2", "c": "3"})
        events = Events()
        from ..conftest import FAST

        async with ApolloClient(APP, config_server=server.url, cache_dir=None, **FAST) as client:
            client.on_change(events)
            server.publish(APP, "application", {"a": "1", "b": "20", "d": "4"})
            event = await events.next()
            assert set(event.changes) == {"b", "c", "d"}
            assert dict(client.snapshot().items) == {"a": "1", "b": "20", "d": "4"}
        incremental = [
            r for r in server.requests if r.path.startswith("/configs/") and "releaseKey" in r.query
        ]
        assert incremental and incremental[-1].status == 200


async def test_query_strings_parse_as_the_server_sees_them(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client(ip="10.0.0.1")
    await client.start()
    fetch = next(r for r in server.requests if r.path.startswith("/configs/"))
    assert parse_qs(fetch.raw_path.partition("?")[2])["ip"] == ["10.0.0.1"]


async def test_cancelled_start_leaves_nothing_behind(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.inject("/configs/", delay=5)
    client = make_client()
    starting = asyncio.create_task(client.start())
    await server.wait_for_request(lambda r: r.path.startswith("/configs/"))
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert client.state is ClientState.CREATED
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo-")]
    server.clear_faults()
    await client.start()  # and it can still be started
    assert await client.get("greeting") == "hello"


async def test_aclose_while_starting_wins(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.inject("/configs/", delay=5)
    client = make_client(cache_dir=None)
    starting = asyncio.create_task(client.start())
    await server.wait_for_request(lambda r: r.path.startswith("/configs/"))
    await client.aclose()
    with pytest.raises(Exception):  # noqa: B017 - the aborted load's error, whichever it is
        await starting
    assert client.state is ClientState.CLOSED


async def test_bound_methods_can_be_removed(make_client: ClientFactory) -> None:
    class Watcher:
        async def changed(self, event) -> None:
            pass

    client = make_client()
    watcher = Watcher()
    client.on_change(watcher.changed)
    client.remove_listener(watcher.changed)  # a new bound-method object each time
    with pytest.raises(ValueError, match="not registered"):
        client.remove_listener(watcher.changed)


async def test_many_namespaces_are_split_over_several_long_polls(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    names = [f"namespace.number.{i:03d}.with.a.long.name" for i in range(200)]
    for name in names:
        server.publish(APP, name, {"k": "0"})
    client = make_client(namespaces=names)
    client.on_change(events)
    await client.start()
    polls = [t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo-poll-")]
    assert len(polls) >= 2  # one request line would be ~17 KB: more than servers accept
    async with asyncio.timeout(10):
        await server.wait_for_polls(len(polls))  # every group is held: none was refused
    assert all(len(r.raw_path) < 8192 for r in server.requests)
    server.publish(APP, names[-1], {"k": "1"})
    server.publish(APP, names[0], {"k": "1"})
    got = {(await events.next()).namespace, (await events.next()).namespace}
    assert got == {names[0], names[-1]}


@pytest.mark.workers
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
async def test_reads_in_a_forked_child_that_never_started_it_warn_once(
    make_client: ClientFactory,
) -> None:
    """A forked child reads the values frozen at fork time and is told so at its first read,
    once: later reads, snapshot() included, do not warn again."""
    client = make_client()
    await client.start()

    def body(report: Report) -> None:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("aioapollo").addHandler(handler)

        def warned() -> list[str]:
            return [r.getMessage() for r in records if "frozen at fork time" in r.getMessage()]

        values = [client.get_nowait("greeting")]
        counts = [len(warned())]  # the plain read path warns...
        values += [client.snapshot().get("greeting"), client.get_nowait("greeting")]
        counts.append(len(warned()))  # ...and nothing warns again
        report(
            {"state": client.state.value, "values": values, "counts": counts, "warned": warned()}
        )

    child = Child(body)
    message = await child.next()
    assert await child.exit_code() == 0
    assert message["state"] == "forked"
    assert message["values"] == ["hello"] * 3
    assert message["counts"] == [1, 1]
    assert f"read in forked process {child.pid}" in message["warned"][0]
