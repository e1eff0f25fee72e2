"""Listeners that cannot hurt the client: bounded threads, a bounded queue, abandoned calls.

A listener that hangs is given up on at ``listener_timeout`` and the others go on; a listener
that falls behind gets one event per namespace, the diff from what it last saw to now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from aioapollo import (
    ApolloClient,
    ChangeType,
    ClientOptions,
    ClientStats,
    ConfigChangeEvent,
    ListenerStats,
    SyncApolloClient,
)
from aioapollo._core.listeners import ListenerRegistry
from aioapollo._runtime.threads import alive_threads
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import Changes, aioapollo_threads
from ..conftest import APP, ClientFactory, Events

BASE = {"greeting": "hello", "timeout": "30"}


def listener_threads() -> list[str]:
    return [name for name in aioapollo_threads() if name == "aioapollo-listener"]


def our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo-")]


class Gate:
    """A coroutine listener that holds the dispatcher on its first event until opened."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self.seen: list[ConfigChangeEvent] = []

    async def __call__(self, event: ConfigChangeEvent) -> None:
        self.seen.append(event)
        self.entered.set()
        await self.opened.wait()


async def publish_applied(
    server: ApolloTestServer, client: ApolloClient, data: Mapping[str, str], ns: str = "application"
) -> str:
    """Publish and wait until the client applied exactly this release (no server coalescing)."""
    key = server.publish(APP, ns, data)
    await wait_until(lambda: client.snapshot(ns).release_key == key)
    return key


def kinds(event: ConfigChangeEvent) -> dict[str, tuple[str, str | None, str | None]]:
    return {
        key: (c.change_type.value, c.old_value, c.new_value) for key, c in event.changes.items()
    }


# ---------------------------------------------------------------------- options


def test_listener_timeout_option_and_registry_defaults_agree() -> None:
    opts = ClientOptions.build(APP, config_server="http://127.0.0.1:1")
    registry = ListenerRegistry()
    assert opts.listener_timeout == registry._timeout == 60.0
    assert opts.close_timeout == registry._close_timeout
    assert ClientOptions.build(APP, config_server="http://x", listener_timeout=None)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="listener_timeout"):
            ClientOptions.build(APP, config_server="http://x", listener_timeout=bad)


def test_an_event_built_the_old_way_spans_one_release() -> None:
    from aioapollo import NamespaceSnapshot, Source

    snap = NamespaceSnapshot(
        "application", "properties", {}, release_key="r", source=Source.NONE, fetched_at=0
    )
    assert ConfigChangeEvent("application", {}, snap).releases == 1


# ---------------------------------------------------------------------- coalescing

#: Releases published while the dispatcher is held, and the one event a listener then gets
#: for them (None: they cancel out and no event comes).
FOLDS: dict[
    str, tuple[list[dict[str, str]], dict[str, tuple[str, str | None, str | None]] | None]
] = {
    "changed and changed back": (
        [{**BASE, "greeting": "b"}, {**BASE, "greeting": "one"}],
        None,
    ),
    "added then deleted": (
        [{**BASE, "greeting": "one", "extra": "1"}, {**BASE, "greeting": "one"}],
        None,
    ),
    "modified twice": (
        [{**BASE, "greeting": "two"}, {**BASE, "greeting": "three"}],
        {"greeting": ("MODIFIED", "one", "three")},
    ),
    "deleted then back with another value": (
        [{"timeout": "30"}, {**BASE, "greeting": "other"}],
        {"greeting": ("MODIFIED", "one", "other")},
    ),
    "added then modified, another deleted": (
        [{**BASE, "greeting": "one", "extra": "1"}, {"greeting": "one", "extra": "2"}],
        {"extra": ("ADDED", None, "2"), "timeout": ("DELETED", "30", None)},
    ),
}


