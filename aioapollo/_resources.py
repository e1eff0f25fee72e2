"""Live resources: objects built from config (a DB pool, an HTTP client), rebuilt on change.

``holder = cfg.resource(build, keys=..., prefixes=..., namespaces=...)`` watches some keys. The
first :meth:`LiveResource.use` (or :meth:`LiveResource.get`) calls ``build(values)``; when a
release changes what ``build`` would be given, a new object is built and swapped in, in one
step. The old object is closed once the requests that borrowed it (``async with
holder.use() as obj:``) are done, or ``grace`` seconds after the swap, whichever comes first.

A ``build`` that raises on a rebuild leaves the current object in place and is reported: the
client's hooks get an :class:`~aioapollo.ErrorEvent` (operation ``"resource:<name>"``), the
client's stats count it (``stats().resources``, ``degraded``), the log says which resource
failed with which exception class. Exception messages and values are never logged at ERROR:
a failing ``build`` may well name its DSN; the traceback is logged at DEBUG.

Each generation remembers the pid it was built in: an object inherited across ``fork`` is the
parent's (its sockets too), so a child never uses or closes it; its first ``use()`` builds its
own.

:class:`LiveResource` belongs to an :class:`~aioapollo.ApolloClient` and its event loop;
:class:`SyncLiveResource` to a :class:`~aioapollo.SyncApolloClient` and any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from ._exceptions import ApolloError, ClientStateError
from ._hooks import ErrorEvent, HookSet
from ._models import ConfigChangeEvent, NamespaceSnapshot

__all__ = [
    "LiveResource",
    "ResourceBuildError",
    "ResourceSet",
    "ResourceStats",
    "SyncLiveResource",
]

logger = logging.getLogger("aioapollo")

T = TypeVar("T")

#: ``grace``'s default: how long an old object stays open for the requests still using it.
DEFAULT_GRACE = 30.0

Build: TypeAlias = Callable[[NamespaceSnapshot], "T | Awaitable[T]"]
Close: TypeAlias = Callable[[T], "Awaitable[object] | object"]


class ResourceBuildError(ApolloError, RuntimeError):
    """A live resource's ``build`` raised; the resource keeps its previous object.

    Raised by the first :meth:`LiveResource.use` when there is no previous object; otherwise
    only reported (hooks' ``ErrorEvent.error``). The exception ``build`` raised is the
    ``__cause__``; the message names only the resource and that exception's class.

    Attributes:
        resource: The resource's name.
        crash: The class name of the exception ``build`` raised.
    """

    def __init__(self, resource: str, crash: str) -> None:
        super().__init__(f"building resource {resource!r} failed with {crash}")
        self.resource = resource
        self.crash = crash


@dataclass(frozen=True, slots=True)
class ResourceStats:
    """Counters of one live resource (no values).

    Attributes:
        name: The resource's name.
        generation: How many objects were built (0: not built yet); the current one's number.
        borrowed: Borrows of the current object in progress (``use()`` blocks).
        draining: Old objects waiting for their borrowers (or ``grace``) to be closed.
        builds: Successful builds.
        failures: Builds that raised.
        last_error: The class name of the last build failure, while the current object is
            older than it (``None`` once a build succeeds again).
    """

    name: str
    generation: int
    borrowed: int
    draining: int
    builds: int
    failures: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class _Reader(Protocol):
    """What a resource reads from its client: the current snapshot of a namespace."""

    def snapshot(self, namespace: str = ...) -> NamespaceSnapshot: ...


class _Generation(Generic[T]):
    """One built object and who is using it."""

    __slots__ = ("borrowers", "closed", "number", "obj", "pid", "retired", "timer", "values")

    def __init__(self, obj: T, values: Mapping[str, str], number: int) -> None:
        self.obj = obj
        self.values = values
        self.number = number
        self.pid = os.getpid()
        self.borrowers = 0
        self.retired = False
        self.closed = False
        self.timer: Any = None  # asyncio.TimerHandle or threading.Timer while draining


class _Base(Generic[T]):
    """What both flavours share: which values ``build`` gets, and the counters."""

    def __init__(
        self,
        reader: _Reader,
        build: Callable[[NamespaceSnapshot], Any],
        *,
        keys: Iterable[str] | None,
        prefixes: Iterable[str] | None,
        namespaces: Iterable[str] | None,
        close: Callable[[T], object] | None,
        grace: float,
        name: str | None,
        app_id: str,
        hooks: HookSet,
    ) -> None:
        if not callable(build):
            raise TypeError("build must be callable")
        if close is not None and not callable(close):
            raise TypeError("close must be callable (or None: the object's aclose()/close())")
        for arg in (keys, prefixes, namespaces):
            if isinstance(arg, str):
                raise TypeError("keys, prefixes and namespaces take collections, not a string")
        if not grace >= 0:  # also refuses NaN
            raise ValueError("grace must be a number of seconds >= 0")
        self._reader = reader
        self._build = build
        self._keys = frozenset(keys or ())
        self._prefixes = tuple(prefixes or ())
        self.namespaces: tuple[str, ...] = tuple(namespaces or ("application",))
        self._close = close
        self._grace = grace
        self.name = name or getattr(build, "__qualname__", None) or type(build).__qualname__
        self._app_id = app_id
        self._hooks = hooks
        self._gen: _Generation[T] | None = None
        self._draining: set[_Generation[T]] = set()
        self._number = 0
        self._builds = 0
        self._failures = 0
        self._last_error: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ values

    def listener_filters(self) -> dict[str, Any]:
        """The ``add_listener`` filters that wake this resource."""
        return {
            "keys": self._keys or None,
            "prefixes": self._prefixes or None,
            "namespaces": self.namespaces,
        }

    def _values(self) -> NamespaceSnapshot:
        """What ``build`` gets now: the watched keys of the watched namespaces, merged (the
        first namespace that has a key wins), as a snapshot with the typed getters."""
        merged: dict[str, str] = {}
        first: NamespaceSnapshot | None = None
        for namespace in self.namespaces:
            snap = self._reader.snapshot(namespace)
            first = first or snap
            for key, value in snap.items.items():
                if key not in merged and self._wants(key):
                    merged[key] = value
        assert first is not None
        return NamespaceSnapshot(
            first.name,
            "properties",
            merged,
            release_key=first.release_key,
            source=first.source,
            fetched_at=first.fetched_at,
        )

    def _wants(self, key: str) -> bool:
        if not self._keys and not self._prefixes:
            return True
        return key in self._keys or key.startswith(self._prefixes)

    def _current_here(self) -> _Generation[T] | None:
        """The current generation, unless it was built in another process (fork)."""
        gen = self._gen
        if gen is not None and gen.pid != os.getpid():
            # The parent's object: never used or closed here (its sockets are the parent's).
            self._gen = None
            self._draining = set()
            return None
        return gen

    # ------------------------------------------------------------------ reporting

    def _built(self, obj: T, values: NamespaceSnapshot) -> _Generation[T] | None:
        """Install a new object; returns the generation it replaces (to retire)."""
        self._number += 1
        self._builds += 1
        self._last_error = None
        old, self._gen = self._gen, _Generation(obj, dict(values.items), self._number)
        if old is not None:
            logger.info(
                "resource %r rebuilt (generation %d) after a change of its keys",
                self.name,
                self._number,
            )
        return old

    def _failed(self, exc: BaseException, *, first: bool) -> ResourceBuildError:
        self._failures += 1
        self._last_error = type(exc).__name__
        error = ResourceBuildError(self.name, type(exc).__name__)
        error.__cause__ = exc
        if first:
            logger.error("resource %r: build failed with %s", self.name, type(exc).__name__)
        else:
            logger.error(
                "resource %r: rebuild failed with %s; keeping generation %s",
                self.name,
                type(exc).__name__,
                self._gen.number if self._gen is not None else None,
            )
        logger.debug("resource %r: the build's exception", self.name, exc_info=exc)
        if self._hooks:
            self._hooks.error(ErrorEvent(self._app_id, f"resource:{self.name}", error))
        return error

    def _close_failed(self, gen: _Generation[T], exc: BaseException) -> None:
        logger.warning(
            "resource %r: closing generation %d failed with %s",
            self.name,
            gen.number,
            type(exc).__name__,
        )
        logger.debug("resource %r: the close's exception", self.name, exc_info=exc)

    def _late(self, gen: _Generation[T]) -> None:
        if gen.borrowers:
            logger.warning(
                "resource %r: closing generation %d after grace (%g s) while %d borrower(s) "
                "still use it",
                self.name,
                gen.number,
                self._grace,
                gen.borrowers,
            )

    @property
    def generation(self) -> int:
        """The current object's number (1 for the first build; 0 before it)."""
        gen = self._gen
        return 0 if gen is None else gen.number

    @property
    def current(self) -> T:
        """The current object (no borrow is counted: prefer ``use()`` in requests)."""
        gen = self._current_here()
        if gen is None:
            raise ClientStateError(
                f"resource {self.name!r} is not built yet in this process: use() or get() builds it"
            )
        return gen.obj

    def stats(self) -> ResourceStats:
        """The counters (see :class:`ResourceStats`)."""
        gen = self._gen
        return ResourceStats(
            name=self.name,
            generation=0 if gen is None else gen.number,
            borrowed=0 if gen is None else gen.borrowers,
            draining=len(self._draining),
            builds=self._builds,
            failures=self._failures,
            last_error=self._last_error,
        )

    def degraded(self) -> str | None:
        """Why this resource serves an old object, if it does."""
        if self._last_error is None or self._gen is None:
            return None
        return (
            f"resource {self.name!r} keeps generation {self._gen.number}: its rebuild failed "
            f"with {self._last_error}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} generation={self.generation}>"


def _default_close(obj: object) -> Any:
    """``obj.aclose()`` or ``obj.close()``, whichever it has (nothing if neither)."""
    for method in ("aclose", "close"):
        fn = getattr(obj, method, None)
        if callable(fn):
            return fn()
    return None


class LiveResource(_Base[T]):
    """An object built from config and rebuilt when its keys change (see the module doc).

    Made by :meth:`ApolloClient.resource`; lives on the client's event loop.
    """

    def __init__(self, reader: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(reader, *args, **kwargs)
        self._client = reader
        self._lock: asyncio.Lock | None = None
        self._lock_pid: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _build_lock(self) -> asyncio.Lock:
        if self._lock is None or self._lock_pid != os.getpid():
            self._lock, self._lock_pid = asyncio.Lock(), os.getpid()
        return self._lock

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[T]:
        """Borrow the current object for a block: it is not closed before the block ends
        (unless ``grace`` passes first). Builds it on first use."""
        gen = self._current_here() or await self._first()
        gen.borrowers += 1
        try:
            yield gen.obj
        finally:
            gen.borrowers -= 1
            if gen.retired and not gen.borrowers:
                self._close_soon(gen)

    async def get(self) -> T:
        """The current object, built first if need be (no borrow is counted)."""
        gen = self._current_here() or await self._first()
        return gen.obj

    async def _first(self) -> _Generation[T]:
        if self._closed:
            raise ClientStateError(f"resource {self.name!r} is closed")
        for namespace in self.namespaces:
            await self._client.namespace(namespace)  # waits for (or does) start()
        async with self._build_lock():
            gen = self._current_here()
            if gen is not None:
                return gen  # another task built it meanwhile
            values = self._values()
            try:
                obj = await self._call_build(values)
            except Exception as exc:
                raise self._failed(exc, first=True) from exc
            self._built(obj, values)
            assert self._gen is not None
            return self._gen

    async def _call_build(self, values: NamespaceSnapshot) -> T:
        result = self._build(values)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    async def refresh(self) -> bool:
        """Rebuild now if the values ``build`` would get differ from the current object's;
        True when it swapped. (The change listener calls this; so may you.)"""
        if self._closed or self._current_here() is None:
            return False  # nothing built here yet: the first use() reads the newest values
        async with self._build_lock():
            gen = self._current_here()
            if gen is None or self._closed:
                return False
            values = self._values()
            if dict(values.items) == gen.values:
                return False
            try:
                obj = await self._call_build(values)
            except Exception as exc:
                self._failed(exc, first=False)
                return False
            if self._closed:  # closed while building: the new object is not wanted
                await self._close_obj(obj, None)
                return False
            old = self._built(obj, values)
            if old is not None:
                self._retire(old)
            return True

    async def _changed(self, event: ConfigChangeEvent) -> None:
        """The change listener (a coroutine: runs on the client's loop)."""
        await self.refresh()

    def _retire(self, gen: _Generation[T]) -> None:
        gen.retired = True
        if not gen.borrowers:
            self._close_soon(gen)
            return
        self._draining.add(gen)
        gen.timer = asyncio.get_running_loop().call_later(self._grace, self._grace_over, gen)

    def _grace_over(self, gen: _Generation[T]) -> None:
        self._late(gen)
        self._close_soon(gen)

    def _close_soon(self, gen: _Generation[T]) -> None:
        if gen.closed or gen.pid != os.getpid():
            return
        gen.closed = True
        self._draining.discard(gen)
        if gen.timer is not None:
            gen.timer.cancel()
        task = asyncio.get_running_loop().create_task(
            self._close_obj(gen.obj, gen), name=f"aioapollo-resource-close-{self.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_obj(self, obj: T, gen: _Generation[T] | None) -> None:
        try:
            closer = self._close or _default_close
            outcome = closer(obj)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            self._close_failed(gen or _Generation(obj, {}, 0), exc)

    async def aclose(self) -> None:
        """Close the current object and every draining one now; stop watching. Idempotent.

        The client's ``aclose()`` calls this for each of its resources."""
        if self._closed:
            return
        self._closed = True
        remove = getattr(self._client, "_forget_resource", None)
        if remove is not None:
            remove(self)
        gen = self._current_here()
        for old in [*self._draining, *([gen] if gen is not None else [])]:
            old.retired = True
            self._close_soon(old)
        self._gen = None
        if self._tasks:
            await asyncio.wait(list(self._tasks))


class SyncLiveResource(_Base[T]):
    """The blocking flavour: made by :meth:`SyncApolloClient.resource`, usable from any
    thread. ``build`` and ``close`` are plain functions; rebuilds run on the client's listener
    thread."""

    def __init__(self, reader: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(reader, *args, **kwargs)
        if inspect.iscoroutinefunction(self._build) or inspect.iscoroutinefunction(self._close):
            raise TypeError(
                "SyncApolloClient.resource() takes plain functions for build and close; "
                "use ApolloClient.resource() for coroutines"
            )
        self._mutex = threading.RLock()  # guards the generations and counters
        self._building = threading.Lock()  # one build at a time

    @contextlib.contextmanager
    def use(self) -> Iterator[T]:
        """Borrow the current object for a block (see :meth:`LiveResource.use`)."""
        with self._mutex:
            gen = self._current_here()
        if gen is None:
            gen = self._first()
        with self._mutex:
            gen.borrowers += 1
        try:
            yield gen.obj
        finally:
            with self._mutex:
                gen.borrowers -= 1
                done = gen.retired and not gen.borrowers
            if done:
                self._close_now(gen)

    def get(self) -> T:
        """The current object, built first if need be (no borrow is counted)."""
        with self._mutex:
            gen = self._current_here()
        return (gen or self._first()).obj

    def _first(self) -> _Generation[T]:
        if self._closed:
            raise ClientStateError(f"resource {self.name!r} is closed")
        with self._building:
            with self._mutex:
                gen = self._current_here()
            if gen is not None:
                return gen
            values = self._values()
            try:
                obj = self._build(values)
            except Exception as exc:
                with self._mutex:
                    raise self._failed(exc, first=True) from exc
            with self._mutex:
                self._built(obj, values)
                assert self._gen is not None
                return self._gen

    def refresh(self) -> bool:
        """Rebuild now if the values differ from the current object's; True when swapped."""
        with self._building:
            with self._mutex:
                gen = self._current_here()
            if gen is None or self._closed:
                return False
            values = self._values()
            if dict(values.items) == gen.values:
                return False
            try:
                obj = self._build(values)
            except Exception as exc:
                with self._mutex:
                    self._failed(exc, first=False)
                return False
            with self._mutex:
                if self._closed:
                    closing: _Generation[T] | None = _Generation(obj, {}, 0)
                    old = None
                else:
                    closing = None
                    old = self._built(obj, values)
                    if old is not None:
                        old.retired = True
                        if old.borrowers:
                            self._draining.add(old)
                            old.timer = threading.Timer(self._grace, self._grace_over, (old,))
                            old.timer.daemon = True
                            old.timer.start()
                        else:
                            closing = old
            if closing is not None:
                self._close_now(closing)
            return old is not None

    def _changed(self, event: ConfigChangeEvent) -> None:
        """The change listener (a plain function: runs on the client's listener thread)."""
        self.refresh()

    def _grace_over(self, gen: _Generation[T]) -> None:
        with self._mutex:
            self._late(gen)
        self._close_now(gen)

    def _close_now(self, gen: _Generation[T]) -> None:
        with self._mutex:
            if gen.closed or gen.pid != os.getpid():
                return
            gen.closed = True
            self._draining.discard(gen)
            timer = gen.timer
        if timer is not None:
            timer.cancel()
        try:
            (self._close or _default_close)(gen.obj)
        except Exception as exc:
            self._close_failed(gen, exc)

    def close(self) -> None:
        """Close the current object and every draining one now; stop watching. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            gen = self._current_here()
            closing = [*self._draining, *([gen] if gen is not None else [])]
            self._gen = None
        remove = getattr(self._reader, "_forget_resource", None)
        if remove is not None:
            remove(self)
        for old in closing:
            old.retired = True
            self._close_now(old)


class ResourceSet:
    """A client's live resources: their listeners, stats and closing (for the clients)."""

    def __init__(self) -> None:
        self._items: list[_Base[Any]] = []

    def add(self, resource: _Base[Any]) -> None:
        self._items.append(resource)

    def discard(self, resource: _Base[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._items.remove(resource)

    def stats(self) -> tuple[ResourceStats, ...]:
        return tuple(r.stats() for r in self._items)

    def degraded(self) -> list[str]:
        return [reason for r in self._items if (reason := r.degraded()) is not None]

    async def aclose(self) -> None:
        for resource in list(self._items):
            if isinstance(resource, LiveResource):
                await resource.aclose()

    def close(self) -> None:
        for resource in list(self._items):
            if isinstance(resource, SyncLiveResource):
                resource.close()
