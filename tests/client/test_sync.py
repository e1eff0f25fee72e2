"""SyncApolloClient: blocking API, its poller thread, and restarting it in forked children."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aioapollo import (
    ClientStateError,
    ConfigChangeEvent,
    NamespaceNotFoundError,
    NamespaceUnavailableError,
    Source,
    SyncApolloClient,
)
from aioapollo._runtime import process as _process
from aioapollo._runtime.threads import alive_threads
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import (
    STEP_S,
    Changes,
    Child,
    aioapollo_threads,
    mp_fork_round,
    poller_threads,
    wait_polling,
)
from ..conftest import APP

CHILDREN = 3

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = [
    pytest.mark.workers,
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


async def test_plain_process_polls_in_a_daemon_thread_and_fires_sync_listeners(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync()
    changes = Changes()
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start)
    assert cfg.polling and cfg.sources["application"] is Source.REMOTE
    assert cfg.get("greeting") == "hello" and cfg.get_int("timeout") == 30
    assert cfg.get("missing", "dflt") == "dflt"
    (thread,) = [t for t in alive_threads() if t.name == f"aioapollo-{APP}"]
    server.publish(APP, "application", {"greeting": "bonjour", "timeout": "45"})
    event = await changes.next()
    assert event.changed_keys == {"greeting", "timeout"}
    assert cfg.get("greeting") == "bonjour" and cfg.snapshot().get_int("timeout") == 45
    await asyncio.to_thread(cfg.close)
    assert not thread.is_alive() and not cfg.polling
    assert cfg.get("greeting") == "bonjour"  # the last values stay readable
    # The plain listeners' thread was told to retire at close and ends on its own (a daemon
    # that never holds up close() or the interpreter's exit).
    await wait_until(lambda: aioapollo_threads() == [])


async def test_context_manager_and_misuse_errors(
    make_sync: Callable[..., SyncApolloClient],
) -> None:
    cfg = make_sync(namespaces=["application", "db.json"], allow_empty=True)
    with pytest.raises(ClientStateError, match="call start"):
        cfg.get("greeting")
    with pytest.raises(NamespaceNotFoundError):
        cfg.get("greeting", namespace="nope")
    with pytest.raises(NamespaceNotFoundError):
        cfg.add_listener(lambda event: None, namespaces=["nope"])
    entered = await asyncio.to_thread(cfg.__enter__)
    assert entered is cfg
    with pytest.raises(ClientStateError, match="already started"):
        await asyncio.to_thread(cfg.start)
    assert cfg.get_json("anything", {"a": 1}, namespace="db.json") == {"a": 1}
    await asyncio.to_thread(cfg.__exit__, None, None, None)
    await asyncio.to_thread(cfg.close)  # idempotent
    with pytest.raises(ClientStateError, match="reopen"):
        await asyncio.to_thread(cfg.start)
    assert "polling=False" in repr(cfg) and APP in repr(cfg)


async def test_start_raises_what_the_load_raised_and_can_be_retried(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient], tmp_path: Path
) -> None:
    cfg = make_sync(app_id="unpublished", cache_dir=tmp_path / "empty")
    with pytest.raises(NamespaceUnavailableError):
        await asyncio.to_thread(cfg.start)
    assert not cfg.polling and aioapollo_threads() == []
    server.publish("unpublished", "application", {"k": "v"})
    await asyncio.to_thread(cfg.start)
    assert cfg.get("k") == "v" and cfg.polling


async def test_preforking_master_loads_without_leaving_a_thread(
    make_sync: Callable[..., SyncApolloClient],
) -> None:
    cfg = make_sync()
    await asyncio.to_thread(cfg.start, prefork=True)
    assert aioapollo_threads() == []
    assert not cfg.polling
    assert cfg.get("greeting") == "hello"  # a master's reads work; nothing starts here
    assert cfg.get_int("timeout") == 30
    assert aioapollo_threads() == [] and not cfg.polling


def child_body(cfg: SyncApolloClient, changes: Changes, *, read_first: bool = False) -> Any:
    def body(report: Callable[[dict[str, Any]], None]) -> None:
        if read_first:  # no fork hook ran: the first read must start the poller
            assert not cfg.polling
            assert cfg.get("greeting") == "hello"
        threads = poller_threads()
        wait_polling(cfg)  # loaded before the publish: it sees it as a change
        report({"ready": os.getpid(), "threads": threads})
        event = changes.queue.get(timeout=STEP_S)
        report(
            {
                "pid": os.getpid(),
                "value": cfg.get("greeting"),
                "event": event.snapshot.get("greeting"),
                "polling": cfg.polling,
            }
        )
        cfg.close()

    return body


async def test_children_of_a_preforking_master_each_start_their_own_poller(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync()
    changes = Changes()
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start, prefork=True)
    assert cfg.get("greeting") == "hello"
    children = [Child(child_body(cfg, changes)) for _ in range(CHILDREN)]
    for child in children:
        ready = await child.next()
        assert ready["ready"] == child.pid and ready["threads"] == [f"aioapollo-{APP}"]
    server.publish(APP, "application", {"greeting": "hola"})
    reports = [await child.next() for child in children]
    assert [await child.exit_code() for child in children] == [0] * CHILDREN
    assert sorted(r["pid"] for r in reports) == sorted(c.pid for c in children)
    assert all(r["value"] == r["event"] == "hola" and r["polling"] for r in reports)
    assert cfg.get("greeting") == "hello"  # the master never polls
    assert aioapollo_threads() == []


async def test_a_child_forked_without_hooks_starts_polling_on_its_first_read(
    server: ApolloTestServer,
    make_sync: Callable[..., SyncApolloClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uWSGI forks in C and may run no hook at all: the read path notices the new pid."""
    cfg = make_sync()
    changes = Changes()
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start, prefork=True)
    monkeypatch.setattr(_process, "_tracked", type(_process._tracked)())  # no hook resets it
    child = Child(child_body(cfg, changes, read_first=True))
    assert (await child.next())["threads"] == [f"aioapollo-{APP}"]
    server.publish(APP, "application", {"greeting": "ciao"})
    report = await child.next()
    assert await child.exit_code() == 0
    assert report["value"] == report["event"] == "ciao" and report["polling"]