@pytest.mark.parametrize("case", list(FOLDS))
async def test_releases_waiting_for_a_busy_dispatcher_fold_into_one_diff(
    server: ApolloTestServer, make_client: ClientFactory, events: Events, case: str
) -> None:
    server.publish(APP, "other", {"z": "0"})
    client = make_client(namespaces=["application", "other"])
    gate = Gate()
    client.on_change(gate)
    client.on_change(events)
    await client.start()
    await publish_applied(server, client, {**BASE, "greeting": "one"})
    async with asyncio.timeout(5):
        await gate.entered.wait()  # the dispatcher is held: what follows waits in its queue
    releases, expected = FOLDS[case]
    for data in releases:
        last = await publish_applied(server, client, data)
    await publish_applied(server, client, {"z": "1"}, ns="other")  # a marker that follows
    gate.opened.set()

    first = await events.next()
    assert kinds(first) == {"greeting": ("MODIFIED", "hello", "one")} and first.releases == 1
    if expected is not None:
        folded = await events.next()
        assert folded.namespace == "application"
        assert kinds(folded) == expected
        assert folded.releases == 2
        assert folded.snapshot.release_key == last
    marker = await events.next()
    assert marker.namespace == "other"  # nothing else came before it
    assert counters(client).coalesced == 1
    await wait_until(lambda: counters(client).queue_depth == 0)
    assert [e.namespace for e in gate.seen] == [e.namespace for e in events.seen]


def counters(client: ApolloClient) -> ListenerStats:
    """The client's listener counters, as ``stats()`` reports them."""
    listeners = client.stats().listeners
    assert listeners is not None
    return listeners


