"""Listeners that misbehave: raise, block a thread forever, or refuse to be cancelled.

Polling goes on regardless (new releases are applied and readable), the other listeners still
get their events, and ``aclose()`` returns within ``close_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from aioapollo import ConfigChangeEvent
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, ClientFactory, Events
from ._support import client_sockets


async def test_listener_that_raises_every_time_is_logged_and_others_still_run(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()

    def broken(event: ConfigChangeEvent) -> None:  # a plain function: runs in a thread
        raise KeyError("listener bug")

    client.on_change(broken)
    client.on_change(events)
    await client.start()
    for n in range(3):
        server.publish(APP, "application", {"greeting": f"v{n}"})
        assert (await events.next()).changes["greeting"].new_value == f"v{n}"
    failures = [r for r in caplog.records if "change listener" in r.message]
    assert len(failures) == 3
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in failures)
    assert "broken" in failures[0].message


async def test_plain_listener_blocked_forever_in_its_thread(
    server: ApolloTestServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(close_timeout=1.0)
    release = threading.Event()
    entered = threading.Event()

    def stuck(event: ConfigChangeEvent) -> None:
        entered.set()
        release.wait(60)  # a deadlocked listener (released at the end of the test)

    client.on_change(stuck)
    await client.start()
    try:
        server.publish(APP, "application", {"greeting": "one"})
        await wait_until(lambda: entered.is_set())
        for n in range(3):  # polling and applying go on while the listener is stuck
            server.publish(APP, "application", {"greeting": f"more-{n}"})
            await wait_until(lambda n=n: client.get_nowait("greeting") == f"more-{n}")
        started = time.monotonic()
        await client.aclose()
        assert time.monotonic() - started < 1.0 + 1.0  # within close_timeout (and then some)
        await wait_until(lambda: client_sockets(server.port) == 0)
    finally:
        release.set()


async def test_listener_that_swallows_cancellation_cannot_hold_up_aclose(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "aioapollo")
    client = make_client(close_timeout=0.5)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def stubborn(event: ConfigChangeEvent) -> None:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation: the worst a listener can do

    client.on_change(stubborn)
    await client.start()
    try:
        server.publish(APP, "application", {"greeting": "one"})
        async with asyncio.timeout(5):
            await entered.wait()
        server.publish(APP, "application", {"greeting": "two"})
        await wait_until(lambda: client.get_nowait("greeting") == "two")
        started = time.monotonic()
        await client.aclose()
        took = time.monotonic() - started
        assert 0.4 <= took < 3, took  # waited close_timeout, then gave up on the listener
        assert any("did not stop within close_timeout" in r.message for r in caplog.records)
        await wait_until(lambda: client_sockets(server.port) == 0)
    finally:
        release.set()
        await asyncio.sleep(0)  # let the stubborn listener finish
