"""Change listeners: registration with key/prefix/namespace filters, and bounded dispatch.

Events are queued by the poller and delivered by a dispatcher task, so a slow listener never
delays polling. Each event goes to the matching listeners in registration order; coroutine
listeners are awaited on the loop, plain callables run on one reusable worker thread so they
cannot block it. A listener that raises is logged and the others still run.

Nothing here can grow without bound or be held up for ever by one listener:

- The queue holds at most one event per namespace. A release of a namespace whose event is
  still waiting is folded into it: the combined event is the diff from the values before the
  first release to the newest ones (A -> B -> A cancels out), so the queue is bounded by the
  namespace count and always leads to the latest state.
- A call that passes ``timeout`` (``listener_timeout``) is given up on. A coroutine is
  cancelled. A thread cannot be: it goes on as a daemon, and a fresh worker thread serves the
  next call. Until the abandoned call returns, that listener's events are held back (folded
  per namespace the same way) and then delivered: one event per namespace, the diff from what
  it last saw to now. So there is at most one abandoned thread per listener.
- A coroutine listener that ignores its cancellation holds up the task running it, so calls
  run in a delivery task that the dispatcher replaces when one is stuck; on close, the
  dispatcher waits for that task at most ``close_timeout`` and ends regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import types
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
)
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias, TypeVar, overload

from .._exceptions import NamespaceNotFoundError
from .._models import ChangeType, ConfigChange, ConfigChangeEvent, NamespaceSnapshot
from .._runtime import threads as _threads
from .supervise import Progress, fault

__all__ = ["ChangeListener", "ListenerRegistry", "ListenerStats", "OnChange"]

logger = logging.getLogger("aioapollo")

ChangeListener: TypeAlias = Callable[[ConfigChangeEvent], Awaitable[None] | None]

#: ``ClientOptions.listener_timeout`` and ``close_timeout``'s defaults (a test keeps them equal).
DEFAULT_TIMEOUT: float | None = 60.0
DEFAULT_CLOSE_TIMEOUT = 5.0

#: Share of ``close_timeout`` the dispatcher waits for a cancelled call at close, so that it
#: has ended by the time the client's own wait (``close_timeout``) looks at it.
_CLOSE_SHARE = 0.9

L = TypeVar("L", bound=ChangeListener)


class OnChange:
    """The listener methods shared by the clients, on the registry each sets as ``_listeners``
    (its engine's): ``add_listener``, ``remove_listener`` and the ``@on_change`` decorator."""

    _listeners: ListenerRegistry

    def add_listener(
        self,
        listener: ChangeListener,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        """Register ``listener`` (see :meth:`on_change`)."""
        self._listeners.add(listener, keys=keys, prefixes=prefixes, namespaces=namespaces)

    def remove_listener(self, listener: ChangeListener) -> None:
        """Unregister ``listener``; :class:`ValueError` if it is not registered."""
        self._listeners.remove(listener)

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
        namespaces. Coroutine functions run on the client's loop, plain functions on the
        client's listener thread. A listener that falls behind gets one event spanning the
        releases it missed (``event.releases``); see docs/listeners.md.
        """
        if listener is not None:
            self.add_listener(listener)
            return listener

        def decorate(fn: L) -> L:
            self.add_listener(fn, keys=keys, prefixes=prefixes, namespaces=namespaces)
            return fn

        return decorate


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """Counters of a client's listener dispatch (no config values).

    Attributes:
        listeners: Registered listeners.
        queue_depth: Events waiting: queued (at most one per namespace) or held back for a
            listener whose abandoned call still runs (at most one per namespace each).
        coalesced: Times an event was folded into a waiting one of the same namespace
            instead of being delivered on its own.
        abandoned: Calls given up on: past ``listener_timeout``, or still running at close.
        stalled: Listeners whose abandoned call still runs (they get no events meanwhile;
            for plain functions, each is one thread).
        errors: Listener calls that raised.
    """

    listeners: int
    queue_depth: int
    coalesced: int
    abandoned: int
    stalled: int
    errors: int

    def as_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return asdict(self)


class _Entry:
    """One registered listener and its filters (changed in place when it is added again)."""

    __slots__ = ("is_async", "keys", "listener", "namespaces", "prefixes")

    def __init__(
        self,
        listener: ChangeListener,
        keys: frozenset[str],
        prefixes: tuple[str, ...],
        namespaces: frozenset[str],
    ) -> None:
        self.listener = listener
        self.keys = keys
        self.prefixes = prefixes
        self.namespaces = namespaces
        self.is_async = inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(
            getattr(listener, "__call__", None)  # noqa: B004
        )

    def wants_namespace(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def wants(self, changes: Mapping[str, ConfigChange]) -> bool:
        if not self.keys and not self.prefixes:
            return True
        return any(key in self.keys or key.startswith(self.prefixes) for key in changes)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A namespace's changes waiting for delivery: one release or several folded together."""

    namespace: str
    changes: Mapping[str, ConfigChange]
    snapshot: NamespaceSnapshot
    releases: int
    #: The event as emitted, while nothing was folded into it: handed on as it is.
    event: ConfigChangeEvent | None = None

    def then(self, newer: _Pending) -> _Pending:
        """This change followed by ``newer``: the diff from before this one to after that."""
        combined = dict(self.changes)
        for key, change in newer.changes.items():
            first = self.changes.get(key)
            if first is None:
                combined[key] = change
                continue
            old, new = first.old_value, change.new_value
            if old == new:  # back where it was, or added then deleted
                del combined[key]
            else:
                kind = (
                    ChangeType.ADDED
                    if old is None
                    else ChangeType.DELETED
                    if new is None
                    else ChangeType.MODIFIED
                )
                combined[key] = ConfigChange(self.namespace, key, old, new, kind)
        return _Pending(self.namespace, combined, newer.snapshot, self.releases + newer.releases)


@dataclass(eq=False)
class _Run:
    """Delivery state of one dispatcher run (``open()`` starts a fresh one)."""

    #: Events not yet handed to the listeners, in order, one per namespace.
    pending: dict[str, _Pending] = field(default_factory=dict)
    #: Per listener, what it has not been given yet, in order, one per namespace.
    backlogs: dict[_Entry, dict[str, _Pending]] = field(default_factory=dict)
    #: Listeners whose abandoned call still runs.
    busy: set[_Entry] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set while ``pending`` is empty: every event queued so far has been taken.
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the delivery task must be replaced (stuck) or has ended.
    replace: asyncio.Event = field(default_factory=asyncio.Event)
    deliverer: asyncio.Task[None] | None = None
    #: Delivery tasks replaced while stuck in a listener that ignores cancellation.
    stuck: set[asyncio.Task[None]] = field(default_factory=set)
    worker: _threads.JobThread | None = None


class _Abandoned(Exception):
    """A plain listener's call passed its timeout (internal)."""


class ListenerRegistry:
    """Holds listeners and delivers events to them; see the module docstring.

    Args:
        timeout: How long one call may take before it is abandoned (``None``: no limit).
        close_timeout: How long calls get to stop once cancelled, at close or at a timeout.
        namespaces: The client's namespaces: a listener filtered on another is refused with
            :class:`NamespaceNotFoundError` (``None``: any name).
    """

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        namespaces: Collection[str] | None = None,
    ) -> None:
        self._known = frozenset(namespaces) if namespaces is not None else None
        self._timeout = timeout
        self._close_timeout = close_timeout
        self._entries: list[_Entry] = []
        self._run: _Run | None = None
        #: Delivery tasks given up on at close, kept referenced until they end.
        self._orphans: set[asyncio.Task[None]] = set()
        #: See :class:`ListenerStats`.
        self.coalesced = 0
        self.abandoned = 0
        self.errors = 0

    # ------------------------------------------------------------------ registration

    def add(
        self,
        listener: ChangeListener,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        """Register ``listener``; registering the same callable again replaces its filters."""
        if isinstance(prefixes, str) or isinstance(keys, str) or isinstance(namespaces, str):
            raise TypeError("keys, prefixes and namespaces take collections, not a string")
        if self._known is not None:
            for name in namespaces or ():
                if name not in self._known:
                    raise NamespaceNotFoundError(name)
        if not callable(listener):
            raise TypeError("a change listener must be callable")
        entry = _Entry(
            listener, frozenset(keys or ()), tuple(prefixes or ()), frozenset(namespaces or ())
        )
        for existing in self._entries:
            if existing.listener == listener:  # == so bound methods match
                # Same entry, new filters: whatever it is owed or running stays its own.
                existing.keys, existing.prefixes = entry.keys, entry.prefixes
                existing.namespaces = entry.namespaces
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

    # ------------------------------------------------------------------ counters

    @property
    def queue_depth(self) -> int:
        """Events waiting for delivery (see :class:`ListenerStats`)."""
        run = self._run
        if run is None:
            return 0
        return len(run.pending) + sum(len(backlog) for backlog in list(run.backlogs.values()))

    @property
    def stalled(self) -> int:
        """Listeners whose abandoned call still runs."""
        run = self._run
        return 0 if run is None else len(run.busy)

    def stats(self) -> ListenerStats:
        """All counters at once."""
        return ListenerStats(
            listeners=len(self._entries),
            queue_depth=self.queue_depth,
            coalesced=self.coalesced,
            abandoned=self.abandoned,
            stalled=self.stalled,
            errors=self.errors,
        )

    # ------------------------------------------------------------------ dispatch

    def emit(self, event: ConfigChangeEvent) -> None:
        """Queue an event for the dispatcher (dropped when no dispatcher runs).

        An event of a namespace that still has one waiting is folded into it.
        """
        run = self._run
        if run is None or not self._entries:
            return
        item = _Pending(event.namespace, event.changes, event.snapshot, event.releases, event)
        held = run.pending.get(event.namespace)
        if held is None:
            run.pending[event.namespace] = item
        else:
            run.pending[event.namespace] = held.then(item)
            self.coalesced += 1
        run.drained.clear()
        run.wake.set()

    def open(self) -> None:
        """Start accepting events (a fresh queue: one from before a fork is the parent's)."""
        self._run = _Run()

    def waiting(self) -> bool:
        """Whether an event is queued that the dispatcher has not taken yet."""
        run = self._run
        return run is not None and bool(run.pending)

    async def picked_up(self) -> None:
        """Return once the dispatcher has taken every event queued so far (at once when none
        waits or no dispatcher runs); it does not wait for the listeners to finish.

        Taking an event and starting its first listener call happen in one step of the
        dispatcher, so a task woken by this runs after that call has begun.
        """
        run = self._run
        if run is not None and run.pending:
            await run.drained.wait()

    async def run(self, progress: Progress) -> None:
        """The dispatcher task: deliver queued events until cancelled.

        Calls run in a delivery task of their own, replaced when a listener holds it past
        its timeout by ignoring its cancellation. Cancelled, this stops the delivery within
        ``close_timeout`` whatever the listeners do.

        A bug in delivery (never a listener's exception: those are caught) ends this run with
        that exception, for the supervisor to restart it. The queue, the backlogs and the
        listener thread belong to the registry's current run (``open()``), not to this task:
        a restarted dispatcher goes on from them, and delivery is written so that an event is
        either still queued or handed on, never both and never neither (see ``_deliver``).
        """
        run = self._run
        if run is None:
            raise RuntimeError("open() the registry before running its dispatcher")
        name = f"{_task_name()}-delivery"
        try:
            while True:
                run.replace.clear()
                task = asyncio.create_task(self._deliver(run, progress), name=name)
                run.deliverer = task
                task.add_done_callback(lambda t: run.replace.set() if run.deliverer is t else None)
                await run.replace.wait()
                if run.deliverer is task:  # it ended: a bug in delivery, not in a listener
                    run.deliverer = None
                    task.result()  # raises it, for the supervisor
                    raise RuntimeError("listener delivery ended")  # pragma: no cover
        except BaseException as exc:
            me = asyncio.current_task()
            if isinstance(exc, Exception) or (
                isinstance(exc, asyncio.CancelledError) and me is not None and not me.cancelling()
            ):
                raise  # a crash: the supervisor restarts the dispatcher, on this very run
            # Cancelled: the client is closing (or suspending).
            if self._run is run:  # not a newer run (a restart after fork made one)
                self._run = None
            run.drained.set()  # nothing will be taken now: let picked_up() return
            await self._stop(run)
            raise

    async def _stop(self, run: _Run) -> None:
        """Cancel the calls in flight; wait for them at most ``close_timeout`` (a share)."""
        if run.worker is not None:
            run.worker.retire()  # a call in flight keeps its thread until it returns
            run.worker = None
        tasks = [t for t in (run.deliverer, *run.stuck) if t is not None and not t.done()]
        run.deliverer = None
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._close_timeout * _CLOSE_SHARE)
        for task in late:
            self.abandoned += 1
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)
            logger.warning(
                "change listener task %s did not stop within close_timeout: a listener "
                "ignores cancellation; abandoning it",
                task.get_name(),
            )

    async def _deliver(self, run: _Run, progress: Progress) -> None:
        """Hand out events: everything owed to free listeners first, then the next event.

        Crash-safe: an event leaves ``run.pending`` only in the step that puts it in every
        backlog it goes to, and an event leaves a backlog only right before its call, so a
        delivery task that raises anywhere loses and repeats nothing when a new one takes over.
        """
        me = asyncio.current_task()
        while True:
            run.wake.clear()
            entries = list(self._entries)
            for entry in list(run.backlogs):
                if entry not in entries:  # removed meanwhile
                    del run.backlogs[entry]
            for entry in entries:
                if entry in run.busy or not run.backlogs.get(entry):
                    continue
                await self._flush(run, entry, progress)
                if run.deliverer is not me:
                    return  # replaced while stuck in a listener; the new task goes on
            if run.pending:
                self._take(run, entries)
                continue
            progress.done()  # caught up: every event taken and every free listener served
            await run.wake.wait()

    def _take(self, run: _Run, entries: list[_Entry]) -> None:
        """Move the next queued event into the backlog of each listener it is for.

        All or nothing: every new backlog entry is computed first (``then`` may raise), and
        only then is the event taken off the queue and handed out, in one step.
        """
        namespace = next(iter(run.pending))
        item = run.pending[namespace]
        handed: list[tuple[_Entry, _Pending, bool]] = []
        for entry in entries:
            if not entry.wants_namespace(namespace):
                continue
            held = run.backlogs.get(entry, {}).get(namespace)
            # held: this listener's abandoned call is still running; fold into what it is owed
            handed.append((entry, item if held is None else held.then(item), held is not None))
        fault("listeners.take")
        del run.pending[namespace]
        if not run.pending:
            run.drained.set()
        for entry, pending, folded in handed:
            run.backlogs.setdefault(entry, {})[namespace] = pending
            self.coalesced += int(folded)

    async def _flush(self, run: _Run, entry: _Entry, progress: Progress) -> None:
        """Give ``entry`` what it is owed, one event per namespace, in order."""
        backlog = run.backlogs[entry]
        me = asyncio.current_task()
        while backlog:
            namespace = next(iter(backlog))
            item = backlog[namespace]
            # Everything that may fail comes before the event leaves the backlog.
            event = None
            if item.changes and entry.wants(item.changes):
                event = item.event
                if event is None:  # folded: the combined event is built here
                    event = ConfigChangeEvent(namespace, item.changes, item.snapshot, item.releases)
                fault("listeners.deliver")
            del backlog[namespace]
            if event is None:
                continue  # cancelled out, or nothing this listener asked for
            if not await self._call(run, entry, event) or run.deliverer is not me:
                return  # abandoned: the rest waits until the call returns
            progress.done()

    async def _call(self, run: _Run, entry: _Entry, event: ConfigChangeEvent) -> bool:
        """One call; False when it was abandoned and still runs."""
        try:
            if entry.is_async:
                outcome: object = entry.listener(event)
            else:
                outcome = await self._in_thread(run, entry, event)
            if inspect.isawaitable(outcome):
                await self._await(run, entry, event, outcome)
        except _Abandoned:
            return False
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            self._failed(entry, event, exc)  # raised by the listener, not a cancellation
        except Exception as exc:
            self._failed(entry, event, exc)
        return True

    def _failed(
        self, entry: _Entry, event: ConfigChangeEvent, error: BaseException, late: bool = False
    ) -> None:
        self.errors += 1
        logger.error(
            "change listener %s failed on namespace %r%s",
            _name(entry.listener),
            event.namespace,
            " (after it was abandoned)" if late else "",
            exc_info=error,
        )

    async def _await(
        self, run: _Run, entry: _Entry, event: ConfigChangeEvent, outcome: Awaitable[object]
    ) -> None:
        """Await a coroutine listener on this task, cancelling it at the timeout.

        Most listeners return without suspending: a coroutine's first step is run here, on
        this task (as ``await`` would run it), and only one that suspends gets the timers
        (armed from the call's start, so the timeout covers that first step too).
        """
        if self._timeout is None:
            await outcome
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        if type(outcome) is types.CoroutineType:
            try:
                suspended = outcome.send(None)
            except StopIteration:
                return  # done in one step: no timer was needed
            outcome = _resume(outcome, suspended)
        me = asyncio.current_task()
        assert me is not None
        # Should the listener ignore the timeout's cancellation, this task is stuck in it:
        # then the dispatcher hands delivery to a fresh task.
        watch = loop.call_at(
            began + self._timeout + self._close_timeout, self._stuck, run, me, entry, event
        )
        scope = asyncio.timeout_at(began + self._timeout)
        try:
            async with scope:
                await outcome
        except TimeoutError:
            if not scope.expired():
                raise  # the listener's own TimeoutError
            if run.deliverer is me:  # not counted as stuck already
                self.abandoned += 1
                logger.warning(
                    "change listener %s took longer than listener_timeout (%g s) on "
                    "namespace %r: cancelled",
                    _name(entry.listener),
                    self._timeout,
                    event.namespace,
                )
        finally:
            watch.cancel()
            if run.deliverer is not me:  # it was stuck and has returned at last
                run.busy.discard(entry)
                run.stuck.discard(me)
                run.wake.set()

    def _stuck(
        self, run: _Run, task: asyncio.Task[Any], entry: _Entry, event: ConfigChangeEvent
    ) -> None:
        if run.deliverer is not task:
            return
        self.abandoned += 1
        logger.warning(
            "change listener %s ignored its cancellation at listener_timeout (%g s) on "
            "namespace %r: abandoned; it gets no events until it returns",
            _name(entry.listener),
            self._timeout,
            event.namespace,
        )
        run.busy.add(entry)
        run.stuck.add(task)
        run.deliverer = None
        run.replace.set()

    async def _in_thread(self, run: _Run, entry: _Entry, event: ConfigChangeEvent) -> object:
        """Call a plain listener on the worker thread; raise _Abandoned past the timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, object]] = loop.create_future()

        def settle(outcome: tuple[bool, object]) -> None:
            if not future.done():
                future.set_result(outcome)

        def job() -> None:
            try:
                outcome: tuple[bool, object] = (True, entry.listener(event))
            except BaseException as exc:  # reported on the loop
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed by now
                loop.call_soon_threadsafe(settle, outcome)

        if run.worker is None:
            run.worker = _threads.JobThread("aioapollo-listener")
        worker = run.worker
        worker.submit(job)
        try:
            done, _ = await asyncio.wait([future], timeout=self._timeout)
        except asyncio.CancelledError:  # closing: the thread finishes the call on its own
            if not future.done():
                self.abandoned += 1
            raise
        if not done:
            worker.retire()  # it ends once the call returns; the next call gets a fresh one
            run.worker = None
            self.abandoned += 1
            run.busy.add(entry)
            future.add_done_callback(lambda f: self._returned(run, entry, event, f))
            logger.warning(
                "change listener %s took longer than listener_timeout (%g s) on namespace "
                "%r: abandoned; it gets no events until it returns",
                _name(entry.listener),
                self._timeout,
                event.namespace,
            )
            raise _Abandoned
        ok, value = future.result()
        if not ok:
            assert isinstance(value, BaseException)
            if isinstance(value, Exception):
                raise value
            self._failed(entry, event, value)  # SystemExit & co. from a helper thread
        return value if ok else None

    def _returned(
        self,
        run: _Run,
        entry: _Entry,
        event: ConfigChangeEvent,
        future: asyncio.Future[tuple[bool, object]],
    ) -> None:
        """An abandoned plain call returned: what it missed is delivered now."""
        ok, value = future.result()
        if not ok:
            assert isinstance(value, BaseException)
            self._failed(entry, event, value, late=True)
        elif inspect.iscoroutine(value):
            value.close()  # too late to await it; closed so that it does not warn
        logger.info("change listener %s returned after it was abandoned", _name(entry.listener))
        run.busy.discard(entry)
        run.wake.set()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, object], suspended: Any) -> Generator[Any, Any, object]:
    """Go on with ``coro`` after its first step (which yielded ``suspended``), exactly as
    ``await coro`` would have: what the task sends or throws in is passed on to it."""
    while True:
        try:
            sent = yield suspended
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                suspended = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                suspended = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _name(listener: object) -> str:
    return getattr(listener, "__qualname__", None) or type(listener).__qualname__


def _task_name() -> str:
    task = asyncio.current_task()
    return task.get_name() if task is not None else "aioapollo-listeners"
