"""Messages arriving on one local stream, one at a time (the I/O around ``wire``'s decoder)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from .wire import Decoder, Message, WireError, parse

__all__ = ["Inbox"]


class Inbox:
    """Messages arriving on one stream, one at a time (a read may bring several)."""

    __slots__ = ("_deadline", "_decoder", "_expired", "_pending", "_reader", "_timer", "_waiter")

    def __init__(self, reader: asyncio.StreamReader, *, max_frame: int | None = None) -> None:
        self._reader = reader
        self._decoder = Decoder(max_frame=max_frame)
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        # The silence timer of next(within=...): one armed at a time, shared by its waits.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiter: asyncio.Task[Any] | None = None
        self._expired = False

    async def next(self, within: float | None = None) -> Message | None:
        """The next message, or None at a clean end of the stream.

        With ``within``, raises :class:`TimeoutError` if nothing arrives within that many
        seconds. ``asyncio.timeout`` around each wait would arm and cancel a timer per
        message, a measurable share of a follower's CPU per release. Here one timer serves
        every wait: it is armed only when none is pending (or the pending one is set for
        later than this wait's deadline), and when it fires for a wait that has ended it is
        re-armed for the deadline of the current one (or left off until the next). A stream
        that brings a message every second costs one timer per ``within``.
        """
        if self._pending:  # a read often brings several frames (a release and its heartbeat)
            return parse(self._pending.popleft())
        task = None
        cancelling = 0
        if within is not None:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()  # cancels requested before this wait are not ours
            self._deadline = loop.time() + within
            self._waiter = task
            if self._timer is not None and self._timer.when() > self._deadline:
                self._timer.cancel()  # armed for a longer wait: too late for this one
                self._timer = None
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._expire)
        try:
            while not self._pending:
                data = await self._reader.read(1 << 16)
                if not data:
                    if self._decoder.pending:
                        raise WireError("the connection ended inside a frame")
                    return None
                self._pending.extend(self._decoder.feed(data))
        except asyncio.CancelledError:
            if task is not None and self._expired:
                self._expired = False
                if task.uncancel() <= cancelling:  # only the silence cancelled it
                    raise TimeoutError from None
            raise
        finally:
            if task is not None:
                self._waiter = None
        return parse(self._pending.popleft())

    def _expire(self) -> None:
        self._timer = None
        task = self._waiter
        if task is None:
            return  # no wait now: the next one arms a timer
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._expire)
            return
        self._expired = True
        task.cancel()  # read() keeps what it had not returned: nothing is lost
