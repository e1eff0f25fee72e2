"""ApolloClient: the asyncio facade over the engine (reads, listeners, lifecycle).

The pipeline (sources -> store -> sinks) and the lifecycle live in ``_core.engine``; see
docs/architecture.md. This facade adds what an asyncio application calls: awaitable and
plain reads (a dict lookup on the current snapshot), typed getters, listeners.

The client is inert until :meth:`ApolloClient.start`: constructing one does no I/O and touches
no event loop, so it is safe at import time and under ``gunicorn --preload``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from ssl import SSLContext
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

from ._config import DEFAULT, ClientOptions, DefaultType, EnvOverrides, options_from_env
from ._core.engine import ClientState, Engine
from ._core.listeners import OnChange
from ._exceptions import ClientStateError, NamespaceNotFoundError
from ._hooks import Hooks, HookSet
from ._models import NamespaceSnapshot, Source
from ._resources import DEFAULT_GRACE, LiveResource
from ._runtime import owner as _owner
from ._stats import ClientStats
from .crypto._types import DecryptorLike

__all__ = ["ApolloClient", "ClientState"]

logger = logging.getLogger("aioapollo")

T = TypeVar("T")


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

    Internal interface (both clients, for the package's integrations): ``_store`` is the
    engine's namespace store, never replaced, which sinks such as the logging integration
    subscribe to. Everything else, :class:`~aioapollo.SyncApolloClient` included, goes
    through the engine (``_core.engine``).
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
        decryptor: DecryptorLike | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        overrides: str | os.PathLike[str] | None = None,
        bootstrap_dir: str | os.PathLike[str] | None = None,
        resolve_placeholders: bool = False,
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
            decryptor=decryptor,
            local_dir=local_dir,
            overrides=overrides,
            bootstrap_dir=bootstrap_dir,
            resolve_placeholders=resolve_placeholders,
        )
        #: The one flag the read path checks: True only while RUNNING in the starting process
        #: (set by the engine).
        self._live = False
        self._engine = Engine(self._options, HookSet(hooks), self._set_live)
        self._listeners = self._engine.listeners  # (add_listener and friends: OnChange)
        #: The namespace store (the internal interface: sinks such as the logging integration
        #: subscribe to it) and its read view, which the read path looks values up in
        #: directly; neither is ever replaced.
        self._store = self._engine.store
        self._values = self._store.values

    def _set_live(self, live: bool) -> None:
        self._live = live

    @classmethod
    def from_env(cls, **overrides: Unpack[EnvOverrides]) -> Self:
        """Build a client from the Java client's environment variables (overrides win).

        Reads ``APP_ID``, ``APOLLO_META``, ``APOLLO_CONFIG_SERVICE``,
        ``APOLLO_ACCESS_KEY_SECRET``, ``APOLLO_LABEL``, ``IDC``, ``APOLLO_CLUSTER``,
        ``APOLLO_CACHE_DIR``, ``APOLLO_CACHE_FILE_ENABLE`` and ``APOLLO_NAMESPACES``; a
        decryptor from ``APOLLO_JASYPT_PASSWORD(_FILE)`` or ``APOLLO_FERNET_KEYS(_FILE)``.
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
        return self._engine.state

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The watched namespaces, as configured."""
        return self._options.namespaces

    @property
    def sources(self) -> Mapping[str, Source]:
        """Where each loaded namespace's current values came from (read-only)."""
        return MappingProxyType(
            {
                n: r.snapshot.source
                for n, r in self._engine.store.records.items()
                if r.snapshot is not None
            }
        )

    @property
    def notification_ids(self) -> Mapping[str, int]:
        """The long poll's notification id per namespace (-1 until first notified)."""
        records = self._engine.store.records
        return MappingProxyType({n: r.notification_id for n, r in records.items()})

    @property
    def last_poll_success(self) -> float | None:
        """Epoch seconds of the last long poll answered with 200 or 304, if any."""
        return self._engine.last_poll_success

    @property
    def poll_cuts(self) -> int:
        """Long polls a proxy cut at about the hold time (handled like a 304; see README)."""
        return self._engine.apollo.cuts.count

    def stats(self) -> ClientStats:
        """A point-in-time health summary (for a health endpoint); never holds values."""
        return self._engine.stats()

    def __repr__(self) -> str:
        return (
            f"<ApolloClient app_id={self.app_id!r} namespaces={list(self.namespaces)!r} "
            f"state={self._engine.state.value}>"
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
            if namespace not in self._engine.store:
                raise NamespaceNotFoundError(namespace)
            raise ClientStateError(
                f"namespace {namespace!r} is not loaded: "
                + (
                    "call (and await) start() first"
                    if self._engine.state is ClientState.CREATED
                    else f"client state is {self._engine.state.value}"
                )
            )
        engine = self._engine
        if engine.state is ClientState.FORKED or (
            engine.state is ClientState.RUNNING
            and engine.owner is not None
            and not engine.owner.this_process
        ):
            self._warn_forked()
        return values.get(key, default)

    def snapshot(self, namespace: str = "application") -> NamespaceSnapshot:
        """The current snapshot of a namespace (typed getters live on it)."""
        snap = self._store.snapshot(namespace)
        if snap is None:
            self._read_slow("", None, namespace)  # raises the right error
            raise AssertionError  # pragma: no cover
        if not self._live and self._engine.state is ClientState.FORKED:  # (never live)
            self._warn_forked()
        return snap

    async def namespace(self, namespace: str = "application") -> NamespaceSnapshot:
        """Like :meth:`snapshot`, waiting for ``start()`` if it is still loading."""
        await self._await_ready("namespace()")
        return self.snapshot(namespace)

    async def _await_ready(self, what: str) -> None:
        """The awaitable reads' slow path: wait for a ``start()`` in progress."""
        engine = self._engine
        while self._options.lazy_start and engine.state is not ClientState.RUNNING:
            # lazy_start: the first awaited read starts the client; concurrent ones wait for
            # it (STARTING) and, if it failed, the next one tries again.
            if engine.state in (ClientState.CREATED, ClientState.FORKED):
                await self.start()
            elif engine.state is ClientState.STARTING:
                if engine.owner is not None and _owner.foreign_loop(engine.owner.loop):
                    raise _owner.other_loop_error(self.app_id, what, engine.owner.loop)
                await engine.wait_ready()
            else:
                break
        # Loop ownership: a start() in progress, or a client whose loop has ended, belongs to
        # its own loop. Waiting on its futures from another loop could hang: say so instead.
        state, owner = engine.state, engine.owner
        starting = state is ClientState.STARTING
        if (
            (starting or state is ClientState.RUNNING)
            and owner is not None
            and owner.foreign_loop
            and (starting or owner.loop_ended)
        ):
            raise _owner.other_loop_error(self.app_id, what, owner.loop)
        if starting:  # (no coroutine on a running client's reads)
            await engine.wait_ready()

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
        engine = self._engine
        if not engine.fork_warned:
            engine.fork_warned = True
            logger.warning(
                "ApolloClient(%r) was started in process %s and is read in forked process %s, "
                "where it was never started: its values are frozen at fork time. Call "
                "`await client.start()` in each worker (e.g. in the ASGI lifespan), or use "
                "SyncApolloClient in WSGI apps.",
                self.app_id,
                engine.owner.pid if engine.owner is not None else "?",
                os.getpid(),
            )

    # ------------------------------------------------------------------ live resources

    @overload
    def resource(
        self,
        build: Callable[[NamespaceSnapshot], Awaitable[T]],
        *,
        keys: Iterable[str] | None = ...,
        prefixes: Iterable[str] | None = ...,
        namespaces: Iterable[str] | None = ...,
        close: Callable[[T], object] | None = ...,
        grace: float = ...,
        name: str | None = ...,
    ) -> LiveResource[T]: ...
    @overload
    def resource(
        self,
        build: Callable[[NamespaceSnapshot], T],
        *,
        keys: Iterable[str] | None = ...,
        prefixes: Iterable[str] | None = ...,
        namespaces: Iterable[str] | None = ...,
        close: Callable[[T], object] | None = ...,
        grace: float = ...,
        name: str | None = ...,
    ) -> LiveResource[T]: ...
    def resource(
        self,
        build: Callable[[NamespaceSnapshot], Any],
        *,
        keys: Iterable[str] | None = None,
        prefixes: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
        close: Callable[[Any], Any] | None = None,
        grace: float = DEFAULT_GRACE,
        name: str | None = None,
    ) -> LiveResource[Any]:
        """An object built from config by ``build(values)`` and rebuilt when they change.

        ``values`` is a snapshot of the watched keys (``keys``, keys starting with one of
        ``prefixes``; all keys if neither) of ``namespaces`` (``("application",)``), with the
        typed getters. ``build`` may be a coroutine function. The old object is closed by
        ``close(obj)`` (default: its ``aclose()`` or ``close()``) once its borrowers
        (``async with holder.use() as obj:``) are done, or ``grace`` seconds after the swap.
        See :class:`LiveResource` and docs/resources.md.
        """
        holder: LiveResource[Any] = LiveResource(
            self, build, keys=keys, prefixes=prefixes, namespaces=namespaces, close=close,
            grace=grace, name=name, app_id=self.app_id, hooks=self._engine.hooks,
        )  # fmt: skip
        self.add_listener(holder._changed, **holder.listener_filters())
        self._engine.resources.add(holder)
        return holder

    def _forget_resource(self, holder: LiveResource[Any]) -> None:
        with contextlib.suppress(ValueError):
            self.remove_listener(holder._changed)
        self._engine.resources.discard(holder)

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
        await self._engine.start(share_poll=self._options.share_poll)

    async def aclose(self) -> None:
        """Cancel and await every task and close the HTTP session. Idempotent."""
        await self._engine.aclose()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and engine.unclosed and not self._options.lazy_start:
            # (a lazy_start client lives as long as its process)
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
