"""Plain helpers shared by the whole suite (fixtures live in ``conftest.py``): loopback
addresses, bounded waits, reading a client's backoff off the test server's request log, and
writing a watched file whole."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from aioapollo.testing import ApolloTestServer, RecordedRequest


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


async def wait_for_requests(
    server: ApolloTestServer,
    predicate: Callable[[RecordedRequest], bool],
    count: int,
    timeout: float = 10.0,
) -> list[RecordedRequest]:
    """Wait (bounded) until ``server`` recorded ``count`` requests matching ``predicate``
    (checked again whenever a request arrives or is answered); returns the first ``count``."""

    def matching() -> list[RecordedRequest]:
        return [r for r in server.requests if predicate(r)]

    async with asyncio.timeout(timeout):
        await server.wait_for_request(lambda _: len(matching()) >= count)
    return matching()[:count]


def gaps(requests: Iterable[RecordedRequest]) -> list[float]:
    """Seconds between consecutive requests, by their arrival at the server."""
    return [b.time - a.time for a, b in itertools.pairwise(requests)]


def assert_backoff(waits: list[float], initial: float, cap: float, slack: float = 1.0) -> None:
    """``waits[k]`` is what the client waited after its k-th failure in a row (k from 0).

    aioapollo's backoff draws the k-th delay from [d/2, d], d = min(cap, initial * 2**k). A
    wait measured at the server also holds the round trips, so only the lower bound is exact
    (to the 2 ms that the wall clock and the event loop's clock may drift apart); the upper
    bound gets ``slack`` for a loaded machine. Since d doubles, the lower bounds alone already
    tell a growing backoff from a constant one, and from none.
    """
    assert waits, "no failure was retried"
    for k, wait in enumerate(waits):
        ceiling = min(cap, initial * 2**k)
        assert ceiling / 2 - 0.002 <= wait <= ceiling + slack, (k, ceiling, waits)


def write(path: Path, text: str) -> Path:
    """Write ``path`` whole, as editors and Kubernetes do (a new file renamed into place): a
    watcher never sees it half written, even on a machine too busy to finish a plain write
    in one go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
    return path
