"""SyncApolloClient: an ApolloClient for WSGI apps, polling in a daemon thread in every worker.

The client loads in the process that calls :meth:`SyncApolloClient.start`. In a preforking
master (uWSGI without ``lazy-apps``, ``gunicorn --preload``) it loads on a temporary thread that
is joined before ``start()`` returns, so no thread is alive when the master forks: a thread
running at fork time makes uWSGI workers deadlock at birth. Each worker then starts its own
poller thread right after fork (Python's at-fork hook, uWSGI's post-fork hook) or, where no
hook ran, on its first read: reads outside a live poller take a slow path that checks the pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

from ._apollo.parsing import require_parsers
from ._config import ClientOptions, ClientSettings, EnvOverrides, options_from_env
from ._core.engine import ClientState, Engine
from ._core.listeners import OnChange
from ._exceptions import ClientStateError, NamespaceNotFoundError
from ._hooks import HookSet
from ._models import NamespaceSnapshot, Source
from ._resources import DEFAULT_GRACE, SyncLiveResource
from ._runtime import owner as _owner
from ._runtime import process as _process
from ._runtime import threads as _threads
from ._runtime.servers import (
    is_master,
    on_master_released,
    preforking_master,
    threads_usable,
    warn_if_uwsgi_threads_disabled,
)
from ._stats import ClientStats

__all__ = ["SyncApolloClient"]

logger = logging.getLogger("aioapollo")

T = TypeVar("T")

#: After a poller failed to start in a worker, reads retry starting it at most this often.
_RETRY_SECONDS = 5.0


class SyncApolloClient(OnChange, _owner.ProcessLocal):
    """A blocking Apollo client for WSGI apps (Flask, Django) under any server.

    It runs the same engine as :class:`ApolloClient` on its own event loop in a daemon
    thread. Reads never cross threads: :meth:`get` is a dict lookup on the current snapshot.
    It is fork-safe by
    itself: create and start it at import time, with or without ``lazy-apps`` or
    ``--preload``, and every worker keeps updating.

    Takes exactly the arguments of :class:`ApolloClient`.
    """

    def __init__(self, app_id: str, **options: Unpack[ClientSettings]) -> None:
        hooks = options.pop("hooks", None)
        self._options = ClientOptions.build(app_id, **options)
        # The engine's own live flag is for ApolloClient's read path; this facade's is below.
        self._engine = Engine(self._options, HookSet(hooks), lambda live: None)
        self._listeners = self._engine.listeners  # (add_listener and friends: OnChange)
        self._store = self._engine.store
        #: The read view (never replaced: the read path looks values up in it directly).
        self._values = self._store.values
        #: The one flag the read path checks: a poller thread is running in this process.
        self._live = False
        self._lock = _threads.allocate_lock()
        self._started = False
        self._closed = False
        #: Process generations (see ``_process``): where start() ran, where the poller runs.
        self._start_generation: int | None = None
        self._poll_generation: int | None = None
        #: The preforking server whose master called start(), if one did.
        self._master: str | None = None
        self._thread: _threads.OsThread | None = None
        #: The poller's loop and its stop signal, once it has loaded.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failed_at: float | None = None
        _process.track(self)

    @classmethod
    def from_env(cls, **overrides: Unpack[EnvOverrides]) -> Self:
        """Build a client from the Java client's environment variables (overrides win).

        See :meth:`ApolloClient.from_env`.
        """
        kwargs = options_from_env(**overrides)
        return cls(kwargs.pop("app_id"), **kwargs)

    # ------------------------------------------------------------------ introspection

    @property
    def options(self) -> ClientOptions:
        """The settings this client runs with (the secret is hidden from its repr)."""
        return self._options

    @property
    def app_id(self) -> str:
        """The Apollo appId."""
        return self._options.app_id

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The watched namespaces, as configured."""
        return self._options.namespaces

    @property
    def sources(self) -> Mapping[str, Source]:
        """Where each loaded namespace's current values came from (read-only)."""
        return MappingProxyType({n: s.source for n, s in self._store.snapshots().items()})

    @property
    def state(self) -> ClientState:
        """The lifecycle state in this process, as :attr:`ApolloClient.state` names it.

        ``RUNNING`` while this process's poller runs; ``FORKED`` in a forked child whose
        poller has not started (yet); a preforking master that loaded and polls nowhere
        reports ``CREATED``, its values readable.
        """
        if self._closed:
            return ClientState.CLOSED
        if self._live:
            return ClientState.RUNNING
        inner = self._engine.state
        if not self._started and inner is ClientState.CREATED:
            return ClientState.CREATED if self._thread is None else ClientState.STARTING
        if self._started and not self._is_master() and self._poll_generation is None:
            return ClientState.FORKED
        return inner

    @property
    def notification_ids(self) -> Mapping[str, int]:
        """The long poll's notification id per namespace (-1 until first notified)."""
        return MappingProxyType({n: r.notification_id for n, r in self._store.records.items()})

    @property
    def last_poll_success(self) -> float | None:
        """Epoch seconds of the last long poll answered with 200 or 304, if any."""
        return self._engine.last_poll_success

    def stats(self) -> ClientStats:
        """A point-in-time health summary, as :meth:`ApolloClient.stats` (never values)."""
        return dataclasses.replace(self._engine.stats(), state=self.state.value)

    @property
    def polling(self) -> bool:
        """Whether a poller thread is running in this process (False in a preforking master)."""
        return self._live

    def __repr__(self) -> str:
        return (
            f"<SyncApolloClient app_id={self.app_id!r} namespaces={list(self.namespaces)!r} "
            f"polling={self._live}>"
        )

    # ------------------------------------------------------------------ reads

    @overload
    def get(self, key: str, default: None = None, namespace: str = ...) -> str | None: ...
    @overload
    def get(self, key: str, default: T, namespace: str = ...) -> str | T: ...
    def get(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        """The value of ``key`` in ``namespace``, or ``default``: a dict lookup, never I/O."""
        if self._live:
            try:
                return self._values[namespace].get(key, default)
            except KeyError:
                pass
        return self._read_slow(key, default, namespace)

    def _read_slow(self, key: str, default: Any, namespace: str) -> Any:
        self._ensure_polling()
        values = self._values.get(namespace)
        if values is None:
            if namespace not in self._store:
                raise NamespaceNotFoundError(namespace)
            raise ClientStateError(
                f"namespace {namespace!r} is not loaded: "
                + ("the client is closed" if self._closed else "call start() first")
            )
        return values.get(key, default)

    def snapshot(self, namespace: str = "application") -> NamespaceSnapshot:
        """The current snapshot of a namespace (typed getters live on it)."""
        snap = self._store.snapshot(namespace)
        if snap is None or not self._live:
            self._read_slow("", None, namespace)  # raises the right error, or starts polling
            snap = self._store.snapshot(namespace)
            assert snap is not None
        return snap

    def get_int(
        self, key: str, default: int | None = None, namespace: str = "application"
    ) -> int | None:
        """``key`` as an int (:class:`ConfigValueError` if malformed)."""
        return self.snapshot(namespace).get_int(key, default)

    def get_float(
        self, key: str, default: float | None = None, namespace: str = "application"
    ) -> float | None:
        """``key`` as a finite float."""
        return self.snapshot(namespace).get_float(key, default)

    def get_bool(
        self, key: str, default: bool | None = None, namespace: str = "application"
    ) -> bool | None:
        """``key`` as a bool (true/false, 1/0, yes/no, on/off)."""
        return self.snapshot(namespace).get_bool(key, default)

    def get_list(
        self,
        key: str,
        default: list[str] | None = None,
        namespace: str = "application",
        *,
        delimiter: str = ",",
    ) -> list[str] | None:
        """``key`` split on ``delimiter``."""
        return self.snapshot(namespace).get_list(key, default, delimiter=delimiter)

    def get_json(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        """``key`` parsed as JSON."""
        return self.snapshot(namespace).get_json(key, default)

    def get_duration(
        self, key: str, default: timedelta | None = None, namespace: str = "application"
    ) -> timedelta | None:
        """``key`` as a timedelta: ``"1h30m"``, ``"500ms"``, ``"PT90S"``."""
        return self.snapshot(namespace).get_duration(key, default)

    # ------------------------------------------------------------------ live resources

    def resource(
        self,
        build: Callable[[NamespaceSnapshot], T],
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
        close: Callable[[T], object] | None = None,
        grace: float = DEFAULT_GRACE,
        name: str | None = None,
    ) -> SyncLiveResource[T]:
        """Like :meth:`ApolloClient.resource`, with plain functions: ``with holder.use() as
        obj:`` from any thread; rebuilds run on the client's listener thread."""
        inner = self._engine
        holder: SyncLiveResource[T] = SyncLiveResource(
            self, build, keys=keys, prefixes=prefixes, namespaces=namespaces, close=close,
            grace=grace, name=name, app_id=self.app_id, hooks=inner.hooks,
        )  # fmt: skip
        self.add_listener(holder._changed, **holder.listener_filters())
        inner.resources.add(holder)
        return holder

    def _forget_resource(self, holder: SyncLiveResource[Any]) -> None:
        with contextlib.suppress(ValueError):
            self.remove_listener(holder._changed)
        self._engine.resources.discard(holder)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, *, prefork: bool | None = None) -> None:
        """Load every namespace, then keep them updated in every process that reads them.

        Returns once loaded, like :meth:`ApolloClient.start` (and raises what it raises).

        Args:
            prefork: Whether this process is a preforking master whose workers do the
                polling. ``None`` (the default) detects uWSGI's master and gunicorn's arbiter;
                pass ``True`` for other preforking servers. A master loads on a temporary
                thread and keeps no thread running; elsewhere a poller thread starts now.
        """
        require_parsers(self._store.formats())  # before any thread starts
        _process.install()
        generation = _process.current()
        with self._lock:
            pid = os.getpid()
            if self._closed:
                raise ClientStateError("cannot reopen a closed client; create a new one")
            if self._started:
                if generation == self._start_generation:
                    raise ClientStateError("already started")
                # A forked child: its poller starts by itself; make sure it runs.
                if self._poll_generation != generation:
                    self._spawn_poller(wait=True)
                return
            warn_if_uwsgi_threads_disabled()
            if prefork is None:
                server = preforking_master()
            else:
                server = "a preforking server" if prefork else None
            if not server and not threads_usable():
                _run_on_temporary_thread(self._load_and_suspend)  # loads, never polls
                self._master = "uWSGI without threads"
            elif not server:
                self._spawn_poller(wait=True)
            else:
                _run_on_temporary_thread(self._load_and_suspend)
                self._master = server
                # A Celery worker whose pool turns out not to fork polls here after all.
                on_master_released(self._ensure_polling)
                logger.info(
                    "SyncApolloClient(%r) loaded in the %s master (pid %s); each worker polls",
                    self.app_id,
                    server,
                    pid,
                )
            self._started, self._start_generation = True, generation

    async def _load_and_suspend(self) -> None:
        # A preforking master never leads a sharing group: nothing may keep running here.
        await self._engine.start(share_poll=False)
        await self._engine.suspend()

    def close(self) -> None:
        """Stop this process's poller thread. Idempotent; reads keep the last values."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._live = False
            self._engine.resources.close()
            thread = self._thread
            here = _process.current()
            if thread is not None and thread.is_alive() and self._poll_generation == here:
                loop, stop = self._loop, self._stop  # None while loading: it then stops
                if loop is not None and stop is not None:
                    if thread.is_current():  # from a coroutine listener, on that loop
                        stop.set()
                        return
                    with contextlib.suppress(RuntimeError):  # the loop ended already
                        loop.call_soon_threadsafe(stop.set)
                thread.join(self._options.close_timeout + 1.0)
                return
            # A master, or a child whose poller (if any) belonged to its parent: aclose()
            # knows a client started in another process and only marks it closed.
            _run_on_temporary_thread(self._engine.aclose)

    # ------------------------------------------------------------------ the poller thread

    def _is_master(self) -> bool:
        """Whether this process is the preforking master that called start()."""
        if self._master is None:
            return False
        if self._master == "uWSGI without threads":
            return True  # never a thread here, master or worker
        return is_master(self._master, self._start_generation)

    def _ensure_polling(self) -> None:
        """Start this process's poller if it should run here and does not (slow path only)."""
        generation = _process.current()
        if (
            not self._started
            or self._closed
            or generation == self._poll_generation
            or self._is_master()
        ):
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < _RETRY_SECONDS:
            return
        if not threads_usable():
            warn_if_uwsgi_threads_disabled()
            return
        with self._lock:
            if self._poll_generation != generation and not self._closed:
                self._spawn_poller(wait=False)

    def _spawn_poller(self, *, wait: bool) -> None:
        """Start the poller thread (lock held). ``wait``: until loaded, raising its error."""
        ready = _threads.Event()
        errors: list[BaseException] = []
        thread = _threads.OsThread(
            lambda: self._thread_main(thread, ready, errors), f"aioapollo-{self.app_id}"
        )
        self._thread, self._loop, self._stop = thread, None, None
        self._poll_generation = _process.current()
        thread.start()
        if wait:
            ready.wait()
            if errors:
                raise errors[0]

    def _thread_main(
        self, thread: _threads.OsThread, ready: _threads.Event, errors: list[BaseException]
    ) -> None:
        _block_signals()
        try:
            with asyncio.Runner(loop_factory=_threads.new_event_loop) as runner:
                runner.run(self._serve(ready, errors))
        except BaseException as exc:  # pragma: no cover - the loop itself failed
            errors.append(exc)
        finally:
            if self._thread is thread:
                self._live = False
                if errors:
                    self._poll_generation = None
                    self._failed_at = time.monotonic()
            if errors and not ready.is_set():
                logger.error(
                    "SyncApolloClient(%r): the poller could not start in process %s: %s",
                    self.app_id,
                    os.getpid(),
                    errors[0],
                )
            ready.set()

    async def _serve(self, ready: _threads.Event, errors: list[BaseException]) -> None:
        try:
            await self._engine.start(share_poll=self._options.share_poll)
        except Exception as exc:
            errors.append(exc)
            return
        stop = asyncio.Event()
        try:
            self._loop, self._stop = asyncio.get_running_loop(), stop
            self._failed_at = None
            ready.set()
            if not self._closed:  # close() while loading: it found no loop to stop
                self._live = True
                await stop.wait()
        finally:
            self._live = False
            self._loop = self._stop = None
            await self._engine.aclose()

    def _forked(self) -> None:
        """In a forked child (called by ``_process``): drop the parent's thread."""
        self._lock = _threads.allocate_lock()  # the parent's may have been held by a thread
        self._live = False
        self._thread = None
        self._loop = self._stop = None
        self._failed_at = None

    def _resume(self) -> None:
        """In a forked child, after every reset ran: start its poller (not in a master)."""
        if not self._started or self._closed or self._is_master():
            return
        if _process.under_uwsgi and not (_process.in_uwsgi_post_fork and threads_usable()):
            return  # a thread started from Python's at-fork hook can hang a uWSGI worker
        if _threads.gevent_patch_pending():
            # A gunicorn gevent worker patches right after fork: start once it has (or on
            # the first read, should it never patch).
            _threads.on_gevent_patched(self._resume)
            return
        with self._lock:
            if self._poll_generation != _process.current():
                self._spawn_poller(wait=False)


def _run_on_temporary_thread(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn()`` in a fresh event loop on a thread that is joined before returning."""
    errors: list[BaseException] = []
    if not threads_usable():  # uWSGI without threads: a thread would never start
        asyncio.run(fn())
        return

    def work() -> None:
        _block_signals()
        try:
            with asyncio.Runner(loop_factory=_threads.new_event_loop) as runner:
                runner.run(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = _threads.OsThread(work, "aioapollo-load")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _block_signals() -> None:
    """Keep process signals away from this thread (and the threads it starts).

    Servers handle SIGHUP, SIGTERM and friends in C (uWSGI's graceful kill calls ``exit()``
    from its handler); run on one of our threads, that can hang a worker's shutdown.
    """
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no pthreads: nothing to do
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
