"""Messages arriving on one local stream, one at a time (the I/O around ``wire``'s decoder)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from .wire import Decoder, Message, WireError, parse

__all__ = ["Inbox"]


class Inbox:
    """Messages arriving on one stream, one at a time (a read may bring several)."""

    __slots__ = ("_decoder", "_pending", "_reader")

    def __init__(self, reader: asyncio.StreamReader, *, max_frame: int | None = None) -> None:
        self._reader = reader
        self._decoder = Decoder(max_frame=max_frame)
        self._pending: collections.deque[dict[str, Any]] = collections.deque()

    def next_nowait(self) -> Message | None:
        """The next message if one has arrived already, else None (without reading)."""
        return parse(self._pending.popleft()) if self._pending else None

    async def next(self) -> Message | None:
        """The next message, or None at a clean end of the stream."""
        while not self._pending:
            data = await self._reader.read(1 << 16)
            if not data:
                if self._decoder.pending:
                    raise WireError("the connection ended inside a frame")
                return None
            self._pending.extend(self._decoder.feed(data))
        return parse(self._pending.popleft())
