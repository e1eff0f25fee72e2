"""A bug in a background loop: the loop restarts, says so, and is never silently frozen.

Each test raises an unexpected exception at one of the loops' fault points (``_supervise.fault``:
before a long-poll request, after its reply, while applying a release, in the refresh, while
the dispatcher takes or delivers an event, before a cache write, in the sharing loop and in a
leader's sender), over real loopback against the test server, and checks that:

- the loop is restarted and a publish made afterwards still reaches the listeners;
- ``stats().degraded`` / ``degraded_loops`` name the loop from the crash until it completes an
  iteration, then clear; hooks see ``ErrorEvent("loop:<name>")``;
- five crashes in the window make the client unhealthy with one ERROR;
- no event is lost or repeated across a dispatcher restart;
- ``aclose()`` stops everything (``filterwarnings = error`` and ``assert_fully_closed``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aioapollo import (
    ApolloClient,
    ClientStats,
    ConfigChangeEvent,
    ErrorEvent,
    Hooks,
    LoopCrashedError,
    SyncApolloClient,
)
from aioapollo._core import supervise as _supervise
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import Changes
from ..conftest import APP, ClientFactory, Events, cache_of
from ._support import assert_fully_closed


class InjectedFault(Exception):
    """What a test raises at a fault point: it stands for a bug."""


class Faults:
    """Arms ``_supervise.FAULTS``: ``inject(point, times)`` raises there ``times`` times."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.fired: collections.Counter[str] = collections.Counter()

    def inject(
        self, point: str, times: int = 1, error: type[BaseException] = InjectedFault
    ) -> None:
        def fire() -> None:
            if self.fired[point] < times:
                self.fired[point] += 1
                raise error(f"injected at {point}")

        self._monkeypatch.setitem(_supervise.FAULTS, point, fire)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    # Restarts within milliseconds keep the tests short; the budget is the real one.
    monkeypatch.setattr(_supervise, "RESTART_INITIAL", 0.005)
    monkeypatch.setattr(_supervise, "RESTART_MAX", 0.02)
    return Faults(monkeypatch)


