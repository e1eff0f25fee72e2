"""Real OS threads, locks and event loops that gevent's monkey-patching cannot touch.

``SyncApolloClient`` runs its poller (and its sync listeners) on threads of its own. Under
gevent, ``threading`` may be patched before the client starts (the app patches first), while
it starts (``gunicorn -k gevent --preload``: the poller starts from the at-fork hook, moments
before the worker runs ``monkey.patch_all()``), or never. A thread built from ``threading``
objects breaks in the middle case: patching swaps the locks it holds. So everything here is
built from the *original* ``_thread`` primitives (``gevent.monkey.get_original`` when gevent is
loaded) and the poller's event loop uses the original selector and never a default executor
(``concurrent.futures`` threads become greenlets under ``patch_all``, which would never run
on our thread): blocking calls go to a fresh OS thread each. The poller is then correct
whether patching happens before, during or after its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import selectors
import sys
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Event",
    "JobThread",
    "OsThread",
    "alive_threads",
    "allocate_lock",
    "get_ident",
    "gevent_patch_pending",
    "new_event_loop",
    "on_gevent_patched",
]

logger = logging.getLogger("aioapollo")

T = TypeVar("T")


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before any gevent monkey-patching."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def allocate_lock() -> Any:
    """A real (OS-level) non-reentrant lock."""
    return _original("_thread", "allocate_lock")()


def get_ident() -> int:
    """The OS thread's identity (gevent's patched one names greenlets instead)."""
    ident: int = _original("_thread", "get_ident")()
    return ident


class Event:
    """A one-shot event on a real lock: ``set`` from any thread, ``wait`` in any other."""

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            with contextlib.suppress(RuntimeError):  # set twice at once: released already
                self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            self._lock.release()
        return self._set


_alive: set[OsThread] = set()


def alive_threads() -> list[OsThread]:
    """Our threads still running in this process (they do not show in ``threading``)."""
    pid = os.getpid()  # a forked child inherits the set, not the threads
    return [t for t in list(_alive) if t.pid == pid and t.is_alive()]


class OsThread:
    """A daemon OS thread running ``target()``; never a greenlet, whatever is patched.

    Like every thread started from ``_thread``, it is a daemon: interpreter exit does not
    wait for it. It does not show in ``threading.enumerate()``; see :func:`alive_threads`.
    """

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self.name = name
        self.ident: int | None = None
        self._done = Event()
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = os.getpid()
        _alive.add(self)
        _original("_thread", "start_new_thread")(self._run, ())

    def _run(self) -> None:
        self.ident = get_ident()
        try:
            self._target()
        except BaseException:  # pragma: no cover - targets handle their own errors
            logger.exception("aioapollo thread %s crashed", self.name)
        finally:
            _alive.discard(self)
            self._done.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it did."""
        return self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Running in this process (a forked child has none of its parent's threads)."""
        return self.pid == os.getpid() and not self._done.is_set()

    def is_current(self) -> bool:
        return self.ident is not None and self.ident == get_ident()


class JobThread:
    """One OS thread that runs jobs, one at a time, until retired (listener calls, cache
    writes): cheaper than a thread, or an executor's futures, per job."""

    def __init__(self, name: str) -> None:
        self._signal = allocate_lock()  # released = a job (or retirement) waits
        self._signal.acquire()
        self._job: Callable[[], None] | None = None
        self.thread = OsThread(self._main, name)
        self.thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` next (the previous one has reported back)."""
        self._job = job
        self._signal.release()

    def retire(self) -> None:
        """End the thread once its current job, if any, returns."""
        self._job = None
        with contextlib.suppress(RuntimeError):  # a signal is pending already
            self._signal.release()

    def _main(self) -> None:
        while True:
            self._signal.acquire()
            job, self._job = self._job, None
            if job is None:
                return
            job()


class _Loop(asyncio.SelectorEventLoop):
    """An event loop whose blocking helpers (``to_thread``, DNS) run on real OS threads.

    Closing it (``asyncio.Runner``) waits for those threads, as for a default executor.
    """

    _blocking: set[OsThread]

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncio's signature
        deadline = 300.0 if timeout is None else timeout
        for thread in list(getattr(self, "_blocking", ())):
            thread.join(deadline)  # blocks this loop: it is shutting down

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        future: asyncio.Future[T] = self.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def work() -> None:
            try:
                result = func(*args)
            except BaseException as exc:  # delivered to the awaiting coroutine
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.call_soon_threadsafe(deliver, *outcome)

        blocking: set[OsThread] = self.__dict__.setdefault("_blocking", set())

        def run() -> None:
            try:
                work()
            finally:
                blocking.discard(thread)

        thread = OsThread(run, "aioapollo-blocking")
        blocking.add(thread)
        thread.start()
        return future


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for one of our threads: the original selector, OS-thread executor."""
    selector_class: type[selectors.BaseSelector] = _original("selectors", "DefaultSelector")
    return _Loop(selector_class())


def gevent_patch_pending() -> bool:
    """True in a gunicorn gevent worker that has not run ``monkey.patch_all()`` yet.

    Right after fork, gunicorn's gevent worker is about to patch: anything started now would
    have its locks swapped under it.
    """
    if "gunicorn.workers.ggevent" not in sys.modules:
        return False
    monkey = sys.modules.get("gevent.monkey")
    return monkey is None or not monkey.is_module_patched("threading")


def on_gevent_patched(callback: Callable[[], None]) -> None:
    """Call ``callback()`` once, right after gevent's next ``monkey.patch_all()`` finished."""
    events = importlib.import_module("gevent.events")

    def subscriber(event: object) -> None:
        if isinstance(event, events.GeventDidPatchAllEvent):
            with contextlib.suppress(ValueError):
                events.subscribers.remove(subscriber)
            callback()

    events.subscribers.append(subscriber)
