"""Plain helpers shared by the whole suite (fixtures live in ``conftest.py``): loopback
addresses and bounded waits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dead_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    return f"http://127.0.0.1:{free_port()}"


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Wait (bounded) for state that has no event of its own to wait on, such as a
    notification id that advances just after the listeners were called."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - no event exists for this state
            await asyncio.sleep(interval)
