"""Cancellation of ``start()`` and of the poller at every await point: nothing is leaked.

"Every await point" is reached by sweeping: the operation is started, the event loop is let
run for N iterations, then it is cancelled; N goes 0, 1, 2, ... until the operation finishes
by itself. Each stop is checked for leftover tasks, HTTP sessions and open sockets (read from
the kernel's socket table, so a socket leaked by any layer shows).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ClientState
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, FAST, Events, cache_of
from ._support import aioapollo_tasks, assert_fully_closed, client_sockets, sleeping_for

#: Bounds the sweeps; a start over loopback takes a few dozen loop iterations.
MAX_STEPS = 400


async def _step(task: asyncio.Task[None], steps: int) -> None:
    for _ in range(steps):
        if task.done():
            return
        await asyncio.sleep(0)


def _client_side(tasks: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Leaves out the test server's request handlers, which share this event loop."""
    return {t for t in tasks if not t.get_coro().__qualname__.startswith("RequestHandler.")}


async def _no_leaks(server: ApolloTestServer) -> None:
    assert aioapollo_tasks() == []
    # Closing a session closes its sockets at the next loop iteration or two.
    await wait_until(lambda: client_sockets(server.port) == 0, timeout=5)


@pytest.mark.parametrize("cache", [True, False], ids=["with-cache", "without-cache"])
async def test_cancel_start_at_every_await_point(
    server: ApolloTestServer, tmp_path: Path, cache: bool
) -> None:
    server.publish(APP, "db.json", '{"pool": 5}')
    baseline = set(asyncio.all_tasks())
    cancelled_at: list[int] = []
    for steps in range(MAX_STEPS):
        client = ApolloClient(
            APP,
            namespaces=["application", "db.json"],
            config_server=server.url,
            cache_dir=tmp_path / "cache" if cache else None,
            **FAST,
        )
        task = asyncio.create_task(client.start())
        await _step(task, steps)
        if task.done():
            await task  # finished by itself: the sweep is complete
            assert client.state is ClientState.RUNNING
            await client.aclose()
            assert_fully_closed(client)
            break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled_at.append(steps)
        # Back to CREATED, nothing running, nothing open; and it can still be started.
        assert client.state is ClientState.CREATED
        assert_fully_closed(client)
        assert _client_side(set(asyncio.all_tasks()) - baseline) <= {asyncio.current_task()}
        await _no_leaks(server)
        if steps % 7 == 3:
            async with asyncio.timeout(10):
                await client.start()
            assert await client.get("greeting") == "hello"
            await client.aclose()
            assert_fully_closed(client)
            await _no_leaks(server)
    else:
        raise AssertionError(f"start() never finished within {MAX_STEPS} loop iterations")
    assert len(cancelled_at) >= 8, cancelled_at  # it really was cancelled at many points
    gc.collect()  # an unclosed session would warn here (and warnings are errors)


async def test_cancel_start_while_each_request_is_in_flight(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    """Cancelling while the server holds each kind of request: discovery, then /configs."""
    for path in ("/services/config", f"/configs/{APP}/default/application"):
        fault = server.inject(path, delay=5)
        client = ApolloClient(APP, meta_server=server.url, cache_dir=tmp_path, **FAST)
        task = asyncio.create_task(client.start())
        async with asyncio.timeout(5):
            await server.wait_for_request(lambda r, f=fault: r.fault is f)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.state is ClientState.CREATED
        assert_fully_closed(client)
        await _no_leaks(server)
        server.clear_faults()


async def test_cancel_the_poller_at_every_await_point(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    """aclose() at every point of a notify-refetch-save-dispatch round (and in between)."""
    rounds = 0
    cache_file = cache_of(tmp_path, server.url).path("application")
    for steps in range(MAX_STEPS):
        events = Events()
        client = ApolloClient(APP, config_server=server.url, cache_dir=tmp_path, **FAST)
        client.on_change(events)
        await client.start()
        async with asyncio.timeout(5):
            await server.wait_for_polls(1)
        server.publish(APP, "application", {"greeting": f"v{steps}"})
        # Let the poll answer, the refetch, the cache write and the dispatch progress N steps.
        for _ in range(steps):
            await asyncio.sleep(0)
        # Complete once the listener ran and the cache file was written (in a thread).
        delivered = (
            bool(events.seen) and cache_file.exists() and f'"v{steps}"' in cache_file.read_text()
        )
        async with asyncio.timeout(FAST["close_timeout"] + 1):
            await client.aclose()
        assert client.state is ClientState.CLOSED
        assert_fully_closed(client)
        await _no_leaks(server)
        # Whatever was applied stays readable after close.
        assert client.get_nowait("greeting") in ("hello", f"v{steps - 1}", f"v{steps}")
        rounds += 1
        if delivered:
            break  # the whole round completed before the cancel: the sweep is complete
    assert rounds >= 8, rounds
    gc.collect()


async def test_cancel_the_poller_during_backoff_and_a_hung_poll(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    client = ApolloClient(APP, config_server=server.url, cache_dir=tmp_path, **FAST)
    await client.start()
    hung = server.inject("/notifications/v2", hang=True)
    async with asyncio.timeout(5):
        await server.wait_for_request(lambda r: r.fault is hung)
    async with asyncio.timeout(3):
        await client.aclose()
    assert_fully_closed(client)
    await _no_leaks(server)

    options = {**FAST, "backoff_initial": 30.0, "backoff_max": 60.0}
    client = ApolloClient(APP, config_server=server.url, cache_dir=tmp_path, **options)
    await client.start()
    (poller,) = [t for t in aioapollo_tasks() if t.get_name().startswith("aioapollo-poll-")]
    failed = server.inject("/notifications/v2", status=503)
    async with asyncio.timeout(5):
        await server.wait_for_request(lambda r: r.fault is failed and r.status == 503)
    # The poller goes to sleep for its first backoff, drawn from [15, 30] s ...
    await wait_until(lambda: sleeping_for(poller) is not None)
    assert 15.0 <= (sleeping_for(poller) or 0.0) <= 30.0, sleeping_for(poller)
    # ... and aclose() cuts that sleep short, with nothing left behind.
    async with asyncio.timeout(3):
        await client.aclose()
    assert poller.cancelled()
    assert_fully_closed(client)
    await _no_leaks(server)
    # It slept until the end: the refused poll was its last one.
    assert [r for r in server.requests if r.path == "/notifications/v2"][-1].fault is failed
