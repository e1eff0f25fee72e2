"""Change listeners: registration with key/prefix/namespace filters, and ordered dispatch.

Events are queued by the poller and delivered by a separate dispatcher task, so a slow
listener never delays polling. Each event goes to the matching listeners in registration
order; coroutine listeners are awaited, plain callables run in a worker thread so they cannot
block the event loop. A listener that raises is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, overload

from . import _threads
from ._models import ConfigChangeEvent

__all__ = ["ChangeListener", "ListenerRegistry", "OnChange"]

logger = logging.getLogger("aioapollo")

ChangeListener: TypeAlias = Callable[[ConfigChangeEvent], Awaitable[None] | None]


L = TypeVar("L", bound=ChangeListener)


class OnChange:
    """The ``@on_change`` decorator, shared by the clients; they provide ``add_listener``."""

    def add_listener(
        self,
        listener: ChangeListener,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        raise NotImplementedError

    @overload
    def on_change(self, listener: L, /) -> L: ...
    @overload
    def on_change(
        self,
        listener: None = None,
        /,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> Callable[[L], L]: ...
    def on_change(
        self,
        listener: Any = None,
        /,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> Any:
        """Register a change listener; use bare (``@cfg.on_change``) or with filters.

        The listener gets a :class:`ConfigChangeEvent` once per real change of a namespace
        (never for the first load), in every process that polls. With ``keys``/``prefixes``
        it is called only when a changed key matches; with ``namespaces`` only for those
        namespaces. Coroutine functions run on the client's loop, plain functions in a helper
        thread.
        """
        if listener is not None:
            self.add_listener(listener)
            return listener

        def decorate(fn: L) -> L:
            self.add_listener(fn, keys=keys, prefixes=prefixes, namespaces=namespaces)
            return fn

        return decorate


@dataclass(frozen=True, slots=True)
class _Entry:
    listener: ChangeListener
    keys: frozenset[str]
    prefixes: tuple[str, ...]
    namespaces: frozenset[str]

    def wants(self, event: ConfigChangeEvent) -> bool:
        if self.namespaces and event.namespace not in self.namespaces:
            return False
        if not self.keys and not self.prefixes:
            return True
        return any(key in self.keys or key.startswith(self.prefixes) for key in event.changes)


class ListenerRegistry:
    """Holds listeners and delivers events to them from one dispatcher task."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._queue: asyncio.Queue[ConfigChangeEvent] | None = None

    def add(
        self,
        listener: ChangeListener,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        """Register ``listener``; registering the same callable again replaces its filters."""
        if not callable(listener):
            raise TypeError("a change listener must be callable")
        if isinstance(prefixes, str) or isinstance(keys, str) or isinstance(namespaces, str):
            raise TypeError("keys, prefixes and namespaces take collections, not a string")
        entry = _Entry(
            listener, frozenset(keys or ()), tuple(prefixes or ()), frozenset(namespaces or ())
        )
        for i, existing in enumerate(self._entries):
            if existing.listener == listener:  # == so bound methods match
                self._entries[i] = entry
                return
        self._entries.append(entry)

    def remove(self, listener: ChangeListener) -> None:
        """Unregister ``listener``; :class:`ValueError` if it was not registered."""
        for i, existing in enumerate(self._entries):
            if existing.listener == listener:  # == so bound methods match
                del self._entries[i]
                return
        raise ValueError("that listener is not registered")

    def __len__(self) -> int:
        return len(self._entries)

    def emit(self, event: ConfigChangeEvent) -> None:
        """Queue an event for the dispatcher (dropped when no dispatcher runs)."""
        if self._queue is not None and self._entries:
            self._queue.put_nowait(event)

    def open(self) -> None:
        """Start accepting events (a fresh queue: one from before a fork is the parent's)."""
        self._queue = asyncio.Queue()

    async def picked_up(self) -> None:
        """Return once the dispatcher has taken every event from its queue (at once when none
        waits or no dispatcher runs); it does not wait for the listeners to finish."""
        if self._queue is not None:
            await self._queue.join()

    async def run(self) -> None:
        """The dispatcher task: deliver queued events until cancelled."""
        queue = self._queue
        if queue is None:
            raise RuntimeError("open() the registry before running its dispatcher")
        try:
            while True:
                event = await queue.get()
                queue.task_done()  # taken: wakes picked_up()
                for entry in list(self._entries):
                    if entry.wants(event):
                        await self._call(entry.listener, event)
        finally:
            if self._queue is queue:  # not a newer queue (a restart after fork made one)
                self._queue = None
            while not queue.empty():  # never taken now: let picked_up() return
                queue.get_nowait()
                queue.task_done()

    async def _call(self, listener: ChangeListener, event: ConfigChangeEvent) -> None:
        try:
            if inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(
                getattr(listener, "__call__", None)  # noqa: B004
            ):
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            else:
                outcome = await _in_daemon_thread(listener, event)
                if inspect.isawaitable(outcome):
                    await outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "change listener %s failed on namespace %r",
                getattr(listener, "__qualname__", repr(listener)),
                event.namespace,
            )


async def _in_daemon_thread(listener: ChangeListener, event: ConfigChangeEvent) -> object:
    """Run a plain listener in a daemon thread: one that hangs cannot block interpreter exit
    (the default executor's threads are joined at exit, a hung one would hang it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def work() -> None:
        result: object = None
        error: BaseException | None = None
        try:
            result = listener(event)
        except BaseException as exc:  # delivered to the awaiting dispatcher
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(settle, result, error)

    _threads.OsThread(work, "aioapollo-listener").start()
    return await future