class Crashes(Hooks):
    """Loop crashes the hooks saw, each with its client's stats at that moment."""

    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []
        self.stats: list[ClientStats] = []
        self.client: ApolloClient | None = None
        self._changed = asyncio.Event()

    def on_error(self, event: ErrorEvent) -> None:
        if not event.operation.startswith("loop:"):
            return
        self.events.append(event)
        if self.client is not None:
            self.stats.append(self.client.stats())
        self._changed.set()

    async def wait(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def crashes() -> Crashes:
    return Crashes()


async def started(make_client: ClientFactory, crashes: Crashes, **kwargs: Any) -> ApolloClient:
    client = make_client(hooks=[crashes], **kwargs)
    crashes.client = client
    await client.start()
    return client


def assert_crashed(crashes: Crashes, loop: str, count: int) -> None:
    """``count`` crashes of ``loop``, each reported while the stats named it degraded."""
    assert [e.operation for e in crashes.events] == [f"loop:{loop}"] * count
    for event, stats in zip(crashes.events, crashes.stats, strict=True):
        assert event.kind == "LoopCrashedError:InjectedFault"
        assert isinstance(event.error, LoopCrashedError) and event.error.loop == loop
        assert isinstance(event.error.__cause__, InjectedFault)
        assert loop in stats.degraded_loops
        assert stats.degraded is not None
        assert f"the {loop} loop was restarted after a crash (InjectedFault)" in stats.degraded
        assert stats.healthy  # below the crash budget: degraded, not unhealthy


async def recovered(client: ApolloClient) -> None:
    """Wait until no loop is degraded any more (its next iteration completed)."""
    await wait_until(lambda: client.stats().degraded_loops == ())
    stats = client.stats()
    assert stats.degraded is None and stats.failing_loops == () and stats.healthy


def crash_logs(caplog: pytest.LogCaptureFixture, loop: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage().startswith(f"the {loop} loop of") and "crashed" in r.getMessage()
    ]


# ---------------------------------------------------------------------------- the long poll


@pytest.mark.parametrize("point", ["poll.request", "poll.reply"])
async def test_a_poller_that_crashes_restarts_and_still_delivers(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
    caplog: pytest.LogCaptureFixture,
    point: str,
) -> None:
    client = await started(make_client, crashes)
    client.on_change(events)
    faults.inject(point, times=2)
    await crashes.wait(2)
    assert_crashed(crashes, "poll", 2)
    server.publish(APP, "application", {"greeting": "after the crash"})
    event = await events.next()
    assert event.changes["greeting"].new_value == "after the crash"
    await recovered(client)
    logs = crash_logs(caplog, "poll")
    assert [r.levelno for r in logs] == [logging.WARNING] * 2
    assert all(r.exc_info is not None and r.exc_info[0] is InjectedFault for r in logs)
    await client.aclose()
    assert_fully_closed(client)


async def test_a_crash_while_applying_a_release_applies_it_once(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
) -> None:
    client = await started(make_client, crashes)
    client.on_change(events)
    faults.inject("fetch.apply")
    server.publish(APP, "application", {"greeting": "v1"})
    first = await events.next()  # applied by the restarted poller, the notification kept
    assert first.changes["greeting"].old_value == "hello"
    assert first.changes["greeting"].new_value == "v1"
    assert faults.fired["fetch.apply"] == 1
    assert_crashed(crashes, "poll", 1)  # not a "refetch failed": a bug in the poller
    server.publish(APP, "application", {"greeting": "v2"})
    second = await events.next()
    assert second.changes["greeting"].old_value == "v1"
    assert len(events.seen) == 2 and client.get_nowait("greeting") == "v2"
    await recovered(client)


# ---------------------------------------------------------------------------- the refresh


async def test_a_refresh_that_crashes_refreshes_again_at_once(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
) -> None:
    faults.inject("refresh")
    client = await started(make_client, crashes, refresh_interval=2.0)
    client.on_change(events)
    await crashes.wait(1)
    assert_crashed(crashes, "refresh", 1)
    before = len(server.requests)
    # Restarted, it refreshes at once (not after another interval) and so clears.
    async with asyncio.timeout(client.options.refresh_interval / 2):
        await recovered(client)
    assert any(r.path.startswith("/configs/") for r in server.requests[before:])
    server.publish(APP, "application", {"greeting": "after"})
    assert (await events.next()).changes["greeting"].new_value == "after"


# ---------------------------------------------------------------------------- the dispatcher


def assert_chain(seen: list[ConfigChangeEvent], namespace: str, key: str, *values: str) -> None:
    """The events of ``namespace`` lead from ``values[0]`` to ``values[-1]``, each starting
    where the previous one ended: nothing lost (it ends at the last value), nothing repeated
    (a repeat would start from the wrong value)."""
    held = values[0]
    for event in seen:
        if event.namespace == namespace:
            change = event.changes[key]
            assert change.old_value == held, (namespace, [e.changes for e in seen])
            assert change.new_value in values[1:]
            held = change.new_value
    assert held == values[-1]


@pytest.mark.parametrize("point", ["listeners.take", "listeners.deliver"])
async def test_a_dispatcher_that_crashes_loses_and_repeats_no_event(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
    point: str,
) -> None:
    server.publish(APP, "db", {"n": "0"})
    client = await started(make_client, crashes, namespaces=["application", "db"])
    plain: list[ConfigChangeEvent] = []
    client.on_change(events)  # a coroutine listener: on the loop
    client.on_change(plain.append)  # a plain function: on the listener thread
    faults.inject(point, times=3)
    for n in range(1, 4):
        server.publish(APP, "application", {"greeting": f"v{n}"})
        server.publish(APP, "db", {"n": str(n)})

    def caught_up(seen: list[ConfigChangeEvent]) -> bool:
        last = {e.namespace: e.snapshot for e in seen}
        return (
            "application" in last
            and "db" in last
            and (
                last["application"].get("greeting"),
                last["db"].get("n"),
            )
            == ("v3", "3")
        )

    await wait_until(lambda: caught_up(events.seen) and caught_up(plain), timeout=10)
    assert faults.fired[point] == 3  # every delivery attempt crashed until the faults ran out
    assert_crashed(crashes, "listeners", 3)
    for seen in (events.seen, plain):
        assert_chain(seen, "application", "greeting", "hello", "v1", "v2", "v3")
        assert_chain(seen, "db", "n", "0", "1", "2", "3")
    await recovered(client)
    listeners = client.stats().listeners
    assert listeners is not None and listeners.queue_depth == 0
    # And it goes on: the next release is delivered once, to both.
    server.publish(APP, "application", {"greeting": "v4"})
    await wait_until(
        lambda: all(seen[-1].snapshot.get("greeting") == "v4" for seen in (events.seen, plain))
    )
    await client.aclose()
    assert_fully_closed(client)
    assert_chain(events.seen, "application", "greeting", "hello", "v1", "v2", "v3", "v4")
    assert_chain(plain, "application", "greeting", "hello", "v1", "v2", "v3", "v4")


# ---------------------------------------------------------------------------- the cache writer


async def test_a_cache_writer_that_crashes_restarts_and_writes_the_release(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
    tmp_path: Path,
) -> None:
    client = await started(make_client, crashes)
    client.on_change(events)
    path = cache_of(tmp_path / "cache", server.url).path("application")
    await wait_until(path.exists)  # the first load's write
    faults.inject("cache.write")
    server.publish(APP, "application", {"greeting": "to disk"})
    await events.next()
    await crashes.wait(1)
    assert_crashed(crashes, "cache", 1)
    await wait_until(lambda: '"to disk"' in path.read_text())
    await recovered(client)


# ---------------------------------------------------------------------------- the budget


async def test_five_crashes_in_the_window_make_the_client_unhealthy_with_one_error(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await started(make_client, crashes)
    client.on_change(events)
    faults.inject("poll.request", times=_supervise.CRASH_BUDGET)
    await crashes.wait(_supervise.CRASH_BUDGET)
    at_budget = crashes.stats[-1]
    assert at_budget.failing_loops == ("poll",) and not at_budget.healthy
    assert at_budget.degraded is not None
    assert "the poll loop crashed 5 times in 600 s; retrying it every" in at_budget.degraded
    assert at_budget.as_dict()["failing_loops"] == ["poll"]
    assert at_budget.as_dict()["healthy"] is False
    assert all(s.healthy for s in crashes.stats[:-1])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert errors[0].getMessage().startswith("the poll loop of ApolloClient('test-app') crashed")
    # The loop keeps trying (at the cap) and works again: releases still arrive.
    server.publish(APP, "application", {"greeting": "still here"})
    assert (await events.next()).changes["greeting"].new_value == "still here"
    await wait_until(lambda: client.stats().degraded_loops == ())
    stats = client.stats()
    assert stats.failing_loops == ("poll",) and not stats.healthy  # 5 crashes in 600 s
    monkeypatch.setattr(_supervise, "CRASH_WINDOW", 0.0)  # ... until they age out
    assert client.stats().healthy and client.stats().degraded is None
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


# ---------------------------------------------------------------------------- cancellation


async def test_aclose_while_a_crashed_loop_waits_to_restart_is_not_a_crash(
    server: ApolloTestServer,
    make_client: ClientFactory,
    crashes: Crashes,
    faults: Faults,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_supervise, "RESTART_INITIAL", 60.0)
    client = await started(make_client, crashes)
    faults.inject("poll.request", times=1_000_000)
    await crashes.wait(1)
    async with asyncio.timeout(client.options.close_timeout):
        await client.aclose()  # the poller sleeps 30-60 s before its restart: cancelled
    assert_fully_closed(client)
    assert len(crashes.events) == 1 and faults.fired["poll.request"] == 1
    assert not any("did not stop" in r.getMessage() for r in caplog.records)


async def test_a_stray_cancelled_error_inside_a_loop_is_a_crash(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    crashes: Crashes,
    faults: Faults,
) -> None:
    client = await started(make_client, crashes)
    client.on_change(events)
    faults.inject("poll.request", error=asyncio.CancelledError)
    await crashes.wait(1)
    assert crashes.events[0].kind == "LoopCrashedError:CancelledError"
    server.publish(APP, "application", {"greeting": "after"})
    assert (await events.next()).changes["greeting"].new_value == "after"
    await recovered(client)


# ---------------------------------------------------------------------------- SyncApolloClient


async def test_sync_client_stats_show_a_failing_loop(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient], faults: Faults
) -> None:
    cfg = make_sync()
    changes = Changes()
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start)
    faults.inject("poll.request", times=_supervise.CRASH_BUDGET)
    await wait_until(lambda: cfg.stats().failing_loops == ("poll",), timeout=10)
    stats = cfg.stats()
    assert not stats.healthy and stats.state == "running"
    assert stats.degraded is not None and "the poll loop crashed 5 times" in stats.degraded
    server.publish(APP, "application", {"greeting": "sync"})
    assert (await changes.next()).changes["greeting"].new_value == "sync"
    await wait_until(lambda: cfg.stats().degraded_loops == ())
    assert cfg.stats().failing_loops == ("poll",)


