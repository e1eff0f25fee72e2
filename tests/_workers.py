"""Helpers for tests that fork workers: a SyncApolloClient factory, a waitable sync listener,
and a forked child that reports JSON lines over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from aioapollo import ConfigChangeEvent, SyncApolloClient
from aioapollo._runtime.threads import alive_threads
from aioapollo.testing import ApolloTestServer

from .conftest import APP, FAST


def aioapollo_threads() -> list[str]:
    return [t.name for t in alive_threads() if t.name.startswith("aioapollo")]


def poller_threads() -> list[str]:
    """The long-lived threads: without the short ones a poller's loop starts for a blocking
    call (a DNS lookup), nor the cache writer's (made at the client's first write), which
    may or may not be running at any moment."""
    short = ("aioapollo-blocking", "aioapollo-cache")
    return [name for name in aioapollo_threads() if name not in short]


@contextlib.asynccontextmanager
async def sync_clients(
    server: ApolloTestServer, tmp_path: Path
) -> AsyncIterator[Callable[..., SyncApolloClient]]:
    """Build SyncApolloClients against ``server`` (override anything); all closed afterwards."""
    clients: list[SyncApolloClient] = []

    def factory(**kwargs: Any) -> SyncApolloClient:
        kwargs.setdefault("config_server", server.url)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        client = SyncApolloClient(kwargs.pop("app_id", APP), **{**FAST, **kwargs})
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await asyncio.to_thread(client.close)


class Changes:
    """A sync listener (it runs in a helper thread) that a test can wait on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[ConfigChangeEvent] = queue.Queue()

    def __call__(self, event: ConfigChangeEvent) -> None:
        self.queue.put(event)

    async def next(self, timeout: float = 10.0) -> ConfigChangeEvent:
        return await asyncio.to_thread(self.queue.get, True, timeout)


Report = Callable[[dict[str, Any]], None]

#: How long a forked child or the test waits for one step (generous: CI machines are busy).
STEP_S = 30.0


def wait_polling(cfg: SyncApolloClient, timeout: float = STEP_S) -> None:
    """In a child: wait (bounded) until its own poller has loaded and runs."""
    deadline = time.monotonic() + timeout
    while not cfg.polling:  # no event exists for this flag
        if time.monotonic() > deadline:
            raise TimeoutError(f"no poller started in process {os.getpid()}")
        time.sleep(0.01)


class Child:
    """A forked child running a blocking ``body(report)``; reports are JSON lines on a pipe.

    A child that failed reports its error and the last aioapollo log lines. Children left
    running by a failed test are killed and reaped by :meth:`close_all` (an autouse fixture).
    """

    _open: ClassVar[list[Child]] = []

    def __init__(self, body: Callable[[Report], None]) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_fd)
            code = 0
            records: list[logging.LogRecord] = []
            handler = logging.Handler()
            handler.emit = records.append  # type: ignore[method-assign]
            logging.getLogger("aioapollo").addHandler(handler)

            def report(message: dict[str, Any]) -> None:
                os.write(write_fd, (json.dumps(message) + "\n").encode())

            try:
                body(report)
            except BaseException as exc:
                log = [f"{r.levelname} {r.getMessage()}" for r in records[-20:]]
                report({"error": repr(exc), "log": log})
                code = 1
            os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self._reader = os.fdopen(read_fd, "rb")
        self._reaped = False
        Child._open.append(self)

    @classmethod
    def running(cls, body: Callable[[Report], Awaitable[None]], timeout: float = STEP_S) -> Child:
        """A child that runs the coroutine function ``body(report)`` in a fresh event loop."""
        return cls(lambda report: asyncio.run(asyncio.wait_for(body(report), timeout)))

    async def next(self, timeout: float = STEP_S) -> dict[str, Any]:
        line = await asyncio.wait_for(asyncio.to_thread(self._reader.readline), timeout)
        assert line, f"child {self.pid} exited without reporting"
        message: dict[str, Any] = json.loads(line)
        assert "error" not in message, message
        return message

    async def exit_code(self, timeout: float = STEP_S) -> int:
        _, status = await asyncio.wait_for(asyncio.to_thread(os.waitpid, self.pid, 0), timeout)
        self._reaped = True
        self.close()
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        if not self._reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._reaped = True
        self._reader.close()

    @classmethod
    def close_all(cls) -> None:
        while cls._open:
            cls._open.pop().close()


async def mp_fork_round(
    target: Callable[[Any, Any], None], client: Any, count: int, publish: Callable[[], object]
) -> tuple[list[Any], list[Any], list[int]]:
    """Fork ``count`` children with ``multiprocessing`` running ``target(client, results)``.

    Each child puts one message once ready and one once it saw the change that ``publish``
    makes after all are ready. Returns (ready messages, changed messages, child pids); every
    child must exit 0, and none outlives the call.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=target, args=(client, results)) for _ in range(count)]

    async def collect() -> list[Any]:
        return [await asyncio.wait_for(asyncio.to_thread(results.get), STEP_S) for _ in procs]

    try:
        for proc in procs:
            proc.start()
        ready = await collect()
        publish()
        changed = await collect()
        for proc in procs:
            await asyncio.to_thread(proc.join, STEP_S)
            assert proc.exitcode == 0
        return ready, changed, [proc.pid for proc in procs if proc.pid is not None]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
