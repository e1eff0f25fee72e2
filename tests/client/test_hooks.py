"""Observability hooks and ``stats()`` against the real test server."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from aioapollo import ApolloClient, ChangeEvent, ErrorEvent, FetchEvent, Hooks, PollEvent, Source
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, FAST, ClientFactory, Events


class Recorder(Hooks):
    """Keeps every event and lets a test wait for one that matches."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._added = asyncio.Event()

    def _keep(self, event: object) -> None:
        self.events.append(event)
        self._added.set()

    on_poll = on_fetch = on_change = on_error = _keep  # type: ignore[assignment]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type, predicate=lambda e: True, timeout: float = 5.0):
        async with asyncio.timeout(timeout):
            while True:
                for event in self.of(kind):
                    if predicate(event):
                        return event
                self._added.clear()
                await self._added.wait()


async def test_hooks_see_fetch_change_and_polls(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    rec = Recorder()
    client = make_client(hooks=[rec])
    client.on_change(events)
    await client.start()
    fetch = rec.of(FetchEvent)[0]
    assert (fetch.app_id, fetch.namespace, fetch.status) == (APP, "application", 200)
    assert fetch.ok
    assert fetch.service == server.url and fetch.duration >= 0
    first = rec.of(ChangeEvent)[0]
    assert first.initial and first.keys == {"greeting", "timeout"}
    assert first.source is Source.REMOTE

    await rec.wait_for(PollEvent, lambda e: e.status == 304)  # held 0.5 s, then 304
    server.publish(APP, "application", {"greeting": "hi", "timeout": "30"})
    await events.next()
    change = await rec.wait_for(ChangeEvent, lambda e: not e.initial)
    assert change.keys == {"greeting"} and change.release_key is not None
    poll = await rec.wait_for(PollEvent, lambda e: e.status == 200)
    assert poll.notified == ("application",) and poll.ok and poll.service == server.url
    assert not rec.of(ErrorEvent)
    # Hooks carry key names only: no value ever reaches them.
    assert "hi" not in repr(rec.events) and "hello" not in repr(rec.events)


async def test_fetch_and_poll_errors_are_reported(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    rec = Recorder()
    server.inject(f"/configs/{APP}/default/application", status=500, times=1)
    client = make_client(hooks=rec)
    await client.start()  # the second attempt succeeds
    failed, ok = rec.of(FetchEvent)[:2]
    assert failed.status == 500 and not failed.ok and ok.status == 200
    error = rec.of(ErrorEvent)[0]
    assert (error.operation, error.namespace, error.kind) == (
        "fetch",
        "application",
        "ApolloHTTPStatusError:500",
    )
    server.inject("/notifications/v2", status=503, times=1)
    poll_error = await rec.wait_for(ErrorEvent, lambda e: e.operation == "poll")
    assert poll_error.kind == "ApolloHTTPStatusError:503"
    failed_poll = await rec.wait_for(PollEvent, lambda e: not e.ok)
    assert failed_poll.status == 503 and failed_poll.error is poll_error.error
    after = rec.events.index(failed_poll)
    await rec.wait_for(PollEvent, lambda e: e.ok and rec.events.index(e) > after)  # recovers


async def test_a_raising_hook_never_breaks_the_client(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Hooks):
        def on_poll(self, event: PollEvent) -> None:
            raise RuntimeError("exporter down")

        on_fetch = on_change = on_poll  # type: ignore[assignment]

    rec = Recorder()
    client = make_client(hooks=[Broken(), rec])  # the broken one first
    client.on_change(events)
    with caplog.at_level(logging.DEBUG, logger="aioapollo"):
        await client.start()
        await rec.wait_for(PollEvent)
        server.publish(APP, "application", {"greeting": "still works"})
        event = await events.next()
        await rec.wait_for(PollEvent, lambda e: e.status == 200)
        await rec.wait_for(PollEvent, lambda e: e.status == 304)
    assert event.snapshot.get("greeting") == "still works"
    assert await client.get("greeting") == "still works"
    firsts = [r for r in caplog.records if "failed; the client carries on" in r.getMessage()]
    # One traceback per broken method, however often it fails.
    assert sorted(r.getMessage().split()[1] for r in firsts) == [
        "test_a_raising_hook_never_breaks_the_client.<locals>.Broken.on_change",
        "test_a_raising_hook_never_breaks_the_client.<locals>.Broken.on_fetch",
        "test_a_raising_hook_never_breaks_the_client.<locals>.Broken.on_poll",
    ]
    assert any("failed again" in r.getMessage() for r in caplog.records)


def test_hooks_must_be_hooks() -> None:
    with pytest.raises(TypeError, match=r"aioapollo\.Hooks"):
        ApolloClient(APP, config_server="http://127.0.0.1:1", hooks=[print])


async def test_stats_for_a_health_endpoint(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "db.json", '{"password": "s3cret"}')
    client = make_client(namespaces=["application", "db.json"])
    before = client.stats()
    assert before.state == "created" and not before.healthy and before.last_sync is None
    assert before.namespaces["application"].source is None
    await client.start()
    await wait_until(lambda: client.last_poll_success is not None)
    stats = client.stats()
    assert stats.healthy and stats.state == "running" and stats.app_id == APP
    app = stats.namespaces["application"]
    assert app.source is Source.REMOTE and app.keys == 2 and app.release_key
    assert stats.last_sync is not None and app.synced_at is not None
    assert app.synced_at >= (app.loaded_at or 0)

    seen_id = client.notification_ids["application"]
    server.publish(APP, "application", {"greeting": "new"})
    await wait_until(lambda: client.notification_ids["application"] > seen_id)
    stats = client.stats()
    assert stats.namespaces["application"].notification_id == client.notification_ids["application"]
    assert stats.namespaces["application"].release_key != app.release_key
    text = json.dumps(stats.as_dict())  # JSON-ready, and never holds a value
    assert "s3cret" not in text and "new" not in text and "hello" not in text
    assert json.loads(text)["namespaces"]["db.json"]["source"] == "remote"
    await client.aclose()
    assert client.stats().state == "closed" and not client.stats().healthy


async def test_stats_show_a_cache_start(tmp_path) -> None:
    async with ApolloTestServer(hold_seconds=0.5) as srv:
        srv.publish(APP, "application", {"k": "v"})
        async with ApolloClient(APP, config_server=srv.url, cache_dir=tmp_path, **FAST):
            pass
    # The server is gone: the next client starts from the cache.
    async with ApolloClient(APP, config_server=srv.url, cache_dir=tmp_path, **FAST) as client:
        stats = client.stats()
        assert stats.namespaces["application"].source is Source.CACHE
        assert stats.namespaces["application"].synced_at is None
        assert not stats.healthy