# ---------------------------------------------------------------------------- sharing


@pytest.mark.parametrize(
    ("point", "where", "loop"),
    [
        ("share.heartbeat", "leader", "share"),
        ("share.send", "leader", "share-send"),
        ("share.follow", "follower", "share"),
    ],
)
async def test_a_sharing_loop_that_crashes_restarts_and_the_group_still_hears_releases(
    server: ApolloTestServer,
    make_client: ClientFactory,
    faults: Faults,
    tmp_path: Path,
    point: str,
    where: str,
    loop: str,
) -> None:
    hooks = [Crashes() for _ in range(3)]
    clients = [make_client(share_poll=True, share_dir=tmp_path / "share", hooks=[h]) for h in hooks]
    for client, hook in zip(clients, hooks, strict=True):
        hook.client = client
        await client.start()
    leader = clients[0]
    await wait_until(lambda: leader.stats().followers == 2)
    await wait_until(lambda: all(c.stats().healthy for c in clients))
    heard = [Events.of(c) for c in clients]
    faults.inject(point)
    # A release while it crashes (a sender crashes sending it; the others within a heartbeat)
    server.publish(APP, "application", {"greeting": "during"})
    for h in heard:
        assert (await h.next()).snapshot.get("greeting") == "during"
    await wait_until(lambda: sum(len(h.events) for h in hooks) == 1, timeout=10)
    (crashed,) = [i for i, h in enumerate(hooks) if h.events]
    assert (crashed == 0) == (where == "leader")
    assert_crashed(hooks[crashed], loop, 1)
    server.publish(APP, "application", {"greeting": "after the crash"})
    for h in heard:
        assert (await h.next()).snapshot.get("greeting") == "after the crash"
    await wait_until(lambda: all(c.stats().degraded_loops == () for c in clients))
    await wait_until(lambda: all(c.stats().healthy for c in clients))
    assert [c.stats().role for c in clients] == ["leader", "follower", "follower"]
    assert all(h.queue.empty() for h in heard)  # heard once each
    for client in reversed(clients):
        await client.aclose()
    for client in clients:
        assert_fully_closed(client)