async def test_filters_apply_to_the_folded_diff(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()
    gate = Gate()
    client.on_change(gate)
    by_key: list[ConfigChangeEvent] = []
    by_prefix: list[ConfigChangeEvent] = []
    client.on_change(keys={"feature"})(by_key.append)  # a plain function: the worker thread
    client.on_change(prefixes=("db.",))(lambda event: by_prefix.append(event))
    client.on_change(events)
    await client.start()
    await publish_applied(server, client, {**BASE, "feature": "on"})
    async with asyncio.timeout(5):
        await gate.entered.wait()
    # feature goes back to "on" (no net change for by_key); db.url comes and stays.
    await publish_applied(server, client, {**BASE, "feature": "off"})
    await publish_applied(server, client, {**BASE, "feature": "on", "db.url": "x"})
    gate.opened.set()
    await events.next()
    folded = await events.next()
    assert kinds(folded) == {"db.url": ("ADDED", None, "x")} and folded.releases == 2
    assert [e.changed_keys for e in by_key] == [{"feature"}]  # only the first release
    assert [e.changed_keys for e in by_prefix] == [{"db.url"}]
    assert by_prefix[0].releases == 2


async def test_folded_events_keep_the_order_of_namespaces(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    for ns in ("a", "b"):
        server.publish(APP, ns, {"n": "0"})
    client = make_client(namespaces=["application", "a", "b"])
    gate = Gate()
    client.on_change(gate)
    client.on_change(events)
    await client.start()
    await publish_applied(server, client, {**BASE, "greeting": "one"})
    async with asyncio.timeout(5):
        await gate.entered.wait()
    await publish_applied(server, client, {"n": "1"}, ns="b")
    await publish_applied(server, client, {"n": "1"}, ns="a")
    await publish_applied(server, client, {"n": "2"}, ns="b")  # joins b's waiting event
    await publish_applied(server, client, {**BASE, "greeting": "two"})
    gate.opened.set()
    got = [await events.next() for _ in range(4)]
    assert [(e.namespace, e.releases) for e in got] == [
        ("application", 1),
        ("b", 2),
        ("a", 1),
        ("application", 1),
    ]
    assert kinds(got[1]) == {"n": ("MODIFIED", "0", "2")}


# ---------------------------------------------------------------------- hung listeners


async def test_a_hung_plain_listener_is_abandoned_and_catches_up_when_it_returns(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    timeout = 1.0
    client = make_client(listener_timeout=timeout)
    release = threading.Event()
    hung: list[ConfigChangeEvent] = []

    def blocks_once(event: ConfigChangeEvent) -> None:
        hung.append(event)
        if len(hung) == 1:
            release.wait(30)  # a deadlock, until the test lets it go

    client.on_change(blocks_once)
    client.on_change(events)
    await client.start()
    assert listener_threads() == []  # no thread before a plain listener is called
    try:
        server.publish(APP, "application", {**BASE, "greeting": "v0"})
        first = await events.next(timeout=timeout + 5)  # after the timeout, not never
        assert first.changes["greeting"].new_value == "v0"
        assert (counters(client).abandoned, counters(client).stalled) == (1, 1)

        threads = [len(listener_threads())]
        started = time.monotonic()
        for n in range(1, 6):
            await publish_applied(server, client, {**BASE, "greeting": f"v{n}"})
            assert (await events.next()).changes["greeting"].new_value == f"v{n}"
            threads.append(len(listener_threads()))
        # Waiting for the hung listener again would cost `timeout` per event.
        assert time.monotonic() - started < 5 * timeout
        assert counters(client).abandoned == 1 and len(hung) == 1
        assert max(threads) <= 2  # the abandoned thread and at most one worker
        assert counters(client).queue_depth == 1  # application, held for the hung listener

        release.set()
        await wait_until(lambda: len(hung) == 2)
        # One event from what it last saw (v0) to now (v5), spanning the 5 releases.
        assert kinds(hung[1]) == {"greeting": ("MODIFIED", "v0", "v5")}
        assert hung[1].releases == 5
        assert counters(client).stalled == 0 and counters(client).queue_depth == 0
        await wait_until(lambda: len(listener_threads()) == 1)  # the abandoned one ended
        await client.aclose()
        await wait_until(lambda: listener_threads() == [])
    finally:
        release.set()


async def test_a_plain_listener_that_hangs_every_time_holds_one_thread(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(listener_timeout=0.2)
    release = threading.Event()
    calls: list[ConfigChangeEvent] = []

    def always_hangs(event: ConfigChangeEvent) -> None:
        calls.append(event)
        release.wait(30)

    client.on_change(always_hangs)
    client.on_change(lambda event: None)  # another plain listener: it needs a fresh worker
    client.on_change(events)
    await client.start()
    try:
        for n in range(8):
            await publish_applied(server, client, {**BASE, "greeting": f"v{n}"})
            await events.next(timeout=5)
            assert len(listener_threads()) <= 2
        assert len(calls) == 1 and client.stats().listeners.stalled == 1
    finally:
        release.set()
    await wait_until(lambda: len(calls) == 2)  # then it catches up once
    assert calls[1].releases == 7


async def test_a_slow_coroutine_listener_is_cancelled_at_the_timeout(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(listener_timeout=0.3)
    cancelled: list[str] = []
    never = asyncio.Event()

    async def slow(event: ConfigChangeEvent) -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(event.changes["greeting"].new_value or "")
            raise

    client.on_change(slow)
    client.on_change(events)
    await client.start()
    for n in range(2):
        await publish_applied(server, client, {**BASE, "greeting": f"v{n}"})
        await events.next()
    assert cancelled == ["v0", "v1"]  # cancelled, so not held back: it got both
    assert client.stats().listeners.abandoned == 2 and client.stats().listeners.stalled == 0
    assert sum("took longer than listener_timeout" in r.message for r in caplog.records) == 2


async def test_a_coroutine_listener_that_ignores_its_timeout_stalls_only_itself(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(listener_timeout=0.2, close_timeout=0.3)
    release = asyncio.Event()
    seen: list[ConfigChangeEvent] = []

    async def stubborn(event: ConfigChangeEvent) -> None:
        seen.append(event)
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation

    client.on_change(stubborn)
    client.on_change(events)
    await client.start()
    try:
        await publish_applied(server, client, {**BASE, "greeting": "v0"})
        await events.next()  # after timeout + close_timeout: delivery moved to a new task
        assert any("ignored its cancellation" in r.message for r in caplog.records)
        for n in range(1, 4):
            await publish_applied(server, client, {**BASE, "greeting": f"v{n}"})
            await events.next()
        assert len(seen) == 1 and client.stats().listeners.stalled == 1
    finally:
        release.set()
    await wait_until(lambda: len(seen) == 2)
    assert kinds(seen[1]) == {"greeting": ("MODIFIED", "v0", "v3")} and seen[1].releases == 3
    assert client.stats().listeners.stalled == 0


async def test_a_listener_that_swallows_cancellation_leaves_nothing_after_aclose(
    server: ApolloTestServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "aioapollo")
    client = make_client(listener_timeout=None, close_timeout=0.5)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def stubborn(event: ConfigChangeEvent) -> None:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    client.on_change(stubborn)
    await client.start()
    (dispatcher,) = [t for t in our_tasks() if t.get_name() == f"aioapollo-listeners-{APP}"]
    try:
        server.publish(APP, "application", {**BASE, "greeting": "one"})
        async with asyncio.timeout(5):
            await entered.wait()
        started = time.monotonic()
        await client.aclose()
        assert time.monotonic() - started < 0.5 + 0.5
        assert dispatcher.done()  # the dispatcher ended although the listener did not
        assert any("did not stop within close_timeout" in r.message for r in caplog.records)
        # Only the abandoned delivery task, still inside the listener, is left.
        (left,) = [t for t in our_tasks() if not t.done()]
        assert left.get_name().endswith("-delivery")
        assert client.stats().listeners.abandoned == 1
    finally:
        release.set()
    await wait_until(lambda: all(t.done() for t in our_tasks()))
    assert listener_threads() == []


async def test_stats_count_errors_and_show_the_shape(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()

    def broken(event: ConfigChangeEvent) -> None:
        raise RuntimeError("listener bug")

    client.on_change(broken)
    client.on_change(events)
    await client.start()
    await publish_applied(server, client, {**BASE, "greeting": "x"})
    await events.next()
    stats = client.stats().listeners
    assert stats == ListenerStats(
        listeners=2, queue_depth=0, coalesced=0, abandoned=0, stalled=0, errors=1
    )
    assert stats.as_dict()["errors"] == 1


def test_client_stats_carry_listener_counters_once_given() -> None:
    stats = ClientStats("app", "default", "running", 1, None, None, {})
    assert "listeners" not in stats.as_dict()  # not collected: the summary is unchanged
    counted = dataclasses.replace(stats, listeners=ListenerRegistry().stats())
    assert counted.as_dict()["listeners"] == {
        "listeners": 0,
        "queue_depth": 0,
        "coalesced": 0,
        "abandoned": 0,
        "stalled": 0,
        "errors": 0,
    }


# ---------------------------------------------------------------------- SyncApolloClient


async def test_sync_client_hung_listener_does_not_stall_the_others(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync(listener_timeout=0.5)
    release = threading.Event()
    hung: list[ConfigChangeEvent] = []

    def blocks_once(event: ConfigChangeEvent) -> None:
        hung.append(event)
        if len(hung) == 1:
            release.wait(30)

    changes = Changes()
    cfg.on_change(blocks_once)
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start)
    try:
        for n in range(4):
            key = server.publish(APP, "application", {**BASE, "greeting": f"v{n}"})
            event = await changes.next()
            assert event.snapshot.release_key == key
            assert len(listener_threads()) <= 2
        assert len(hung) == 1
        assert cfg.stats().listeners.abandoned == 1
    finally:
        release.set()
    await wait_until(lambda: len(hung) == 2)
    assert hung[1].changes["greeting"].old_value == "v0"
    assert hung[1].changes["greeting"].new_value == "v3"
    assert hung[1].changes["greeting"].change_type is ChangeType.MODIFIED
    started = time.monotonic()
    await asyncio.to_thread(cfg.close)
    assert time.monotonic() - started < 2
    await wait_until(lambda: aioapollo_threads() == [])


async def test_sync_client_close_returns_while_a_plain_listener_is_stuck(
    server: ApolloTestServer,
    make_sync: Callable[..., SyncApolloClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "aioapollo")
    cfg = make_sync(close_timeout=0.5)  # the default listener_timeout: never reached here
    release = threading.Event()
    entered = threading.Event()

    def stuck(event: ConfigChangeEvent) -> None:
        entered.set()
        release.wait(30)

    cfg.on_change(stuck)
    await asyncio.to_thread(cfg.start)
    try:
        server.publish(APP, "application", {**BASE, "greeting": "x"})
        assert await asyncio.to_thread(entered.wait, 10)
        started = time.monotonic()
        await asyncio.to_thread(cfg.close)
        assert time.monotonic() - started < 0.5 + 1.0
        assert not cfg.polling
        assert listener_threads() == ["aioapollo-listener"]  # the stuck call's own thread
    finally:
        release.set()
    await wait_until(lambda: aioapollo_threads() == [])


# ------------------------------------------------------------- where each kind of listener runs


class WhereItRan:
    """Records, per listener, the thread it ran on and the event loop running there (if any)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, asyncio.AbstractEventLoop | None]] = {}
        self.done = threading.Event()

    def record(self, name: str) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.seen[name] = (threading.get_ident(), loop)

    async def coroutine(self, event: ConfigChangeEvent) -> None:
        self.record("coroutine")

    def plain(self, event: ConfigChangeEvent) -> None:  # registered last: runs last
        self.record("plain")
        self.done.set()


def thread_ident(name: str) -> int:
    (thread,) = [t for t in alive_threads() if t.name == name]
    assert thread.ident is not None
    return thread.ident


async def test_coroutine_listeners_run_on_the_clients_loop_plain_ones_on_its_listener_thread(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    where = WhereItRan()
    client.on_change(where.coroutine)
    client.on_change(where.plain)
    await client.start()
    server.publish(APP, "application", {**BASE, "timeout": "45"})
    assert await asyncio.to_thread(where.done.wait, 10)
    loop = asyncio.get_running_loop()  # the loop start() ran on
    assert where.seen["coroutine"] == (threading.get_ident(), loop)
    assert where.seen["plain"] == (thread_ident("aioapollo-listener"), None)
    assert where.seen["plain"][0] != threading.get_ident()


async def test_sync_client_coroutine_listeners_run_on_its_poller_threads_loop(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync()
    where = WhereItRan()
    cfg.on_change(where.coroutine)
    cfg.on_change(where.plain)
    await asyncio.to_thread(cfg.start)
    server.publish(APP, "application", {**BASE, "timeout": "45"})
    assert await asyncio.to_thread(where.done.wait, 10)
    poller_thread, poller_loop = where.seen["coroutine"]
    assert poller_thread == thread_ident(f"aioapollo-{APP}")
    assert poller_loop is not None and poller_loop is not asyncio.get_running_loop()
    assert where.seen["plain"] == (thread_ident("aioapollo-listener"), None)
    assert len({threading.get_ident(), poller_thread, where.seen["plain"][0]}) == 3


# ---------------------------------------------------------------------- timers per call


def _event(n: int) -> ConfigChangeEvent:
    from aioapollo import ConfigChange, NamespaceSnapshot, Source

    items = {"greeting": f"v{n}"}
    snap = NamespaceSnapshot(
        "application", "properties", items, release_key=f"r{n}", source=Source.REMOTE, fetched_at=0
    )
    change = ConfigChange("application", "greeting", f"v{n - 1}", f"v{n}", ChangeType.MODIFIED)
    return ConfigChangeEvent("application", {"greeting": change}, snap)


async def _deliver(
    registry: ListenerRegistry,
    events: list[ConfigChangeEvent],
    then: Callable[[], Awaitable[object]] = lambda: asyncio.sleep(0),
) -> None:
    """Run a dispatcher over ``events``; stop it once ``then()`` (awaited) returns."""
    from aioapollo._core.supervise import Progress

    registry.open()
    task = asyncio.create_task(registry.run(Progress("listeners")))
    try:
        for event in events:
            registry.emit(event)
            await registry.picked_up()
        await then()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_coroutine_listener_that_returns_without_suspending_arms_no_timer() -> None:
    registry = ListenerRegistry(timeout=30.0)
    heard: list[str] = []
    suspended: list[str] = []

    async def quick(event: ConfigChangeEvent) -> None:
        heard.append(event.changes["greeting"].new_value or "")

    async def awaits(event: ConfigChangeEvent) -> None:
        await asyncio.sleep(0)
        suspended.append(event.changes["greeting"].new_value or "")

    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    try:
        registry.add(quick)
        armed: list[list[float]] = []

        async def look() -> None:
            await asyncio.sleep(0)
            armed.append(list(timers))

        await _deliver(registry, [_event(1), _event(2)], look)
        assert heard == ["v1", "v2"] and armed == [[]]  # two calls, no timer at all
        registry.add(awaits)
        timers.clear()
        await _deliver(registry, [_event(3)], lambda: wait_until(lambda: suspended == ["v3"]))
        assert heard == ["v1", "v2", "v3"]
        # The one that suspended got its watch and its timeout, both from its call's start.
        watch, timeout = armed_for_call = timers[:2]
        assert watch - timeout == pytest.approx(registry._close_timeout), armed_for_call
    finally:
        del loop.call_at  # type: ignore[method-assign]
    assert registry.stats().abandoned == 0 and registry.stats().errors == 0


async def test_a_coroutine_listener_is_timed_from_its_call_not_from_its_first_await(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ListenerRegistry(timeout=0.2)
    cancelled: list[str] = []
    results: list[str] = []

    async def blocks_then_awaits(event: ConfigChangeEvent) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 (the loop held past the timeout before the first await)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(event.changes["greeting"].new_value or "")
            raise

    async def raises_after_awaiting(event: ConfigChangeEvent) -> None:
        await asyncio.sleep(0)
        results.append("resumed")
        raise KeyError("late")

    registry.add(blocks_then_awaits)
    registry.add(raises_after_awaiting)
    await _deliver(
        registry,
        [_event(1)],
        lambda: wait_until(lambda: results == ["resumed"] and registry.stats().errors == 1),
    )
    assert cancelled == ["v1"]  # cancelled at once at its first await: 0.3 s > 0.2 s
    assert registry.stats().abandoned == 1
    assert any("took longer than listener_timeout" in r.message for r in caplog.records)
