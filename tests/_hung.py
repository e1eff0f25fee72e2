"""A TCP server that accepts connections and never answers, until (optionally) released.

Stands for a config service or meta server that is up but hung: connections succeed, requests
are never answered, so only read timeouts end them. ``release(port)`` turns it into a plain
proxy to ``127.0.0.1:port``: every held connection and every new one is piped there.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class HungServer:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._released = asyncio.Event()
        self._target: int | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        #: How many connections were accepted (a client really tried this server).
        self.accepted = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        # A connection accepted just before this may get its handler task only now: closing
        # tells that handler to close its end at once. Without it, the connection stays
        # open and wait_closed() (which waits for every connection on Python 3.12+) never
        # returns.
        self._closing = True
        self._server.close()
        while self._tasks:
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def release(self, port: int) -> None:
        """From now on, forward every connection (held ones too) to ``127.0.0.1:port``."""
        self._target = port
        self._released.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._closing:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._released.wait()  # hung: read nothing, answer nothing
            assert self._target is not None
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
