"""Helpers shared by the fault-injection suite: socket and task accounting."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from aioapollo import ApolloClient

#: TCP states of a client socket that is still open: SYN_SENT, ESTABLISHED, CLOSE_WAIT.
_OPEN_STATES = {"01", "02", "08"}


def client_sockets(port: int) -> int:
    """How many sockets on this machine are open *to* ``port`` on loopback (client side).

    Read from ``/proc/net/tcp``: the kernel's view, so a socket leaked by any layer counts.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if int(remote.rsplit(":", 1)[1], 16) == port and state in _OPEN_STATES:
                count += 1
    return count


def aioapollo_tasks() -> list[asyncio.Task[object]]:
    """The client's background tasks still alive in this loop."""
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo-") and not t.done()
    ]


def sleeping_for(task: asyncio.Task[object]) -> float | None:
    """The delay of the ``asyncio.sleep`` that ``task`` is suspended in, or ``None``.

    Follows the awaited coroutines from the task's own (``cr_await``) and reads the innermost
    one's arguments with ``inspect.getcoroutinelocals``: the real task, looked at, not mocked.
    """
    coro: object = task.get_coro()
    while inspect.iscoroutine(coro):
        if coro.cr_code is asyncio.sleep.__code__:
            return float(inspect.getcoroutinelocals(coro)["delay"])
        coro = coro.cr_await
    return None


def assert_fully_closed(client: ApolloClient) -> None:
    """No task and no HTTP session left behind by ``client``."""
    assert not client._engine.apollo.is_open
    assert client._engine.tasks == []
    assert aioapollo_tasks() == []
