"""Where a client may be used: never sent to another process, and awaited on its own loop.

A client's poller, HTTP session and listeners belong to the process, and for
:class:`~aioapollo.ApolloClient` the event loop, it was started in. Pickling one (handing it to
a ``spawn`` or ``forkserver`` child, a process pool or Celery) would at best copy frozen
values, so it is refused with a message that says what to do instead. Reading the values of a
started client is a dict lookup and works from any thread or loop; what needs the owning loop
(waiting for ``start()``, ``start()`` itself, ``aclose()``) says so, or hands the call to that
loop, rather than hang on a future of another loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import NoReturn

from .._exceptions import ClientStateError

__all__ = ["ProcessLocal", "foreign_loop", "loop_ended", "other_loop_error"]


class ProcessLocal:
    """Mixin: refuse pickling, with a message saying to build the client in the child."""

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        name = type(self).__name__
        app_id = getattr(getattr(self, "options", None), "app_id", "?")
        raise TypeError(
            f"{name}({app_id!r}) cannot be pickled to another process: its poller, HTTP "
            "session and listeners belong to this one. Build the client in the child process "
            "instead (a module-level client is built there by itself: a spawn or forkserver "
            "child imports your module; else build it in the child's initializer) and start "
            "it there. A forked child may use an inherited client as is."
        )


def foreign_loop(owner: asyncio.AbstractEventLoop | None) -> bool:
    """Whether the calling code runs on an event loop other than ``owner``."""
    if owner is None:
        return False
    try:
        return asyncio.get_running_loop() is not owner
    except RuntimeError:  # no loop here: a plain thread
        return True


def loop_ended(owner: asyncio.AbstractEventLoop | None) -> bool:
    """Whether ``owner`` can no longer run the client's tasks (closed or stopped)."""
    return owner is not None and (owner.is_closed() or not owner.is_running())


def other_loop_error(
    app_id: str, what: str, owner: asyncio.AbstractEventLoop | None
) -> ClientStateError:
    """The error for ``what`` called on a loop that does not own the client."""
    where = (
        "an event loop that has ended (its poller ended with it)"
        if loop_ended(owner)
        else "another event loop"
    )
    return ClientStateError(
        f"{what}: ApolloClient({app_id!r}) was started on {where}, not on this one "
        f"(thread {threading.current_thread().name!r}). Start one client per event loop, "
        "on the loop that serves your app (e.g. in its ASGI lifespan), or use "
        "SyncApolloClient, whose reads work from any thread or loop."
    )
