"""ApolloClient across a real fork(): children restart it in their own loop and keep updating."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from aioapollo import ApolloClient, ClientState, ConfigChangeEvent, Source
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import STEP_S, Child, mp_fork_round
from ..conftest import ClientFactory

CHILDREN = 3

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = [
    pytest.mark.workers,
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


async def test_children_restart_a_client_started_in_the_parent(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.start()
    heard: list[str] = []
    lock = threading.Lock()

    def listener(event: ConfigChangeEvent) -> None:  # a sync listener: runs in a thread
        with lock:
            heard.append(event.snapshot.get("greeting"))

    client.on_change(listener)

    async def child(report: Callable[[dict[str, Any]], None]) -> None:
        assert client.state is ClientState.FORKED
        assert client.sources["application"] is Source.INHERITED
        assert client.get_nowait("greeting") == "hello"  # warm data before start()
        changed = asyncio.Event()

        async def on_change(event: ConfigChangeEvent) -> None:
            changed.set()

        client.on_change(on_change)
        await client.start()
        assert client.state is ClientState.RUNNING
        assert client.sources["application"] is Source.REMOTE
        report({"ready": os.getpid()})
        await changed.wait()
        await client.aclose()
        report({"pid": os.getpid(), "value": client.get_nowait("greeting"), "heard": heard})

    children = [Child.running(child) for _ in range(CHILDREN)]
    for c in children:
        assert (await c.next())["ready"] == c.pid
    # Every child has loaded before the publish, so each one sees it as a change.
    server.publish("test-app", "application", {"greeting": "bonjour", "timeout": "30"})
    reports = [await c.next() for c in children]
    assert [await c.exit_code() for c in children] == [0] * CHILDREN
    assert {r["pid"] for r in reports} == {c.pid for c in children}
    assert all(r["value"] == "bonjour" and r["heard"] == ["bonjour"] for r in reports)
    # The parent's own poller is untouched by its children.
    await wait_until(lambda: heard == ["bonjour"], timeout=10)  # set in a listener thread
    assert await client.get("greeting") == "bonjour"


async def test_a_change_between_fork_and_start_reaches_the_childs_listeners(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.start()
    published = server.publish("test-app", "application", {"greeting": "moved on"})

    async def child(report: Callable[[dict[str, Any]], None]) -> None:
        seen = asyncio.Queue[ConfigChangeEvent]()
        client.on_change(seen.put)  # a coroutine function once bound: awaited in the loop
        await client.start()
        event = await seen.get()
        report({"value": event.snapshot.get("greeting"), "release": event.snapshot.release_key})
        await client.aclose()

    c = Child.running(child)
    assert await c.next() == {"value": "moved on", "release": published}
    assert await c.exit_code() == 0


async def test_a_child_that_never_starts_warns_once_how_to_fix_it(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    await client.start()

    async def child(report: Callable[[dict[str, Any]], None]) -> None:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("aioapollo").addHandler(handler)
        values = [client.get_nowait("greeting") for _ in range(3)]
        values.append(await client.get("greeting"))
        messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
        report({"values": values, "warnings": messages})

    c = Child.running(child)
    got = await c.next()
    assert await c.exit_code() == 0
    assert got["values"] == ["hello"] * 4
    assert len(got["warnings"]) == 1
    assert "start()" in got["warnings"][0] and str(c.pid) in got["warnings"][0]


def _mp_child(client: ApolloClient, results: Any) -> None:  # pragma: no cover - child
    async def main() -> None:
        changed = asyncio.Event()

        async def on_change(event: ConfigChangeEvent) -> None:
            changed.set()

        client.on_change(on_change)
        await client.start()
        results.put(("ready", os.getpid()))
        await asyncio.wait_for(changed.wait(), STEP_S)
        results.put(("changed", os.getpid(), client.get_nowait("greeting")))
        await client.aclose()

    asyncio.run(main())


async def test_multiprocessing_fork_children_keep_updating(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.start()
    ready, changed, pids = await mp_fork_round(
        _mp_child,
        client,
        CHILDREN,
        lambda: server.publish("test-app", "application", {"greeting": "hola"}),
    )
    assert sorted(g[1] for g in ready) == sorted(pids)  # each one loaded
    assert sorted(changed) == sorted(("changed", pid, "hola") for pid in pids)
