"""The background cache writer: off the loop, latest release wins, failures heal, listeners first.

Every test runs the client's real disk cache (a subclass that notes its calls) on real files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, ClientOptions, ConfigChangeEvent, Source, SyncApolloClient
from aioapollo._apollo.cache import DiskCache
from aioapollo._core.cachewriter import CacheWriter
from aioapollo._core.engine import Engine
from aioapollo._hooks import HookSet
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, FAST, ClientFactory, Events, cache_of


class Recorder(DiskCache):
    """A client's real disk cache that notes each call, and any made on an event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: list[float] = []  # monotonic time of each save() call
        self.saved: list[str | None] = []  # release keys of the saves that did not raise
        self.on_loop: list[str] = []  # methods called from a thread running an event loop
        self.entered = threading.Event()  # a save() has started
        self.go = threading.Event()  # save() waits for it (set: no wait)
        self.go.set()
        self.heard: set[str | None] | None = None  # releases the listeners have been given
        self.unheard: list[str | None] = []  # releases written before any listener heard

    @classmethod
    def of(cls, client: ApolloClient | SyncApolloClient | Engine) -> Recorder:
        """The recorder ``client`` made for its cache (see the ``recorders`` fixture)."""
        found = [cache for options, cache in _made if options is client.options]
        assert len(found) == 1, "built before the recorders fixture, or without a cache"
        return found[0]

    def _check(self, what: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a plain thread: fine
        self.on_loop.append(what)

    def load(self, namespace: str) -> Any:
        self._check("load")
        return super().load(namespace)

    def holds(self, namespace: str, release_key: str | None) -> bool:
        self._check("holds")
        return super().holds(namespace, release_key)

    def save(self, namespace: str, release_key: str | None, items: Any, now: float) -> bool:
        self._check("save")
        self.attempts.append(time.monotonic())
        self.entered.set()
        assert self.go.wait(30), "the test never let the write go on"
        if self.heard is not None and release_key not in self.heard:
            self.unheard.append(release_key)
        written = super().save(namespace, release_key, items, now)
        self.saved.append(release_key)
        return written


#: (options, recorder) of every cache built while the ``recorders`` fixture is active.
_made: list[tuple[ClientOptions, Recorder]] = []


@pytest.fixture(autouse=True)
def recorders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every client built in these tests writes through a :class:`Recorder`: the one its
    options give (the client's real cache, in its real place), found by ``Recorder.of``."""
    build = DiskCache.for_options.__func__  # type: ignore[attr-defined]

    def for_options(cls: type[DiskCache], options: ClientOptions) -> DiskCache | None:
        cache = build(Recorder, options)
        if cache is not None:
            _made.append((options, cache))
        return cache  # type: ignore[no-any-return]

    monkeypatch.setattr(DiskCache, "for_options", classmethod(for_options))
    yield
    _made.clear()


# ---------------------------------------------------------------------------- latest wins


async def test_a_burst_of_100_releases_costs_two_writes_the_last_one_the_latest(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()
    cache = Recorder.of(client)
    cache.go.clear()  # the first write (start's release) takes as long as the burst
    client.on_change(events)
    await client.start()
    first = client.snapshot().release_key
    await wait_until(cache.entered.is_set)
    for i in range(100):
        last = server.publish(APP, "application", {"greeting": f"v{i}"})
        await events.next()  # the client applied every one of them
    assert client.snapshot().release_key == last
    cache.go.set()
    await wait_until(lambda: len(cache.saved) == 2)
    await client.aclose()
    assert cache.saved == [first, last]
    stored = cache.load("application")
    assert stored is not None and stored.release_key == last
    assert stored.items["greeting"] == "v99"


async def test_releases_submitted_without_a_pause_are_written_once(tmp_path: Path) -> None:
    cache = Recorder(tmp_path, APP, "default", "a" * 64)
    writer = CacheWriter(cache, name=APP)
    writer.open()
    for i in range(100):
        writer.submit("application", f"r{i}", {"k": str(i)}, 0.0)
    await writer.aclose(5.0)
    assert cache.saved == ["r99"]
    assert writer.pending == ()


async def test_a_write_that_succeeds_in_passing_does_not_wake_the_event_loop(
    tmp_path: Path,
) -> None:
    cache = Recorder(tmp_path, APP, "default", "a" * 64)
    writer = CacheWriter(cache, name=APP)
    writer.open()
    loop = asyncio.get_running_loop()
    wakes: list[object] = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        wakes.append(callback)
        return call_soon_threadsafe(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        for n in range(3):
            writer.submit("application", f"r{n}", {"k": str(n)}, 0.0)
            await wait_until(lambda n=n: cache.saved == [f"r{i}" for i in range(n + 1)])
            await wait_until(lambda: not writer._busy)  # the thread is done with it
        assert wakes == []  # three releases written, the loop never woken for them
    finally:
        del loop.call_soon_threadsafe  # type: ignore[method-assign]
    await writer.aclose(5.0)
    stored = cache.load("application")
    assert stored is not None and stored.release_key == "r2"


# ---------------------------------------------------------------------------- failures


async def test_a_failing_cache_retries_with_doubling_delays_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    root = tmp_path / "cache"
    root.write_text("")  # the cache directory is a file: every write fails (root or not)
    cache = Recorder(root, APP, "default", "a" * 64)
    writer = CacheWriter(cache, retry_initial=0.05, retry_max=0.2, name=APP)
    writer.open()
    writer.submit("application", "r1", {"k": "1"}, 0.0)
    await wait_until(lambda: len(cache.attempts) >= 5)
    assert writer.failing and writer.retry_delay == 0.2  # 0.05, 0.1, 0.2, then capped
    gaps = [b - a for a, b in zip(cache.attempts, cache.attempts[1:], strict=False)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=False):
        assert gap >= delay - 0.002, (gaps, delay)
    writer.submit("application", "r2", {"k": "2"}, 0.0)  # a newer release replaces it
    root.unlink()  # the disk is back
    await wait_until(lambda: cache.saved == ["r2"], timeout=10)
    assert not writer.failing and writer.retry_delay == 0.0
    writer.submit("application", "r3", {"k": "3"}, 0.0)  # written at once again
    await wait_until(lambda: cache.saved == ["r2", "r3"])
    await writer.aclose(5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.message.split(" (")[0] for r in warnings] == [
        f"cannot write the config cache in {cache.directory}"
    ]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "written again" in infos[0].message


async def test_a_client_whose_cache_failed_writes_it_again_once_the_disk_is_back(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aioapollo")
    root = tmp_path / "cache"
    root.write_text("")  # a file where the cache directory should be
    client = make_client(cache_dir=root)
    client.on_change(events)
    await client.start()
    await wait_until(lambda: any("memory only" in r.message for r in caplog.records))
    server.publish(APP, "application", {"greeting": "while failing"})
    await events.next()
    root.unlink()
    cache = cache_of(root, server.url)
    # Retried after 1 s (the default first delay): the newest release lands.
    await wait_until(cache.path("application").exists, timeout=10)
    server.publish(APP, "application", {"greeting": "after"})
    await events.next()
    await wait_until(lambda: '"after"' in cache.path("application").read_text())
    await client.aclose()
    messages = [r.message for r in caplog.records]
    assert sum("memory only" in m for m in messages) == 1
    assert sum("written again" in m for m in messages) == 1


# ---------------------------------------------------------------------------- ordering


def make_engine(server: ApolloTestServer, tmp_path: Path, **options: Any) -> Engine:
    """The engine a client of ``APP`` would run, built directly (the unit that wires the
    listener dispatcher to the cache writer); cache in ``tmp_path/cache`` unless given."""
    options.setdefault("cache_dir", tmp_path / "cache")
    opts = ClientOptions.build(APP, config_server=server.url, **(FAST | options))
    return Engine(opts, HookSet(None), lambda live: None)


async def test_listeners_hear_of_a_release_before_its_cache_write(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    """The write of a release waits until the dispatcher took its event, even when the
    dispatcher is still busy with the previous event's listener."""
    engine = make_engine(server, tmp_path)
    cache = Recorder.of(engine)
    heard: set[str | None] = set()
    busy = asyncio.Event()  # set: the first listener call may return

    async def listener(event: ConfigChangeEvent) -> None:
        heard.add(event.snapshot.release_key)
        if len(heard) == 1:
            await busy.wait()

    engine.listeners.add(listener)
    await engine.start(share_poll=False)
    try:
        await wait_until(lambda: len(cache.saved) == 1)  # start's own release (no event)
        cache.heard = heard
        one = server.publish(APP, "application", {"greeting": "one"})
        await wait_until(lambda: one in cache.saved)  # heard (the listener now blocks), written
        two = server.publish(APP, "application", {"greeting": "two"})
        # applied, its event queued
        await wait_until(lambda: engine.store.values["application"].get("greeting") == "two")
        writer = engine.writer
        assert writer is not None
        # Either the writer holds the write for the busy dispatcher, or (wrongly) wrote it.
        await wait_until(lambda: writer.holding or two in cache.saved)
        assert two not in cache.saved and two not in heard
        busy.set()
        await wait_until(lambda: two in cache.saved)
        assert cache.unheard == []
        assert cache.saved[1:] == [one, two]
    finally:
        busy.set()
        await engine.aclose()


async def test_a_hung_listener_does_not_hold_the_cache_back_for_ever(tmp_path: Path) -> None:
    """A dispatcher stuck in a listener never takes the next event: ``picked_up`` never
    returns while an event waits (the test above shows the engine's wiring of both)."""
    cache = Recorder(tmp_path, APP, "default", "a" * 64)
    never = asyncio.Event()

    async def picked_up() -> None:
        await never.wait()

    writer = CacheWriter(
        cache,
        picked_up=picked_up,
        waiting=lambda: True,  # an event is always queued
        listener_grace=0.2,  # 5 s in production
        name=APP,
    )
    writer.open()
    writer.submit("application", "one", {"greeting": "one"}, 0.0)
    await wait_until(lambda: cache.saved == ["one"])
    writer.submit("application", "two", {"greeting": "two"}, 0.0)
    await wait_until(lambda: cache.saved == ["one", "two"])
    await writer.aclose(5.0)


async def test_picked_up_returns_once_the_dispatcher_took_every_queued_event(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    engine = make_engine(server, tmp_path, cache_dir=None)
    busy = asyncio.Event()
    calls: list[str] = []

    async def listener(event: ConfigChangeEvent) -> None:
        calls.append(event.changes["greeting"].new_value or "")
        await busy.wait()

    engine.listeners.add(listener)
    await engine.start(share_poll=False)
    try:
        await engine.listeners.picked_up()  # nothing queued: at once
        server.publish(APP, "application", {"greeting": "one"})
        await wait_until(lambda: calls == ["one"])
        server.publish(APP, "application", {"greeting": "two"})
        await wait_until(lambda: engine.store.values["application"].get("greeting") == "two")
        waiting = asyncio.ensure_future(engine.listeners.picked_up())
        for _ in range(20):  # let the loop run: the dispatcher is busy, "two" stays queued
            await asyncio.sleep(0)
        assert not waiting.done()
        busy.set()
        await asyncio.wait_for(waiting, 5)
        assert calls == ["one", "two"]  # taken means its listeners were reached
    finally:
        busy.set()
        await engine.aclose()


# ---------------------------------------------------------------------------- off the loop

_FILE_EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.chmod", "os.listdir"}
_watched: list[tuple[str, list[str]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Note file-system calls under a watched folder made from a thread running a loop."""
    if not _watched or event not in _FILE_EVENTS or not args:
        return
    if not isinstance(args[0], str | bytes | os.PathLike):
        return  # an fd
    path = os.fsdecode(args[0])
    for root, found in _watched:
        if path.startswith(root):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                continue
            found.append(f"{event} {path}")


sys.addaudithook(_audit)


@pytest.fixture
def loop_file_calls(tmp_path: Path) -> Iterator[list[str]]:
    """File-system calls under ``tmp_path/cache`` made on an event loop's thread."""
    found: list[str] = []
    entry = (str(tmp_path / "cache"), found)
    _watched.append(entry)
    try:
        yield found
    finally:
        _watched.remove(entry)


async def test_the_async_client_never_touches_cache_files_on_its_loop(
    tmp_path: Path, loop_file_calls: list[str]
) -> None:
    root = tmp_path / "cache"
    async with ApolloTestServer(hold_seconds=0.5) as server:
        server.publish(APP, "application", {"greeting": "hello"})
        url = server.url
        events = Events()
        client = ApolloClient(APP, config_server=url, cache_dir=root, **FAST)
        warm = Recorder.of(client)
        client.on_change(events)
        async with client:  # writes the first release
            server.publish(APP, "application", {"greeting": "changed"})
            await events.next()
    # Apollo is down: a cold start reads the file (and looks for an old-layout one).
    cold_client = ApolloClient(APP, config_server=url, cache_dir=root, **FAST)
    cold = Recorder.of(cold_client)
    async with cold_client:
        assert cold_client.sources["application"] is Source.CACHE
        assert await cold_client.get("greeting") == "changed"
    assert len(warm.saved) == 2 and len(cold.attempts) == 0
    assert warm.on_loop == [] and cold.on_loop == []
    assert loop_file_calls == []


async def test_the_sync_client_never_touches_cache_files_on_its_loop(
    server: ApolloTestServer, tmp_path: Path, loop_file_calls: list[str]
) -> None:
    cfg = SyncApolloClient(APP, config_server=server.url, cache_dir=tmp_path / "cache", **FAST)
    cache = Recorder.of(cfg)
    try:
        await asyncio.to_thread(cfg.start)
        server.publish(APP, "application", {"greeting": "changed"})
        await wait_until(lambda: cfg.get("greeting") == "changed")
    finally:
        await asyncio.to_thread(cfg.close)
    assert len(cache.saved) == 2
    assert cache.on_loop == [] and loop_file_calls == []


async def test_start_does_not_wait_for_the_disk(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    cache = Recorder.of(client)
    cache.go.clear()  # the disk hangs
    try:
        await asyncio.wait_for(client.start(), 5)
        assert await client.get("greeting") == "hello"
        await wait_until(cache.entered.is_set)
        assert cache.saved == []
    finally:
        cache.go.set()
    await client.aclose()
    assert cache.saved == [client.snapshot().release_key]


async def test_a_client_whose_loop_ended_leaves_no_writer_thread(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer's thread ends with its task, also when the loop stopped the task and no
    aclose() ever came (it used to wait for jobs for as long as the process lived)."""
    from aioapollo._runtime.threads import alive_threads

    client = make_client()
    await asyncio.to_thread(asyncio.run, client.start())  # the loop ends; nobody closes it
    assert client.get_nowait("greeting") == "hello"
    await wait_until(lambda: "aioapollo-cache" not in [t.name for t in alive_threads()])
