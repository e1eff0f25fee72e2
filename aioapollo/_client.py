"""ApolloClient: lifecycle, reads and listeners over one release pipeline.

Sources (the Apollo source in ``_apollo.loader``, a sharing leader, the disk cache at start)
deliver releases to the client's :class:`~aioapollo._core.store.NamespaceStore`; sinks follow
the store (listener dispatch, hooks, the sharing leader's push, the cache writer). See
docs/architecture.md.

The client is inert until :meth:`ApolloClient.start`: constructing one does no I/O and touches
no event loop, so it is safe at import time and under ``gunicorn --preload``. Reads are a dict
lookup on the current snapshot; releases are swapped in whole, never mutated.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from datetime import timedelta
from ssl import SSLContext
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

from ._apollo.cache import DiskCache
from ._apollo.loader import ApolloSource
from ._apollo.parsing import require_parsers
from ._config import DEFAULT, ClientOptions, DefaultType, EnvOverrides, options_from_env
from ._core.cachewriter import CacheWriter
from ._core.listeners import ChangeListener, ListenerRegistry, OnChange
from ._core.store import Change, NamespaceStore
from ._core.supervise import Loop, Supervisor
from ._exceptions import (
    ClientStateError,
    NamespaceNotFoundError,
)
from ._hooks import ChangeEvent, Hooks, HookSet, RoleEvent
from ._models import NamespaceSnapshot, Source
from ._runtime import owner as _owner
from ._runtime import process as _process
from ._share import group as share_mod
from ._share.rendezvous import ShareUnavailable
from ._stats import ClientStats, collect_stats

__all__ = ["ApolloClient", "ClientState"]

logger = logging.getLogger("aioapollo")

T = TypeVar("T")


class ClientState(enum.Enum):
    """Lifecycle of an :class:`ApolloClient`."""

    #: Constructed; nothing started. ``start()`` is allowed.
    CREATED = "created"
    #: ``start()`` is loading the namespaces.
    STARTING = "starting"
    #: Loaded; the poller runs in this process.
    RUNNING = "running"
    #: Started in a parent process and inherited by this forked child: values are frozen
    #: until ``start()`` is called here.
    FORKED = "forked"
    #: ``aclose()`` is cancelling tasks.
    CLOSING = "closing"
    #: Closed for good; reads still return the last values.
    CLOSED = "closed"


class ApolloClient(OnChange, _owner.ProcessLocal):
    """An asyncio client for one Apollo app: long-polls all its namespaces in one task.

    Args:
        app_id: The Apollo appId.
        namespaces: Namespaces to load and watch (``"application"`` by default). Non-properties
            namespaces carry their format suffix, e.g. ``"db.json"``.
        config_server: Config service URL(s), used directly (no discovery).
        meta_server: Meta server URL(s): config services are discovered from them.
        cluster: The cluster to read (``"default"``).
        data_center: The IDC, the server's fallback cluster.
        secret: The access-key secret; every ``/configs`` and long poll is signed.
        label: Gray-release label. ``ip``: the IP to report for gray releases.
        cache_dir: Local fallback cache directory; ``None`` disables the cache.
        allow_empty: Let ``start()`` succeed when a namespace can be served by neither Apollo
            nor the cache (it stays empty until released).
        hooks: :class:`Hooks` to report polls, fetches, changes and errors to (metrics).

    The other keyword arguments (timeouts, intervals, limits, TLS, sharing) are the fields of
    :class:`ClientOptions`, with the same names, types and defaults; each is documented
    there and in the README's settings table.

    Facade interface (internal, for :class:`~aioapollo.SyncApolloClient` and nothing else):
    ``_store`` is the namespace store, whose ``values`` dict a facade may keep for its read
    path (it is never replaced); ``_suspend()`` stops every task but keeps the values and
    ``_start(share=False)`` never joins a sharing group (both for a preforking master, where
    nothing may keep running). Fork state is not part of it: both clients ask
    ``_runtime.process`` which generation they run in.
    """

    def __init__(
        self,
        app_id: str,
        *,
        namespaces: Iterable[str] | str = ("application",),
        config_server: str | Iterable[str] | None = None,
        meta_server: str | Iterable[str] | None = None,
        cluster: str = "default",
        data_center: str | None = None,
        secret: str | None = None,
        label: str | None = None,
        ip: str | None = None,
        cache_dir: str | os.PathLike[str] | DefaultType | None = DEFAULT,
        allow_empty: bool = False,
        hooks: Hooks | Iterable[Hooks] | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        poll_timeout: float = 90.0,
        server_hold: float = 60.0,
        start_timeout: float | None = None,
        warm_start_timeout: float | None = 3.0,
        lazy_start: bool = False,
        refresh_interval: float = 300.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 120.0,
        fetch_retry_delay: float = 1.0,
        poll_min_interval: float = 0.5,
        close_timeout: float = 5.0,
        listener_timeout: float | None = 60.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        ssl: SSLContext | bool | None = None,
        share_poll: bool = False,
        share_dir: str | os.PathLike[str] | None = None,
        share_max_followers: int = 128,
    ) -> None:
        self._options = ClientOptions.build(
            app_id,
            namespaces=namespaces,
            config_server=config_server,
            meta_server=meta_server,
            cache_dir=cache_dir,
            cluster=cluster,
            data_center=data_center,
            secret=secret,
            label=label,
            ip=ip,
            allow_empty=allow_empty,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            poll_timeout=poll_timeout,
            server_hold=server_hold,
            start_timeout=start_timeout,
            warm_start_timeout=warm_start_timeout,
            lazy_start=lazy_start,
            refresh_interval=refresh_interval,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            fetch_retry_delay=fetch_retry_delay,
            poll_min_interval=poll_min_interval,
            close_timeout=close_timeout,
            listener_timeout=listener_timeout,
            max_body_bytes=max_body_bytes,
            ssl=ssl,
            share_poll=share_poll,
            share_dir=share_dir,
            share_max_followers=share_max_followers,
        )
        opts = self._options
        self._state = ClientState.CREATED
        #: The one flag the read path checks: True only while RUNNING in the starting process.
        self._live = False
        #: The process generation (see ``_process``) this client was started in.
        self._generation: int | None = None
        self._started_pid: int | None = None
        #: The event loop start() ran on: the client's tasks and futures belong to it.
        self._owner_loop: asyncio.AbstractEventLoop | None = None
        #: The one owner of every namespace's state; sources apply releases to it.
        self._store = NamespaceStore(opts.namespaces)
        #: The read view (never replaced: the read path looks values up in it directly).
        self._values = self._store.values
        self._listeners = ListenerRegistry(
            timeout=opts.listener_timeout, close_timeout=opts.close_timeout
        )
        self._cache = DiskCache.for_options(opts)
        self._writer: CacheWriter | None = None  # from start() to aclose()
        self._share: share_mod.Sharing | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._fork_warned = False
        self._hooks = HookSet(hooks)
        #: Runs every background loop: restarts it after a crash and knows which are degraded.
        self._supervisor = Supervisor(opts.app_id, self._hooks)
        self._apollo = ApolloSource(opts, self._store, self._cache, self._hooks, self._spawn)
        # The sinks, in this order: listeners hear of a release before the cache writer
        # writes it (see _core.cachewriter). None of them calls another.
        self._store.subscribe(self._to_listeners)
        self._store.subscribe(self._to_hooks)
        self._store.subscribe(self._to_followers)
        self._store.subscribe(self._to_cache)

    @classmethod
    def from_env(cls, **overrides: Unpack[EnvOverrides]) -> Self:
        """Build a client from the Java client's environment variables (overrides win).

        Reads ``APP_ID``, ``APOLLO_META``, ``APOLLO_CONFIG_SERVICE``,
        ``APOLLO_ACCESS_KEY_SECRET``, ``APOLLO_LABEL``, ``IDC``, ``APOLLO_CLUSTER``,
        ``APOLLO_CACHE_DIR``, ``APOLLO_CACHE_FILE_ENABLE`` and ``APOLLO_NAMESPACES``.
        """
        kwargs = options_from_env(**overrides)
        return cls(kwargs.pop("app_id"), **kwargs)

    # ------------------------------------------------------------------ introspection

    @property
    def app_id(self) -> str:
        """The Apollo appId."""
        return self._options.app_id

    @property
    def options(self) -> ClientOptions:
        """The settings this client runs with (the secret is hidden from its repr)."""
        return self._options

    @property
    def state(self) -> ClientState:
        """The lifecycle state."""
        return self._state

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The watched namespaces, as configured."""
        return self._options.namespaces

    @property
    def sources(self) -> Mapping[str, Source]:
        """Where each loaded namespace's current values came from (read-only)."""
        return MappingProxyType(
            {n: r.snapshot.source for n, r in self._store.records.items() if r.snapshot is not None}
        )

    @property
    def notification_ids(self) -> Mapping[str, int]:
        """The long poll's notification id per namespace (-1 until first notified)."""
        return MappingProxyType({n: r.notification_id for n, r in self._store.records.items()})

    @property
    def last_poll_success(self) -> float | None:
        """Epoch seconds of the last long poll answered with 200 or 304, if any."""
        own = self._apollo.last_poll_success
        share = self._share
        if share is None or share.leader_poll_success is None:
            return own
        return max(own or 0.0, share.leader_poll_success)

    @property
    def poll_cuts(self) -> int:
        """Long polls a proxy cut at about the hold time (handled like a 304; see README)."""
        return self._apollo.cuts.count

    def stats(self) -> ClientStats:
        """A point-in-time health summary (for a health endpoint); never holds values."""
        return collect_stats(
            self._store,
            options=self._options,
            state=self._state.value,
            last_poll_success=self.last_poll_success,
            poll_cuts=self.poll_cuts,
            share=self._share,
            supervisor=self._supervisor,
            listeners=self._listeners.stats(),
        )

    def __repr__(self) -> str:
        return (
            f"<ApolloClient app_id={self.app_id!r} namespaces={list(self.namespaces)!r} "
            f"state={self._state.value}>"
        )

    # ------------------------------------------------------------------ reads

    @overload
    async def get(self, key: str, default: None = None, namespace: str = ...) -> str | None: ...
    @overload
    async def get(self, key: str, default: T, namespace: str = ...) -> str | T: ...
    async def get(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        """The value of ``key`` in ``namespace``, or ``default``.

        A dict lookup on the current snapshot. While ``start()`` is still loading, waits for
        it to finish.
        """
        if self._live:
            try:
                return self._values[namespace].get(key, default)
            except KeyError:
                pass
        await self._await_ready("get()")
        return self._read_slow(key, default, namespace)

    @overload
    def get_nowait(self, key: str, default: None = None, namespace: str = ...) -> str | None: ...
    @overload
    def get_nowait(self, key: str, default: T, namespace: str = ...) -> str | T: ...
    def get_nowait(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        """Like :meth:`get`, without awaiting: raises if the namespace is not loaded yet."""
        if self._live:
            try:
                return self._values[namespace].get(key, default)
            except KeyError:
                pass
        return self._read_slow(key, default, namespace)

    def _read_slow(self, key: str, default: Any, namespace: str) -> Any:
        values = self._values.get(namespace)
        if values is None:
            if namespace not in self._store:
                raise NamespaceNotFoundError(namespace)
            raise ClientStateError(
                f"namespace {namespace!r} is not loaded: "
                + (
                    "call (and await) start() first"
                    if self._state is ClientState.CREATED
                    else f"client state is {self._state.value}"
                )
            )
        if self._state is ClientState.FORKED or (
            self._state is ClientState.RUNNING and self._generation != _process.current()
        ):
            self._warn_forked()
        return values.get(key, default)

    def snapshot(self, namespace: str = "application") -> NamespaceSnapshot:
        """The current snapshot of a namespace (typed getters live on it)."""
        snap = self._store.snapshot(namespace)
        if snap is None:
            self._read_slow("", None, namespace)  # raises the right error
            raise AssertionError  # pragma: no cover
        if self._state is ClientState.FORKED:
            self._warn_forked()
        return snap

    async def namespace(self, namespace: str = "application") -> NamespaceSnapshot:
        """Like :meth:`snapshot`, waiting for ``start()`` if it is still loading."""
        await self._await_ready("namespace()")
        return self.snapshot(namespace)

    async def _await_ready(self, what: str) -> None:
        """The awaitable reads' slow path: wait for a ``start()`` in progress."""
        while self._options.lazy_start and self._state is not ClientState.RUNNING:
            # lazy_start: the first awaited read starts the client; concurrent ones wait for
            # it (STARTING) and, if it failed, the next one tries again.
            if self._state in (ClientState.CREATED, ClientState.FORKED):
                await self.start()
            elif self._state is ClientState.STARTING and self._ready is not None:
                if _owner.foreign_loop(self._owner_loop):
                    raise _owner.other_loop_error(self.app_id, what, self._owner_loop)
                await self._ready.wait()
            else:
                break
        # Loop ownership: a start() in progress, or a client whose loop has ended, belongs to
        # its own loop. Waiting on its futures from another loop could hang: say so instead.
        if (
            self._state in (ClientState.STARTING, ClientState.RUNNING)
            and self._generation == _process.current()
            and _owner.foreign_loop(self._owner_loop)
            and (self._state is ClientState.STARTING or _owner.loop_ended(self._owner_loop))
        ):
            raise _owner.other_loop_error(self.app_id, what, self._owner_loop)
        if self._state is ClientState.STARTING and self._ready is not None:
            await self._ready.wait()

    async def get_int(
        self, key: str, default: int | None = None, namespace: str = "application"
    ) -> int | None:
        """``key`` as an int (:class:`ConfigValueError` if malformed)."""
        return (await self.namespace(namespace)).get_int(key, default)

    async def get_float(
        self, key: str, default: float | None = None, namespace: str = "application"
    ) -> float | None:
        """``key`` as a finite float."""
        return (await self.namespace(namespace)).get_float(key, default)

    async def get_bool(
        self, key: str, default: bool | None = None, namespace: str = "application"
    ) -> bool | None:
        """``key`` as a bool (true/false, 1/0, yes/no, on/off)."""
        return (await self.namespace(namespace)).get_bool(key, default)

    async def get_list(
        self,
        key: str,
        default: list[str] | None = None,
        namespace: str = "application",
        *,
        delimiter: str = ",",
    ) -> list[str] | None:
        """``key`` split on ``delimiter``."""
        return (await self.namespace(namespace)).get_list(key, default, delimiter=delimiter)

    async def get_json(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        """``key`` parsed as JSON."""
        return (await self.namespace(namespace)).get_json(key, default)

    async def get_duration(
        self, key: str, default: timedelta | None = None, namespace: str = "application"
    ) -> timedelta | None:
        """``key`` as a timedelta: ``"1h30m"``, ``"500ms"``, ``"PT90S"`` (see
        :meth:`NamespaceSnapshot.get_duration`)."""
        return (await self.namespace(namespace)).get_duration(key, default)

    def _warn_forked(self) -> None:
        if not self._fork_warned:
            self._fork_warned = True
            logger.warning(
                "ApolloClient(%r) was started in process %s and is read in forked process %s, "
                "where it was never started: its values are frozen at fork time. Call "
                "`await client.start()` in each worker (e.g. in the ASGI lifespan), or use "
                "SyncApolloClient in WSGI apps.",
                self.app_id,
                self._started_pid,
                os.getpid(),
            )

    # ------------------------------------------------------------------ listeners

    def add_listener(
        self,
        listener: ChangeListener,
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        """Register ``listener`` (see :meth:`on_change`)."""
        for name in namespaces or ():
            if name not in self._store:
                raise NamespaceNotFoundError(name)
        self._listeners.add(listener, keys=keys, prefixes=prefixes, namespaces=namespaces)

    def remove_listener(self, listener: ChangeListener) -> None:
        """Unregister ``listener``; :class:`ValueError` if it is not registered."""
        self._listeners.remove(listener)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load every namespace concurrently, then start polling.

        Returns once every namespace is loaded from Apollo or, when Apollo cannot serve it,
        from the local cache. Raises :class:`NamespaceUnavailableError` naming the namespaces
        neither could serve (unless ``allow_empty``); the client can then be started again.

        With ``share_poll=True`` the client joins its host's sharing group first: it leads
        (polls Apollo and pushes to the others) or loads from the leader and follows it.
        """
        await self._start(share=self._options.share_poll)

    async def _start(self, *, share: bool) -> None:
        require_parsers(self._store.formats())
        _process.install()
        if self._state in (ClientState.STARTING, ClientState.RUNNING):
            if self._generation == _process.current():
                if _owner.foreign_loop(self._owner_loop):  # loop ownership: say what to do
                    raise _owner.other_loop_error(self.app_id, "start()", self._owner_loop)
                raise ClientStateError("already started")
            self._forked()  # forked where no hook ran
        if self._state in (ClientState.CLOSING, ClientState.CLOSED):
            raise ClientStateError("cannot reopen a closed client; create a new one")
        previous = self._state
        self._state = ClientState.STARTING
        self._generation = _process.current()
        self._started_pid = os.getpid()
        self._owner_loop = asyncio.get_running_loop()
        _process.track(self)
        self._ready = asyncio.Event()
        for record in self._store.records.values():
            record.drop_lock()  # fetch locks belong to this start's loop
        apollo = self._apollo
        apollo.open()
        sharing = self._share = self._join_group() if share else None
        # The dispatcher runs before the load: when warm values (inherited across fork, or
        # kept by _suspend) differ from what Apollo serves now, that is a real change that
        # this process's listeners must hear about. It is scheduled before any fetch can
        # complete, so it is waiting on its queue by the time an event is emitted.
        self._listeners.open()
        dispatcher = self._spawn(self._listeners.run, "listeners")
        self._open_cache_writer()
        # Loads that outlived warm_start_timeout (warm values were served) go on in the
        # background; the client owns them like its other tasks.
        loads: list[asyncio.Task[None]] = []
        try:
            await apollo.connect()
            if sharing is None:
                loads = await apollo.initial_load()
            else:
                loads = await self._load_shared(sharing)
            if self._state is not ClientState.STARTING:
                raise ClientStateError("the client was closed while starting")
        except BaseException:
            for task in (dispatcher, *loads):
                task.cancel()
            await asyncio.wait([dispatcher, *loads])
            await self._close_cache_writer(self._options.close_timeout)
            self._share = None
            if sharing is not None:
                await sharing.close()
            if self._state is ClientState.STARTING:
                self._state = previous
            self._ready.set()
            await apollo.aclose()
            raise
        self._tasks = [dispatcher, *loads]
        sharing = self._share  # None if the group could not be joined after all
        if sharing is None or sharing.role == share_mod.LEADER or sharing.degraded:
            apollo.start_polling()
        if sharing is not None:
            self._tasks.append(self._spawn(sharing.run, "share"))
        self._state = ClientState.RUNNING
        self._live = True
        self._ready.set()
        logger.info(
            "ApolloClient(%r) started: %s",
            self.app_id,
            ", ".join(f"{n}={s.source.value}" for n, s in self._store.snapshots().items()),
        )

    def _join_group(self) -> share_mod.Sharing | None:
        """This client's sharing group, or None (solo, warned once) where it cannot share."""
        sharing = share_mod.Sharing(
            self._store, _PollControl(self), self._options, self._role_changed, self._supervisor
        )
        try:
            sharing.prepare()
        except ShareUnavailable as exc:
            share_mod.warn_solo(self.app_id, str(exc))
            return None
        return sharing

    async def _load_shared(self, sharing: share_mod.Sharing) -> list[asyncio.Task[None]]:
        """Lead (and load from Apollo) or load from the leader; alone if none answers.

        Returns the loads left running in the background, as ``ApolloSource.initial_load`` does.
        """
        try:
            leads = sharing.try_lead()
            if leads:
                sharing.lead("first of its group on this host")
        except ShareUnavailable as exc:
            # An unusable lock or socket (a read-only directory, a lock path that is a
            # directory, a file we cannot open): one warning, and this client runs solo.
            share_mod.warn_solo(self.app_id, str(exc))
            self._share = None
            await sharing.close()
            return await self._apollo.initial_load()
        if leads:
            loads = await self._apollo.initial_load()
            sharing.loaded()
            return loads
        try:
            joined = await sharing.join(share_mod.JOIN_TIMEOUT)
        except ShareUnavailable as exc:
            share_mod.warn_solo(self.app_id, str(exc))
            joined = False
        if joined:
            return []
        loads = await self._apollo.initial_load()
        sharing.degraded = "no leader answered at start; polling Apollo from this process"
        logger.warning("ApolloClient(%r): %s", self.app_id, sharing.degraded)
        return loads

    def _role_changed(self, change: share_mod.RoleChange) -> None:
        if self._hooks:
            self._hooks.role(
                RoleEvent(
                    self.app_id, change.role, change.previous, change.leader_pid, change.reason
                )
            )

    # ------------------------------------------------------------------ sinks

    def _to_listeners(self, change: Change) -> None:
        if change.event is not None and change.notify:
            self._listeners.emit(change.event)

    def _to_hooks(self, change: Change) -> None:
        release = change.release
        if not self._hooks or release is None or not (change.first or change.changed):
            return
        self._hooks.change(
            ChangeEvent(
                self.app_id,
                change.record.name,
                change.changed,
                release.release_key,
                release.source,
                change.first or not change.notify,
                len(change.record.snapshot) if change.record.snapshot is not None else None,
            )
        )

    def _to_followers(self, change: Change) -> None:
        if self._share is not None:
            self._share.changed(change.record.name)  # a leader pushes it to its followers

    def _to_cache(self, change: Change) -> None:
        """Releases fetched from Apollo by this process go to the disk cache (a follower's
        leader writes the cache of its group)."""
        release, snap = change.release, change.record.snapshot
        if (
            self._writer is None
            or release is None
            or snap is None
            or release.origin != "apollo"
            or release.source is not Source.REMOTE
            or (self._share is not None and self._share.role == share_mod.FOLLOWER)
        ):
            return
        # As delivered: a transform's output (a decrypted value) never reaches the disk.
        self._writer.submit(change.record.name, release.release_key, release.items, snap.fetched_at)

    def _open_cache_writer(self) -> None:
        """Start this run's background cache writer (none without a cache)."""
        if self._cache is None:
            self._writer = None
            return
        self._writer = CacheWriter(
            self._cache,
            picked_up=self._listeners.picked_up,
            name=self.app_id,
            supervisor=self._supervisor,
        )
        self._writer.open()

    async def _close_cache_writer(self, within: float) -> None:
        """Write what is pending (for at most ``within`` seconds), then stop the writer."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.aclose(within)

    def _share_healthy(self) -> bool:
        return (
            self._state is ClientState.RUNNING
            and all(s.source is Source.REMOTE for s in self._store.snapshots().values())
            and not self._supervisor.failing()
        )

    def _spawn(self, loop: Loop, what: str) -> asyncio.Task[None]:
        """Run a long-lived loop of this client under its supervisor (see ``_supervise``)."""
        task = self._supervisor.spawn(what, loop, task_name=f"aioapollo-{what}-{self.app_id}")
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Loop ownership: cancelled while RUNNING, by no aclose(): the loop it ran on is
        # shutting down (asyncio.run(client.start()) returned). Nothing updates any more.
        # (Crashes are the supervisor's: it restarts the loop.)
        if (
            task.cancelled()
            and self._live
            and self._state is ClientState.RUNNING
            and self._generation == _process.current()
        ):
            self._live = False
            logger.error(
                "ApolloClient(%r): the event loop it was started on stopped its tasks "
                "without aclose(); its values no longer update. Start the client on the "
                "loop that serves your app (e.g. in its ASGI lifespan), or use "
                "SyncApolloClient.",
                self.app_id,
            )

    async def aclose(self) -> None:
        """Cancel and await every task and close the HTTP session. Idempotent."""
        if self._state is ClientState.CLOSED:
            return
        if self._generation is not None and self._generation != _process.current():
            self._forked()  # started in a parent: nothing of it is ours to stop
        if self._state in (ClientState.CREATED, ClientState.FORKED):
            self._state = ClientState.CLOSED
            return
        if self._generation == _process.current() and _owner.foreign_loop(self._owner_loop):
            await self._aclose_from_other_loop()  # loop ownership
            return
        if self._state is ClientState.CLOSING:
            if self._closed is not None:  # another task is closing it
                await self._closed.wait()
            return
        self._state = ClientState.CLOSING
        self._closed = asyncio.Event()
        try:
            await self._stop_tasks()
        finally:
            self._state = ClientState.CLOSED
            self._closed.set()

    async def _aclose_from_other_loop(self) -> None:
        """``aclose()`` called on a loop that does not own the client: close it on its own."""
        owner = self._owner_loop
        assert owner is not None
        if owner.is_closed():
            # Its tasks ended with that loop, and its session cannot be closed on any other:
            # keep them referenced, untouched (as after fork), and call the client closed.
            _process.keep_forever(self._tasks)
            self._live = False
            self._tasks = []
            self._apollo.abandon()
            self._state = ClientState.CLOSED
            return
        if not owner.is_running():
            raise _owner.other_loop_error(self.app_id, "aclose()", owner)
        done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.aclose(), owner))
        try:
            await asyncio.wait_for(done, self._options.close_timeout + 1.0)
        except TimeoutError:
            raise ClientStateError(
                f"aclose(): ApolloClient({self.app_id!r}) did not close on its own event loop "
                "within close_timeout"
            ) from None

    async def _stop_tasks(self) -> None:
        self._live = False
        tasks, self._tasks = [*self._apollo.take_tasks(), *self._tasks], []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.close_timeout
        try:
            for task in tasks:
                task.cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self._options.close_timeout)
                for task in pending:
                    logger.warning("task %s did not stop within close_timeout", task.get_name())
            # The dispatcher is stopped: pending cache writes no longer wait for it.
            await self._close_cache_writer(deadline - loop.time())
        finally:
            share, self._share = self._share, None
            if share is not None:
                await share.close()
            await self._apollo.aclose()

    async def _suspend(self) -> None:
        """Stop every task and close the session but keep the values, back in CREATED.

        For SyncApolloClient in a preforking master: it loads there and must leave nothing
        running; each worker calls ``start()`` later, with these values as warm data.
        """
        if self._state is not ClientState.RUNNING or self._generation != _process.current():
            raise ClientStateError(f"cannot suspend a client in state {self._state.value}")
        self._state = ClientState.CLOSING
        try:
            await self._stop_tasks()
        finally:
            self._state = ClientState.CREATED

    def __del__(self) -> None:
        if (
            getattr(self, "_state", None) is ClientState.RUNNING
            and self._generation == _process.generation
            and not self._options.lazy_start  # such a client lives as long as its process
        ):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)

    def _forked(self) -> None:
        """In a forked child (called by ``_process``): drop the parent's tasks, keep values."""
        if self._state not in (ClientState.STARTING, ClientState.RUNNING, ClientState.CLOSING):
            return
        if self._generation == _process.generation:  # (re)started in this process already
            return
        # Every task, lock and socket belongs to the parent's loop: drop them untouched, but
        # keep them referenced (see _process.keep_forever).
        locks = [r._lock for r in self._store.records.values()]
        _process.keep_forever(
            self._tasks, locks, self._ready, self._closed, self._writer, self._apollo.forget()
        )
        for record in self._store.records.values():
            record.drop_lock()
        if self._share is not None:
            self._share.forked()  # closes the inherited lock and sockets, never unlocks
            self._share = None
        self._live = False
        self._state = ClientState.FORKED
        self._tasks = []
        self._ready = None
        self._closed = None
        self._writer = None
        self._supervisor = Supervisor(self.app_id, self._hooks)  # the parent's loops are not ours
        cuts = self._apollo.cuts  # a proxy's cuts stay warned about once per client
        self._apollo = ApolloSource(
            self._options, self._store, self._cache, self._hooks, self._spawn
        )
        self._apollo.cuts = cuts
        self._fork_warned = False
        self._store.relabel(Source.INHERITED)

    def _resume(self) -> None:
        """Nothing starts by itself in a forked child: ``start()`` there resumes polling."""


class _PollControl:
    """What sharing may ask of its client: poll Apollo from this process or stop, and how
    healthy it is (the named interface of ``_share.group.SharingHost``)."""

    __slots__ = ("_client",)

    def __init__(self, client: ApolloClient) -> None:
        self._client = client

    def start_polling(self) -> None:
        self._client._apollo.start_polling()

    async def stop_polling(self) -> None:
        # Cancelled on purpose, by this client: not the loop's end (see _task_done).
        client = self._client

        def on_cancel(task: asyncio.Task[None]) -> None:
            task.remove_done_callback(client._task_done)

        await client._apollo.stop_polling(on_cancel=on_cancel)

    def healthy(self) -> bool:
        return self._client._share_healthy()

    def own_poll_time(self) -> float | None:
        return self._client._apollo.last_poll_success