def _mp_child(cfg: SyncApolloClient, results: Any) -> None:  # pragma: no cover - child
    changes = Changes()
    cfg.on_change(changes)
    threads = poller_threads()
    wait_polling(cfg)
    results.put(("ready", os.getpid(), threads))
    changes.queue.get(timeout=STEP_S)
    results.put(("changed", os.getpid(), cfg.get("greeting")))
    cfg.close()


async def test_multiprocessing_fork_children_of_a_polling_process_keep_updating(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync()
    await asyncio.to_thread(cfg.start)  # a plain process: its poller thread runs here
    ready, changed, pids = await mp_fork_round(
        _mp_child, cfg, CHILDREN, lambda: server.publish(APP, "application", {"greeting": "hej"})
    )
    assert sorted(ready) == sorted(("ready", pid, [f"aioapollo-{APP}"]) for pid in pids)
    assert sorted(changed) == sorted(("changed", pid, "hej") for pid in pids)
    await wait_until(lambda: cfg.get("greeting") == "hej", timeout=10)  # the parent polls too


async def test_the_hot_read_path_makes_no_system_call(
    make_sync: Callable[..., SyncApolloClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """get() on a polling client is one flag check and a dict lookup: no os.getpid() per read
    (a system call that costs several times the lookup; see bench/sync_get.py)."""
    cfg = make_sync()
    await asyncio.to_thread(cfg.start)
    me, real_getpid = threading.get_ident(), os.getpid
    calls: list[int] = []

    def counting_getpid() -> int:
        if threading.get_ident() == me:
            calls.append(1)
        return real_getpid()

    monkeypatch.setattr(os, "getpid", counting_getpid)
    values = [cfg.get("greeting"), cfg.get("nope", "d"), cfg.get_int("timeout")]
    monkeypatch.undo()
    assert values == ["hello", "d", 30]
    assert calls == []


@pytest.mark.parametrize("kind", ["sync", "coroutine"])
async def test_a_listener_may_close_the_client(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient], kind: str
) -> None:
    cfg = make_sync()
    closed = Changes()

    def close_it(event: ConfigChangeEvent) -> None:
        cfg.close()
        closed(event)

    async def close_it_async(event: ConfigChangeEvent) -> None:
        close_it(event)

    cfg.on_change(close_it if kind == "sync" else close_it_async)
    await asyncio.to_thread(cfg.start)
    (thread,) = [t for t in alive_threads() if t.name == f"aioapollo-{APP}"]
    server.publish(APP, "application", {"greeting": "bye"})
    await closed.next()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive() and not cfg.polling
    assert cfg.get("greeting") == "bye"


async def test_process_signals_never_land_on_the_clients_threads(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    """Servers handle SIGHUP/SIGTERM in C (uWSGI exits from its handler): on one of our
    threads that could hang a worker, so the poller and its listener threads block them."""
    cfg = make_sync()
    masks: list[set[signal.Signals]] = []

    def record_mask(event: ConfigChangeEvent) -> None:
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    changes = Changes()
    cfg.on_change(record_mask)
    cfg.on_change(changes)
    await asyncio.to_thread(cfg.start)
    server.publish(APP, "application", {"greeting": "psst"})
    await changes.next()
    assert {signal.SIGHUP, signal.SIGTERM, signal.SIGINT} <= masks[0]
    assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # not ours
