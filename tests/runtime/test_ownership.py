"""A client used from another thread or event loop works or says what to do, never hangs; a
client sent to another process (pickled) is refused with a message, not a pickling traceback.

Free-threaded servers run workers as threads, each with its own event loop, and share module
globals: a client started on one loop is then read, started or closed from the others.
"""

from __future__ import annotations

import asyncio
import copy
import multiprocessing
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ClientState, ClientStateError, SyncApolloClient
from aioapollo.testing import ApolloTestServer

from .._hung import HungServer
from ..conftest import APP, FAST, ClientFactory, Events

#: No call in this module may take longer: a hang fails the test instead of stalling it.
BOUND = 10.0


class LoopThread:
    """An event loop running in its own thread, like a worker thread of a threaded server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-loop")
        self._thread.start()

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(BOUND)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(BOUND)
        self.loop.close()


@pytest.fixture
def other_loop() -> Iterator[LoopThread]:
    worker = LoopThread()
    yield worker
    worker.stop()


async def test_reads_from_another_loop_and_threads_work_and_close_is_handed_over(
    make_client: ClientFactory, server: ApolloTestServer, other_loop: LoopThread, events: Events
) -> None:
    client = make_client()
    await asyncio.to_thread(other_loop.run, client.start())  # owned by the worker's loop
    async with asyncio.timeout(BOUND):
        assert await client.get("greeting") == "hello"  # a dict read, from this loop
        assert (await client.namespace()).release_key is not None
        with ThreadPoolExecutor(4) as pool:  # plain threads
            assert set(pool.map(lambda _: client.get_nowait("greeting"), range(16))) == {"hello"}
        with pytest.raises(ClientStateError, match=r"another event loop.*one client per event"):
            await client.start()
        # The worker's loop keeps the poller alive: a publish reaches this loop's reads.
        client.add_listener(events)
        server.publish(APP, "application", {"greeting": "bonjour"})
        assert (await events.next()).changes["greeting"].new_value == "bonjour"
        assert await client.get("greeting") == "bonjour"
        await client.aclose()  # handed to the owning loop, which closes it
    assert client.state is ClientState.CLOSED
    tasks = await asyncio.to_thread(other_loop.run, _aioapollo_tasks())  # nothing left on the owner
    assert tasks == []


async def _aioapollo_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo")]


async def test_a_client_whose_loop_ended_says_so_and_never_hangs(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    # The classic mistake: start on a throwaway loop, read on the app's loop.
    await asyncio.to_thread(asyncio.run, client.start())
    assert any("stopped its tasks without aclose()" in r.message for r in caplog.records)
    assert client.get_nowait("greeting") == "hello"  # plain dict reads still work
    async with asyncio.timeout(BOUND):
        with pytest.raises(ClientStateError, match="an event loop that has ended"):
            await client.get("greeting")
        with pytest.raises(ClientStateError, match="has ended"):
            await client.get_int("timeout")
        await client.aclose()  # its loop is gone: nothing to await, never a hang
    assert client.state is ClientState.CLOSED


async def test_waiting_for_a_start_on_another_loop_fails_fast(
    tmp_path: Path, other_loop: LoopThread
) -> None:
    async with HungServer() as hung:
        client = ApolloClient(
            APP, config_server=hung.url, cache_dir=tmp_path, **{**FAST, "read_timeout": 0.5}
        )
        starting = asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(client.start(), other_loop.loop)
        )
        async with asyncio.timeout(BOUND):
            while client.state is not ClientState.STARTING:  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.01)
            with pytest.raises(ClientStateError, match="another event loop"):
                await client.get("greeting")
            with pytest.raises(ClientStateError, match="another event loop"):
                await client.start()
            with pytest.raises(Exception, match="could not load"):
                await starting
        assert client.state is ClientState.CREATED


async def test_sync_client_reads_from_any_thread_or_loop(
    make_sync: object, server: ApolloTestServer, other_loop: LoopThread
) -> None:
    cfg = make_sync()  # type: ignore[operator]
    await asyncio.to_thread(cfg.start)

    async def read() -> str | None:
        return cfg.get("greeting")  # type: ignore[no-any-return]

    assert await asyncio.to_thread(other_loop.run, read()) == "hello"
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: cfg.get("greeting"), range(64))) == {"hello"}
    await asyncio.wait_for(asyncio.to_thread(cfg.close), BOUND)  # from a third thread
    assert not cfg.polling


# ---------------------------------------------------------------------- pickling


async def test_a_started_client_refuses_pickling_with_a_message(make_client: ClientFactory) -> None:
    client = make_client()
    await client.start()
    for dump in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match="Build the client in the child process") as info:
            dump(client)
        assert "ApolloClient('test-app') cannot be pickled" in str(info.value)


async def test_a_sync_client_refuses_pickling_with_a_message(make_sync: object) -> None:
    cfg = make_sync()  # type: ignore[operator]
    await asyncio.to_thread(cfg.start)
    with pytest.raises(TypeError, match=r"SyncApolloClient\('test-app'\) cannot be pickled"):
        pickle.dumps(cfg)


def _child_reads(cfg: SyncApolloClient) -> None:  # pragma: no cover - never runs
    cfg.get("greeting")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
async def test_passing_a_started_client_to_a_child_says_what_to_do(
    make_sync: object, method: str
) -> None:
    cfg = make_sync()  # type: ignore[operator]
    await asyncio.to_thread(cfg.start)
    ctx = multiprocessing.get_context(method)
    proc = ctx.Process(target=_child_reads, args=(cfg,))
    with pytest.raises(TypeError, match="Build the client in the child process"):
        proc.start()  # pickled here, in the parent: the child never starts
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_child_reads, (cfg,))
        with pytest.raises(TypeError, match="Build the client in the child process"):
            await asyncio.to_thread(result.get, BOUND)
