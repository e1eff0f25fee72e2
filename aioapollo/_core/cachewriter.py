"""Cache writes off the event loop: one background writer per client, the latest release wins.

:class:`CacheWriter` is owned by an :class:`~aioapollo.ApolloClient` from ``start()`` to
``aclose()``. The client hands it each release it applied from Apollo with :meth:`submit`,
which never blocks and never touches a file: it puts the release in the namespace's *slot*,
replacing whatever waited there, and wakes the writer task.

**Latest wins.** The writer task takes one slot at a time and writes it on the writer's own
OS thread (one per writer, made at its first write and ended by ``aclose()``; a real OS
thread under gevent too, see ``_threads``). The thread tells the loop of a write only when the
loop must hear of it (it failed, it is the first to succeed after failures, or the task waits
for it to hand over the next release): a release written in passing costs the event loop no
wake-up. Releases submitted while a write runs only replace the slot, so a burst of 100 releases of
one namespace costs at most two writes: the one already running, then the newest. The
file-system work (reading the file's head to skip a release another worker wrote, JSON
encoding, the temporary file, fsync, rename) all happens in that thread.

**Listeners first, by design.** The client submits a write only after it has queued the
release's change event for the listener dispatcher (``ListenerRegistry.emit``). Before each
write the writer awaits ``ListenerRegistry.picked_up()``, which returns once the dispatcher
has *taken* every queued event, that release's included. Taking an event and calling its first
listener happen in one step of the dispatcher task (a coroutine listener runs up to its first
real ``await``, a plain one's thread is started; listeners that return without suspending are
all called in that step), so the write cannot start before delivery has begun. If more
releases were submitted during the wait, the writer waits again: the release it writes is
always one whose event was taken. It does not wait for listeners to *finish*: a slow listener
never holds the cache back. One bound: if the dispatcher is still busy with earlier events
after ``listener_grace`` seconds (5 s; a listener that hangs), the write goes ahead. Those
listeners hear of nothing meanwhile anyway, so the write cannot delay them, and one stuck
listener must not leave the cache stale.

**Siblings skip without I/O.** Workers forked from where the client was built share
:class:`~aioapollo._apollo.cache.SiblingClaims` (``DiskCache.siblings``, shared memory).
A release is marked there as the write starts (when its claim file is made too) and
unmarked when the write fails; a release a live sibling marked less than 30 s ago is dropped
by :meth:`CacheWriter.submit` at once (no task woken, no thread, no file), or by the task
before it waits for the dispatcher.

**Failures are not for ever.** An :class:`OSError` (disk full, directory gone or replaced,
permissions), or any other error of a write, keeps the release in its slot and retries it
``retry_initial`` seconds later (1 s), doubling up to ``retry_max`` (5 min); newer releases
still replace it meanwhile. The first failure logs one warning, the write that succeeds again
logs one info line; the values in memory are never affected. ``aclose()`` writes what is
pending within its timeout, except during such an outage.

**A bug is not for ever either.** The task runs under the client's supervisor
(``_supervise``): anything else that goes wrong in it restarts it with backoff, and the slots
(which live on this object, not in the task) are still there to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .._apollo.cache import DiskCache
from .._runtime.threads import JobThread, allocate_lock
from .supervise import Progress, Supervisor, fault

__all__ = ["CacheWriter"]

logger = logging.getLogger("aioapollo")


@dataclass(frozen=True, slots=True)
class _Release:
    release_key: str | None
    items: Mapping[str, str]  # a snapshot's dict: never mutated once installed
    saved_at: float


class CacheWriter:
    """Writes a client's releases to its :class:`DiskCache` from a background task.

    Args:
        cache: Where to write.
        picked_up: Awaited before each write; returns once the listener dispatcher has taken
            every event queued so far (``ListenerRegistry.picked_up``). ``None``: no wait.
        waiting: Whether an event is still queued for the dispatcher
            (``ListenerRegistry.waiting``); when it says no, a write does not wait at all.
        retry_initial: Seconds before the first retry after a failed write.
        retry_max: Cap of the doubling retry delay.
        listener_grace: Longest wait for the dispatcher before writing anyway.
        name: For the task's name (the client's appId).
        supervisor: Runs the writer task (the client's); a private one by default.
    """

    def __init__(
        self,
        cache: DiskCache,
        *,
        picked_up: Callable[[], Awaitable[None]] | None = None,
        waiting: Callable[[], bool] | None = None,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        listener_grace: float = 5.0,
        name: str = "",
        supervisor: Supervisor | None = None,
    ) -> None:
        self._cache = cache
        self._picked_up = picked_up
        self._waiting = waiting
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._grace = listener_grace
        self._name = name
        self._supervisor = supervisor if supervisor is not None else Supervisor(name)
        self._slots: dict[str, _Release] = {}
        self._submitted = 0
        self._failures = 0
        self._delay = 0.0
        self._retry_at = 0.0
        self._holding = False
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: JobThread | None = None
        #: Guards ``_busy`` and ``_waiter`` between the loop and the writer's thread.
        self._lock = allocate_lock()
        #: A write was handed to the thread and the loop has not heard it ended.
        self._busy = False
        #: Set by a task waiting for the write in progress; the thread reports to it.
        self._waiter: asyncio.Future[None] | None = None
        self._progress: Progress | None = None

    # ------------------------------------------------------------------ introspection

    @property
    def pending(self) -> tuple[str, ...]:
        """Namespaces with a release waiting to be written."""
        return tuple(self._slots)

    @property
    def failing(self) -> bool:
        """Whether the last write failed (writes are being retried with backoff)."""
        return self._failures > 0

    @property
    def retry_delay(self) -> float:
        """Seconds between retries while failing (doubling up to ``retry_max``), else 0."""
        return self._delay if self._failures else 0.0

    @property
    def holding(self) -> bool:
        """Whether a write waits for the listener dispatcher to take its event."""
        return self._holding

    # ------------------------------------------------------------------ use

    def open(self) -> None:
        """Start the writer task on the running loop."""
        self._wake = asyncio.Event()
        self._task = self._supervisor.spawn(
            "cache", self._run, task_name=f"aioapollo-cache-{self._name}"
        )
        self._task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """The writer task ended without ``aclose()`` (its loop stopped it): end the thread
        too, or an idle one would wait for jobs for as long as the process lives."""
        thread = self._thread
        if thread is not None and not self._closing:  # aclose() ends (and joins) it itself
            self._thread = None
            thread.retire()

    def submit(
        self,
        namespace: str,
        release_key: str | None,
        items: Mapping[str, str],
        saved_at: float,
    ) -> None:
        """Queue a release for writing, replacing any release of that namespace still waiting.

        Call it after the release's change event was emitted. Never blocks.
        """
        if self._wake is None or self._closing:
            return
        self._slots.pop(namespace, None)  # re-inserted last: namespaces are written in turn
        siblings = self._cache.siblings
        if siblings is not None and siblings.taken_by_another(namespace, release_key):
            return  # a sibling writes it (and it supersedes one still waiting here)
        self._slots[namespace] = _Release(release_key, items, saved_at)
        self._submitted += 1
        self._wake.set()

    async def aclose(self, within: float) -> None:
        """Write what is pending (for at most ``within`` seconds), then stop the task and
        end the writer's thread before returning: a preforking master that closes (or
        suspends) a client must be left with no thread at all when it forks."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(within, 0.0)
        try:
            await asyncio.wait([task], timeout=max(within, 0.0))
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.retire()  # a write in progress ends first
                # Blocks this (closing) loop for as long as one file write takes; a disk
                # that hangs longer is given up on after the rest of ``within`` (1 s at
                # least), and the daemon thread ends when the write returns.
                thread.thread.join(max(deadline - loop.time(), 1.0))
        if self._slots and not self.failing:
            logger.warning(
                "closed before the cache was written for %s; it keeps the previous release",
                ", ".join(repr(name) for name in self._slots),
            )

    # ------------------------------------------------------------------ the task

    async def _run(self, progress: Progress) -> None:
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        self._progress = progress
        while True:
            if not self._slots or (self.failing and self._retry_at > loop.time()):
                if self._closing:
                    if self._busy:  # the last write is still in progress
                        await self._write_done()
                        continue
                    return  # done, or the disk is failing: a close does not wait for it
                wake.clear()
                if not self._slots:
                    progress.done()  # caught up: nothing left to write
                    await wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self._retry_at - loop.time())
                continue
            if self._busy:
                await self._write_done()  # one write at a time: latest wins
                continue
            if self._drop_taken():
                continue  # a sibling process writes them: nothing to wait for
            if not self._closing:
                await self._listeners_reached()
            fault("cache.write")  # before the slot is taken: a crash here loses nothing
            name = next(iter(self._slots))
            release = self._slots.pop(name)
            try:
                thread = self._thread
                if thread is None:
                    thread = self._thread = JobThread("aioapollo-cache")
            except RuntimeError:  # interpreter exit: no thread can be started any more
                self._slots.clear()
                return
            self._busy = True
            siblings = self._cache.siblings
            if siblings is not None:
                # Marked only now, as the write starts (as the claim file is): a release
                # marked at submit() would be lost to the family if this process died or
                # closed while its listeners ran, its siblings having dropped it already.
                siblings.take(name, release.release_key)
            thread.submit(functools.partial(self._write, loop, name, release))

    def _drop_taken(self) -> bool:
        """Drop the releases a sibling process took on writing (no I/O: shared memory);
        True when that left nothing to write."""
        siblings = self._cache.siblings
        if siblings is None:
            return False
        taken = [
            name
            for name, release in self._slots.items()
            if siblings.taken_by_another(name, release.release_key)
        ]
        for name in taken:
            del self._slots[name]
        return bool(taken) and not self._slots

    def _write(self, loop: asyncio.AbstractEventLoop, name: str, release: _Release) -> None:
        """On the writer's thread: write one release. The loop hears back only when it must
        (a failure, the first success after failures, or a wait for this write): a write that
        succeeds costs the loop no wake-up."""
        error: BaseException | None = None
        try:
            self._cache.save(name, release.release_key, release.items, release.saved_at)
        except BaseException as exc:  # OSError, or anything else: reported on the loop
            error = exc
        with self._lock:
            told = error is not None or self._failures > 0 or self._waiter is not None
            if not told:
                self._busy = False
        if told:
            with contextlib.suppress(RuntimeError):  # the loop is closed by now
                loop.call_soon_threadsafe(self._written, name, release, error)

    def _written(self, name: str, release: _Release, error: BaseException | None) -> None:
        """On the loop: what a write the loop must hear of did."""
        with self._lock:
            self._busy = False
            waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if error is not None:
            siblings = self._cache.siblings
            if siblings is not None:
                siblings.give_up(name, release.release_key)  # a sibling may write it now
            self._slots.setdefault(name, release)  # unless a newer release came meanwhile
            self._failed(error, asyncio.get_running_loop().time())
        else:
            if self._progress is not None:
                self._progress.done()
            if self._failures:
                logger.info(
                    "the config cache in %s is written again, after %d failed attempt(s)",
                    self._cache.directory,
                    self._failures,
                )
                self._failures = 0
        if self._wake is not None:
            self._wake.set()

    async def _write_done(self) -> None:
        """Wait for the write in progress on the writer's thread (at once if there is none)."""
        with self._lock:
            if not self._busy:
                return
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            waiter = self._waiter
        await asyncio.shield(waiter)

    async def _listeners_reached(self) -> None:
        """Wait until the dispatcher has taken the events of every release submitted so far."""
        if self._picked_up is None or (self._waiting is not None and not self._waiting()):
            return
        loop = asyncio.get_running_loop()
        self._holding = True
        try:
            async with asyncio.timeout_at(loop.time() + self._grace):
                while True:
                    seen = self._submitted
                    await self._picked_up()
                    if self._submitted == seen:
                        return
        except TimeoutError:
            logger.debug(
                "listeners still busy after %g s: writing the cache without waiting for them",
                self._grace,
            )
        finally:
            self._holding = False

    def _failed(self, exc: BaseException, now: float) -> None:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        if self._failures == 0:
            self._delay = self._retry_initial
            logger.warning(
                "cannot write the config cache in %s (%s); continuing with memory only "
                "and retrying in the background",
                self._cache.directory,
                reason,
            )
        else:
            self._delay = min(self._delay * 2, self._retry_max)
            logger.debug(
                "config cache write failed again (%s); next try in %g s", reason, self._delay
            )
        self._failures += 1
        self._retry_at = now + self._delay
