"""The engine under both clients: lifecycle, tasks, supervision, fork and loop ownership.

:class:`~aioapollo.ApolloClient` and :class:`~aioapollo.SyncApolloClient` are thin facades
over one :class:`Engine` each (the way httpx's ``Client`` and ``AsyncClient`` share
``BaseClient``); neither reaches into the other. The engine owns the pipeline::

    sources                    store                      sinks
    ApolloSource  ─┐                                  ┌─ listener dispatch
    sharing leader ├─ Release ─> NamespaceStore.apply ─┼─ hooks
    disk cache    ─┘          (one step, one Change)   ├─ sharing leader's push
                                                       └─ cache writer

and the process it runs in: one :class:`Ownership` value says which process generation and
event loop a start belongs to, instead of pid, generation and loop checks kept apart.

Its named interface, for the facades: :meth:`start` (``share=False`` never joins a sharing
group), :meth:`suspend` (stop every task, keep the values: a preforking master), :meth:`aclose`,
:meth:`wait_ready`, :meth:`stats`, and the attributes documented on the class.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from .. import _share
from .._apollo.cache import DiskCache
from .._apollo.loader import ApolloSource
from .._apollo.parsing import require_parsers
from .._config import ClientOptions
from .._exceptions import ClientStateError
from .._hooks import ChangeEvent, HookSet, RoleEvent
from .._models import Source
from .._resources import ResourceSet
from .._runtime import owner as _owner
from .._runtime import process as _process
from .._sources.local import LocalSource
from .._sources.overrides import Overrides
from .._stats import ClientStats, collect_stats
from .cachewriter import CacheWriter
from .decrypt import install as install_decryptor
from .listeners import ListenerRegistry
from .placeholders import Placeholders
from .placeholders import install as install_placeholders
from .store import Change, NamespaceStore
from .supervise import Loop, Supervisor

__all__ = ["ClientState", "Engine", "Ownership"]

logger = logging.getLogger("aioapollo")


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


@dataclass(frozen=True, slots=True)
class Ownership:
    """Where a start belongs: a process generation (see ``_runtime.process``) and a loop."""

    generation: int
    pid: int
    loop: asyncio.AbstractEventLoop

    @classmethod
    def here(cls) -> Ownership:
        return cls(_process.current(), os.getpid(), asyncio.get_running_loop())

    @property
    def this_process(self) -> bool:
        """Started in this process (not inherited across a fork)."""
        return self.generation == _process.current()

    @property
    def foreign_loop(self) -> bool:
        """Started here, but the caller runs on another loop (or on none)."""
        return self.this_process and _owner.foreign_loop(self.loop)

    @property
    def loop_ended(self) -> bool:
        return _owner.loop_ended(self.loop)


class _Run:
    """What one ``start()`` owns, and a fork drops whole: its tasks, its ready and closed
    events, its cache writer and its sharing membership."""

    __slots__ = ("closed", "ready", "share", "tasks", "writer")

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.closed: asyncio.Event | None = None
        self.writer: CacheWriter | None = None
        self.share: _share.Sharing | None = None


class Engine:
    """One client's pipeline and lifecycle (see the module docstring).

    Attributes:
        options: The settings.
        store: The namespace store; ``store.values`` is the read view a facade keeps.
        listeners: Listener registry and dispatcher.
        hooks: The observability hooks.
        supervisor: Runs every background loop.
        apollo: The Apollo source.
        share: The current start's sharing membership, if any.
        writer: The current start's cache writer, if any.
        tasks: The current start's tasks (the Apollo source keeps its polling tasks).
        state: The lifecycle state.
        owner: Where the current (or last) start belongs; None before the first.
        fork_warned: A read after fork was warned about (reset at each fork).
    """

    def __init__(
        self,
        options: ClientOptions,
        hooks: HookSet,
        on_live: Callable[[bool], None],
    ) -> None:
        self.options = options
        #: The one owner of every namespace's state; sources apply releases to it.
        self.store = NamespaceStore(options.namespaces)
        self.listeners = ListenerRegistry(
            timeout=options.listener_timeout,
            close_timeout=options.close_timeout,
            namespaces=options.namespaces,
        )
        # Local files (local_dir): the only source; no cache is read or written.
        self._cache = None if options.local_dir else DiskCache.for_options(options)
        self.hooks = hooks
        #: Live resources (``cfg.resource(...)``): counted in stats, closed with the client.
        self.resources = ResourceSet()
        self.supervisor = Supervisor(options.app_id, hooks)
        self.apollo = ApolloSource(options, self.store, self._cache, hooks, self.spawn)
        # ENC(...) values: decrypted on their way into the store (see decrypt).
        install_decryptor(self.store, options.decryptor, app_id=options.app_id, hooks=hooks)
        names = list(options.namespaces)
        #: local_dir: every namespace read from files, instead of Apollo (see _sources.local).
        self.local = (
            LocalSource(options.local_dir, options.cluster, names, allow_empty=options.allow_empty)
            if options.local_dir is not None
            else None
        )
        #: overrides: files layered over every release, after decryption.
        self.overrides = (
            Overrides(options.overrides, options.cluster, names, app_id=options.app_id)
            if options.overrides is not None
            else None
        )
        if self.overrides is not None:
            self.store.add_transform(self.overrides.transform)
        self.state = ClientState.CREATED
        self.owner: Ownership | None = None
        self.fork_warned = False
        #: The current (or last) start's own state; None before the first and after a fork.
        self._run: _Run | None = None
        #: Tells the facade whether its read path may take the fast branch.
        self._set_live = on_live
        self._live = False
        # The sinks, in this order: listeners hear of a release before the cache writer
        # writes it (see cachewriter). None of them calls another.
        self.store.subscribe(self._to_listeners)
        self.store.subscribe(self._to_hooks)
        self.store.subscribe(self._to_followers)
        self.store.subscribe(self._to_cache)
        #: ${key} in values: the last transform, and a sink after the others (it re-runs
        #: the namespaces that refer to a changed key).
        self.placeholders: Placeholders | None = (
            install_placeholders(self.store) if options.resolve_placeholders else None
        )

    @property
    def app_id(self) -> str:
        return self.options.app_id

    @property
    def share(self) -> _share.Sharing | None:
        return self._run.share if self._run is not None else None

    @property
    def writer(self) -> CacheWriter | None:
        return self._run.writer if self._run is not None else None

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return self._run.tasks if self._run is not None else []

    def _live_now(self, live: bool) -> None:
        self._live = live
        self._set_live(live)

    # ------------------------------------------------------------------ introspection

    @property
    def last_poll_success(self) -> float | None:
        own = self.apollo.last_poll_success
        sharing = self.share
        if sharing is None or sharing.leader_poll_success is None:
            return own
        return max(own or 0.0, sharing.leader_poll_success)

    def stats(self) -> ClientStats:
        return collect_stats(
            self.store,
            options=self.options,
            state=self.state.value,
            last_poll_success=self.last_poll_success,
            poll_cuts=self.apollo.cuts.count,
            long_polls=self.apollo.long_polls,
            unreachable=self.apollo.unreachable(),
            share=self.share,
            supervisor=self.supervisor,
            listeners=self.listeners.stats(),
            resources=self.resources,
            overridden=self.overrides.overridden() if self.overrides is not None else None,
            unresolved=self.placeholders.unresolved() if self.placeholders is not None else None,
        )

    # ------------------------------------------------------------------ starting

    async def wait_ready(self) -> None:
        """Wait for a start in progress (returns at once when none is)."""
        if self.state is ClientState.STARTING and self._run is not None:
            await self._run.ready.wait()

    async def start(self, *, share_poll: bool) -> None:
        """Load every namespace, then run: the facades' ``start()``.

        ``share_poll=False`` never joins a sharing group (a preforking master).
        """
        require_parsers(self.store.formats())
        _process.install()
        if self.state in (ClientState.STARTING, ClientState.RUNNING):
            owner = self.owner
            if owner is not None and owner.this_process:
                if owner.foreign_loop:  # loop ownership: say what to do
                    raise _owner.other_loop_error(self.app_id, "start()", owner.loop)
                raise ClientStateError("already started")
            self._forked()  # forked where no hook ran
        if self.state in (ClientState.CLOSING, ClientState.CLOSED):
            raise ClientStateError("cannot reopen a closed client; create a new one")
        previous = self.state
        self.state = ClientState.STARTING
        self.owner = Ownership.here()
        _process.track(self)
        run = self._run = _Run()
        for record in self.store.records.values():
            record.drop_lock()  # fetch locks belong to this start's loop
        apollo, local = self.apollo, self.local
        if local is None:
            apollo.open()
        # local_dir: Apollo is never asked, so there is no poll to share.
        sharing = run.share = self._join_group() if share_poll and local is None else None
        # The dispatcher runs before the load: when warm values (inherited across fork, or
        # kept by suspend()) differ from what Apollo serves now, that is a real change that
        # this process's listeners must hear about. It is scheduled before any fetch can
        # complete, so it is waiting on its queue by the time an event is emitted.
        self.listeners.open()
        dispatcher = self.spawn(self.listeners.run, "listeners")
        self._open_cache_writer()
        # Loads that outlived warm_start_timeout (warm values were served) go on in the
        # background; the engine owns them like its other tasks.
        loads: list[asyncio.Task[None]] = []
        try:
            if self.overrides is not None:
                await self.overrides.load(self.store)
            if local is not None:
                await local.load(self.store)
            elif sharing is None:
                loads = await apollo.initial_load()
            else:
                loads = await self._load_shared(sharing)
            if self.state is not ClientState.STARTING:
                raise ClientStateError("the client was closed while starting")
        except BaseException:
            for task in (dispatcher, *loads):
                task.cancel()
            await asyncio.wait([dispatcher, *loads])
            await self._close_cache_writer(self.options.close_timeout)
            run.share = None
            if sharing is not None:
                await sharing.close()
            if self.state is ClientState.STARTING:
                self.state = previous
            run.ready.set()
            await apollo.aclose()
            raise
        run.tasks = [dispatcher, *loads]
        sharing = run.share  # None if the group could not be joined after all
        if local is not None:
            run.tasks.append(self.spawn(functools.partial(local.run, self.store), "local"))
        elif sharing is None or sharing.role == _share.LEADER or sharing.degraded:
            apollo.start_polling()
        if self.overrides is not None:
            run.tasks.append(
                self.spawn(functools.partial(self.overrides.run, self.store), "overrides")
            )
        if sharing is not None:
            run.tasks.append(self.spawn(sharing.run, "share"))
        self.state = ClientState.RUNNING
        self._live_now(True)
        run.ready.set()
        overridden = self.overrides.overridden() if self.overrides is not None else {}
        logger.info(
            "ApolloClient(%r) started: %s",
            self.app_id,
            ", ".join(
                f"{n}={s.source.value}"
                + (f" ({len(overridden[n])} key(s) overridden)" if n in overridden else "")
                for n, s in self.store.snapshots().items()
            ),
        )

    def _join_group(self) -> _share.Sharing | None:
        """This client's sharing group, or None (solo, warned once) where it cannot share."""
        sharing = _share.Sharing(
            self.store, _PollControl(self), self.options, self._role_changed, self.supervisor
        )
        try:
            sharing.prepare()
        except _share.ShareUnavailable as exc:
            _share.warn_solo(self.app_id, str(exc))
            return None
        return sharing

    async def _load_shared(self, sharing: _share.Sharing) -> list[asyncio.Task[None]]:
        """Lead (and load from Apollo) or load from the leader; alone if none answers.

        Returns the loads left running in the background, as ``ApolloSource.initial_load`` does.
        """
        try:
            leads = sharing.try_lead()
            if leads:
                sharing.lead("first of its group on this host")
        except _share.ShareUnavailable as exc:
            # An unusable lock or socket (a read-only directory, a lock path that is a
            # directory, a file we cannot open): one warning, and this client runs solo.
            _share.warn_solo(self.app_id, str(exc))
            assert self._run is not None
            self._run.share = None
            await sharing.close()
            return await self.apollo.initial_load()
        if leads:
            loads = await self.apollo.initial_load()
            sharing.loaded()
            return loads
        try:
            joined = await sharing.join(_share.JOIN_TIMEOUT)
        except _share.ShareUnavailable as exc:
            _share.warn_solo(self.app_id, str(exc))
            joined = False
        if joined:
            return []
        loads = await self.apollo.initial_load()
        sharing.degraded = "no leader answered at start; polling Apollo from this process"
        logger.warning("ApolloClient(%r): %s", self.app_id, sharing.degraded)
        return loads

    def _role_changed(self, change: _share.RoleChange) -> None:
        if self.hooks:
            self.hooks.role(
                RoleEvent(
                    self.app_id, change.role, change.previous, change.leader_pid, change.reason
                )
            )

    # ------------------------------------------------------------------ sinks

    def _to_listeners(self, change: Change) -> None:
        if change.event is not None and change.notify:
            self.listeners.emit(change.event)

    def _to_hooks(self, change: Change) -> None:
        release = change.release
        if not self.hooks or release is None or not (change.first or change.changed):
            return
        self.hooks.change(
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
        if self.share is not None:
            self.share.changed(change.record.name)  # a leader pushes it to its followers

    def _to_cache(self, change: Change) -> None:
        """Releases fetched from Apollo by this process go to the disk cache (a follower's
        leader writes the cache of its group)."""
        release, snap = change.release, change.record.snapshot
        if (
            self.writer is None
            or release is None
            or snap is None
            or release.origin != "apollo"
            or release.source is not Source.REMOTE
            or (self.share is not None and self.share.role == _share.FOLLOWER)
        ):
            return
        # As delivered: a transform's output (a decrypted value) never reaches the disk.
        self.writer.submit(change.record.name, release.release_key, release.items, snap.fetched_at)

    def _open_cache_writer(self) -> None:
        """Start this run's background cache writer (none without a cache)."""
        assert self._run is not None
        if self._cache is None:
            self._run.writer = None
            return
        writer = self._run.writer = CacheWriter(
            self._cache,
            picked_up=self.listeners.picked_up,
            waiting=self.listeners.waiting,
            name=self.app_id,
            supervisor=self.supervisor,
        )
        writer.open()

    async def _close_cache_writer(self, within: float) -> None:
        """Write what is pending (for at most ``within`` seconds), then stop the writer."""
        run = self._run
        writer = run.writer if run is not None else None
        if run is not None:
            run.writer = None
        if writer is not None:
            await writer.aclose(within)

    def healthy(self) -> bool:
        """As a sharing leader: whether this client is healthy (told to its followers)."""
        return (
            self.state is ClientState.RUNNING
            and all(s.source is Source.REMOTE for s in self.store.snapshots().values())
            and not self.supervisor.failing()
        )

    # ------------------------------------------------------------------ tasks

    def spawn(self, loop: Loop, what: str) -> asyncio.Task[None]:
        """Run a long-lived loop of this client under its supervisor (see ``supervise``)."""
        task = self.supervisor.spawn(what, loop, task_name=f"aioapollo-{what}-{self.app_id}")
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Loop ownership: cancelled while RUNNING, by no aclose(): the loop it ran on is
        # shutting down (asyncio.run(client.start()) returned). Nothing updates any more.
        # (Crashes are the supervisor's: it restarts the loop.)
        if (
            task.cancelled()
            and self._live
            and self.state is ClientState.RUNNING
            and self.owner is not None
            and self.owner.this_process
        ):
            self._live_now(False)
            logger.error(
                "ApolloClient(%r): the event loop it was started on stopped its tasks "
                "without aclose(); its values no longer update. Start the client on the "
                "loop that serves your app (e.g. in its ASGI lifespan), or use "
                "SyncApolloClient.",
                self.app_id,
            )

    # ------------------------------------------------------------------ stopping

    async def aclose(self) -> None:
        """Cancel and await every task and close the HTTP session. Idempotent."""
        if self.state is ClientState.CLOSED:
            return
        owner = self.owner
        if owner is not None and not owner.this_process:
            self._forked()  # started in a parent: nothing of it is ours to stop
        if self.state in (ClientState.CREATED, ClientState.FORKED):
            self.state = ClientState.CLOSED
            return
        if owner is not None and owner.foreign_loop:
            await self._aclose_from_other_loop(owner.loop)  # loop ownership
            return
        run = self._run
        if self.state is ClientState.CLOSING:
            if run is not None and run.closed is not None:  # another task is closing it
                await run.closed.wait()
            return
        self.state = ClientState.CLOSING
        closed = asyncio.Event()
        if run is not None:
            run.closed = closed
        try:
            await self.resources.aclose()
            await self._stop_tasks()
        finally:
            self.state = ClientState.CLOSED
            closed.set()

    async def _aclose_from_other_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """``aclose()`` called on a loop that does not own the client: close it on its own."""
        if loop.is_closed():
            # Its tasks ended with that loop, and its session cannot be closed on any other:
            # keep them referenced, untouched (as after fork), and call the client closed.
            _process.keep_forever(self._run)
            self._live_now(False)
            self._run = None
            self.apollo.abandon()
            self.state = ClientState.CLOSED
            return
        if not loop.is_running():
            raise _owner.other_loop_error(self.app_id, "aclose()", loop)
        done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.aclose(), loop))
        try:
            await asyncio.wait_for(done, self.options.close_timeout + 1.0)
        except TimeoutError:
            raise ClientStateError(
                f"aclose(): ApolloClient({self.app_id!r}) did not close on its own event loop "
                "within close_timeout"
            ) from None

    async def _stop_tasks(self) -> None:
        self._live_now(False)
        run = self._run
        tasks = [*self.apollo.take_tasks(), *(run.tasks if run is not None else ())]
        if run is not None:
            run.tasks = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.close_timeout
        try:
            for task in tasks:
                task.cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.options.close_timeout)
                for task in pending:
                    logger.warning("task %s did not stop within close_timeout", task.get_name())
            # The dispatcher is stopped: pending cache writes no longer wait for it.
            await self._close_cache_writer(deadline - loop.time())
        finally:
            sharing = run.share if run is not None else None
            if run is not None:
                run.share = None
            if sharing is not None:
                await sharing.close()
            await self.apollo.aclose()

    async def suspend(self) -> None:
        """Stop every task and close the session but keep the values, back in CREATED.

        For SyncApolloClient in a preforking master: it loads there and must leave nothing
        running; each worker calls ``start()`` later, with these values as warm data.
        """
        owner = self.owner
        if self.state is not ClientState.RUNNING or owner is None or not owner.this_process:
            raise ClientStateError(f"cannot suspend a client in state {self.state.value}")
        self.state = ClientState.CLOSING
        try:
            await self._stop_tasks()
        finally:
            self.state = ClientState.CREATED

    @property
    def unclosed(self) -> bool:
        """Running in the process that started it: closing it is still owed."""
        return (
            self.state is ClientState.RUNNING
            and self.owner is not None
            and self.owner.generation == _process.generation
        )

    # ------------------------------------------------------------------ fork

    def _forked(self) -> None:
        """In a forked child (called by ``_process``): drop the parent's tasks, keep values."""
        if self.state not in (ClientState.STARTING, ClientState.RUNNING, ClientState.CLOSING):
            return
        if self.owner is not None and self.owner.generation == _process.generation:
            return  # (re)started in this process already
        # Every task, lock and socket belongs to the parent's loop: drop them untouched, but
        # keep them referenced (see _process.keep_forever).
        run, self._run = self._run, None
        if run is not None and run.share is not None:
            run.share.forked()  # closes the inherited lock and sockets, never unlocks
        locks = [record.drop_lock() for record in self.store.records.values()]
        _process.keep_forever(run, locks, self.apollo.forget())
        self._live_now(False)
        self.state = ClientState.FORKED
        self.supervisor = Supervisor(self.app_id, self.hooks)  # the parent's loops are not ours
        cuts = self.apollo.cuts  # a proxy's cuts stay warned about once per client
        self.apollo = ApolloSource(self.options, self.store, self._cache, self.hooks, self.spawn)
        self.apollo.cuts = cuts
        self.fork_warned = False
        self.store.relabel(Source.INHERITED)

    def _resume(self) -> None:
        """Nothing starts by itself in a forked child: ``start()`` there resumes polling."""


class _PollControl:
    """What sharing may ask of its engine (``_share.SharingHost``): poll Apollo from this
    process or stop, and how healthy it is."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def start_polling(self) -> None:
        self._engine.apollo.start_polling()

    async def stop_polling(self) -> None:
        # Cancelled on purpose, by this client: not the loop's end (see Engine._task_done).
        engine = self._engine

        def on_cancel(task: asyncio.Task[None]) -> None:
            task.remove_done_callback(engine._task_done)

        await engine.apollo.stop_polling(on_cancel=on_cancel)

    def healthy(self) -> bool:
        return self._engine.healthy()

    def own_poll_time(self) -> float | None:
        return self._engine.apollo.last_poll_success
