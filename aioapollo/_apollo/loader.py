"""The Apollo source: fetching ``/configs``, the long poll(s), the cache at start, the refresh.

:class:`ApolloSource` delivers every release it learns of to the client's
:class:`~aioapollo._core.store.NamespaceStore`; it never touches listeners, the cache writer
or sharing (they follow the store). Reads are never blocked: the store swaps snapshots whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping

from .._config import ClientOptions, redact_url
from .._core.store import NamespaceStore, Release
from .._core.supervise import Loop, Progress, fault
from .._exceptions import (
    ApolloConnectionError,
    ApolloError,
    ApolloNotFoundError,
    ApolloResponseError,
    ApolloTimeoutError,
    DecryptionError,
    NamespaceUnavailableError,
)
from .._hooks import ErrorEvent, FetchEvent, HookSet
from .._models import Source
from .._sources.bootstrap import Bootstrap
from .cache import CachedRelease, DiskCache
from .discovery import ServicePool
from .poller import PollCuts, Poller, poll_groups
from .protocol import ConfigReply, config_target, parse_config
from .transport import Reply, Transport, config_status_error

__all__ = ["ApolloSource"]

logger = logging.getLogger("aioapollo")


class ApolloSource:
    """Releases from Apollo: the load at start (with the cache as fallback), the long
    poll(s) and their refetches, and the periodic safety refresh.

    Args:
        options: The client's options.
        store: Where every release goes.
        cache: The disk cache to fall back on at start (None: no cache).
        hooks: Told of fetches and errors.
        spawn: Runs a long-lived loop of the client (under its supervisor).
    """

    def __init__(
        self,
        options: ClientOptions,
        store: NamespaceStore,
        cache: DiskCache | None,
        hooks: HookSet,
        spawn: Callable[[Loop, str], asyncio.Task[None]],
    ) -> None:
        self._options = options
        self._store = store
        self._cache = cache
        self._hooks = hooks
        self._spawn = spawn
        self._transport: Transport | None = None
        self._pool: ServicePool | None = None
        self._pollers: list[Poller] = []
        #: One per client: a proxy's cuts are warned about once.
        self.cuts = PollCuts()
        #: The tasks that poll Apollo from this process (none in a healthy follower).
        self._remote: list[asyncio.Task[None]] = []
        self._last_poll: float | None = None
        #: The snapshot served at start when neither Apollo nor a cache can (bootstrap_dir).
        self._bootstrap = (
            Bootstrap(options.bootstrap_dir, options.cluster) if options.bootstrap_dir else None
        )

    @property
    def app_id(self) -> str:
        return self._options.app_id

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    @property
    def long_polls(self) -> int:
        """Long polls this process runs now (none while it follows a sharing leader)."""
        return len(self._pollers)

    def unreachable(self) -> tuple[str, ...]:
        """Config services a connection failed to lately, credentials removed."""
        return tuple(redact_url(u) for u in self._pool.unreachable()) if self._pool else ()

    @property
    def last_poll_success(self) -> float | None:
        """Epoch seconds of this process's own last successful long poll."""
        return max(
            (p.last_success for p in self._pollers if p.last_success is not None),
            default=self._last_poll,
        )

    def open(self) -> None:
        """Make this run's HTTP transport and service pool (no I/O yet)."""
        self._transport = Transport(self._options)
        self._pool = ServicePool(self._options, self._transport)

    async def aclose(self) -> None:
        """Stop polling and close the HTTP session."""
        await self.stop_polling()
        transport, self._transport, self._pool = self._transport, None, None
        if transport is not None:
            await transport.close()

    def forget(self) -> list[object]:
        """After fork: drop the parent's tasks and session untouched; returns what to keep
        referenced (see ``_runtime.process.keep_forever``)."""
        kept: list[object] = [self._remote, self._pollers]
        self._remote, self._pollers = [], []
        if self._transport is not None:
            self._transport.abandon()
        self._transport = self._pool = None
        return kept

    def abandon(self) -> None:
        """The session's loop has ended: drop it without closing it."""
        self._remote = []
        if self._transport is not None:
            self._transport.abandon()
        self._transport = self._pool = None

    # ------------------------------------------------------------------ polling

    def start_polling(self) -> None:
        """Poll Apollo from this process: the long poll(s) and the safety refresh."""
        if self._remote or self._transport is None or self._pool is None:
            return
        transport, pool = self._transport, self._pool
        self._pollers = [
            Poller(self._options, transport, pool, group, self._refetch, self._hooks, self.cuts)
            for group in poll_groups(self._options, self._store.records)
        ]
        self._remote = [
            *(self._spawn(poller.run, "poll") for poller in self._pollers),
            self._spawn(self._refresh_loop, "refresh"),
        ]

    def take_tasks(self) -> list[asyncio.Task[None]]:
        """Hand the polling tasks over (to be cancelled by the caller)."""
        tasks, self._remote = self._remote, []
        return tasks

    async def stop_polling(
        self, on_cancel: Callable[[asyncio.Task[None]], None] | None = None
    ) -> None:
        """Stop polling Apollo from this process (a follower whose leader is back)."""
        tasks, self._remote = self._remote, []
        for task in tasks:
            if on_cancel is not None:
                on_cancel(task)
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._last_poll = self.last_poll_success
        self._pollers = []

    async def initial_load(self) -> list[asyncio.Task[None]]:
        """Load every namespace for ``start()``; returns the loads left running in the background.

        One deadline, ``start_timeout``, bounds the whole load from Apollo, discovery included.
        A namespace with warm values (its cache file, or values inherited across fork) waits
        for Apollo at most ``warm_start_timeout`` seconds, discovery included: then it serves
        those values and its load goes on in the background (its listeners hear about the
        release if it differs). A namespace without them waits for Apollo as long as the
        timeouts allow. The returned tasks belong to the caller, who must cancel them.
        """
        assert self._pool is not None
        pool = self._pool
        loop = asyncio.get_running_loop()
        began = loop.time()
        start_timeout = self._options.start_timeout
        deadline = None if start_timeout is None else began + start_timeout
        discovery = asyncio.create_task(self._discover_at_start(pool))
        remote = {
            name: asyncio.create_task(
                self._load_remote(name, discovery, deadline),
                name=f"aioapollo-load-{self.app_id}-{name}",
            )
            for name in self._store.records
        }
        try:
            results = await asyncio.gather(
                *(self._load_at_start(name, remote[name], began) for name in self._store.records),
                return_exceptions=True,
            )
            failures: dict[str, BaseException] = {}
            for name, result in zip(self._store.records, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result  # cancellation and friends
                    failures[name] = result
            if failures:
                raise NamespaceUnavailableError(failures)
        except BaseException:
            tasks = [discovery, *remote.values()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            raise
        return [task for task in (discovery, *remote.values()) if not task.done()]

    async def _discover_at_start(self, pool: ServicePool) -> None:
        try:
            await pool.refresh()
        except ApolloError as exc:
            logger.warning("service discovery failed for %s: %s", self.app_id, exc)
            if self._hooks:
                self._hooks.error(ErrorEvent(self.app_id, "discovery", exc))

    async def _load_remote(
        self, name: str, discovery: asyncio.Task[None], deadline: float | None
    ) -> None:
        """Discovery (shared by every namespace), then one forced fetch, by ``deadline``."""
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(discovery)
                await self._fetch(name, forced=True)
        except TimeoutError as exc:
            if isinstance(exc, ApolloError):
                raise
            limit = self._options.start_timeout
            raise ApolloTimeoutError(f"not loaded within start_timeout={limit:g} s") from None

    def _background_load_done(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            logger.info("namespace %r loaded from Apollo after start", name)
        else:
            logger.warning(
                "loading namespace %r from Apollo after start failed (%s); the long poll "
                "fetches it once Apollo answers",
                name,
                exc if str(exc) else type(exc).__name__,
            )

    async def _load_at_start(self, name: str, remote: asyncio.Task[None], began: float) -> None:
        # The cache is read only when Apollo is slow or fails (never on a healthy start), and in
        # a thread, as every cache file access: the loop never waits on the disk.
        cached: CachedRelease | None = None
        read = False
        budget = self._options.warm_start_timeout
        if budget is not None:
            left = began + budget - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait([remote], timeout=max(left, 0.0))
            if not done:
                cached, read = await self._read_cache(name), True
                why = f"Apollo did not answer within warm_start_timeout={budget:g} s"
                if await self._serve_warm(name, cached, why, background=True):
                    remote.add_done_callback(functools.partial(self._background_load_done, name))
                    return
        try:
            await remote
            return
        except ApolloError as exc:
            remote_error: Exception = exc
        if not read:
            cached = await self._read_cache(name)
        if await self._serve_warm(name, cached, remote_error, background=False):
            return
        if self._options.allow_empty:
            release = Release(namespace=name, items={}, release_key=None, source=Source.NONE)
            self._store.apply(dataclasses.replace(release, origin="empty"), notify=False)
            logger.warning("namespace %r starts empty: %s", name, remote_error)
            return
        raise remote_error

    async def _read_cache(self, name: str) -> CachedRelease | None:
        return await asyncio.to_thread(self._cache.load, name) if self._cache else None

    async def _serve_warm(
        self, name: str, cached: CachedRelease | None, why: object, *, background: bool
    ) -> bool:
        """Serve the cache (else the inherited values) for ``name``; False if there are none."""
        later = "; still loading it from Apollo in the background" if background else ""
        if cached is not None and not await self._deliver_cached(name, cached):
            cached = None  # it does not decrypt (said): as if there were none
        if cached is not None:
            logger.warning(
                "namespace %r served from the local cache (saved %s%s): %s%s",
                name,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cached.saved_at)),
                " by an earlier version, in the old layout" if cached.legacy else "",
                why,
                later,
            )
            return True
        if self._store.snapshot(name) is not None:  # inherited across fork: better than nothing
            logger.warning("namespace %r keeps its inherited values: %s%s", name, why, later)
            return True
        if self._bootstrap is not None and await self._deliver_bootstrap(name):
            logger.warning(
                "namespace %r served from the snapshot in bootstrap_dir (%s): %s%s",
                name,
                self._bootstrap.files.root,
                why,
                later or "; replaced as soon as Apollo answers",
            )
            return True
        return False

    async def _deliver_bootstrap(self, name: str) -> bool:
        """Hand the snapshot's release to the store; False when there is none or it is refused."""
        assert self._bootstrap is not None
        release = await self._bootstrap.release(name)
        if release is None:
            return False
        try:
            await self._store.deliver(release, notify=False)
        except DecryptionError:
            return False
        return True

    async def _deliver_cached(self, name: str, cached: CachedRelease) -> bool:
        """Hand the cached release to the store; False when it is refused (DecryptionError)."""
        release = Release(
            namespace=name,
            items=cached.items,
            release_key=cached.release_key,
            source=Source.CACHE,
            origin="cache",
        )
        try:
            await self._store.deliver(release, notify=False)
        except DecryptionError:
            return False
        return True

    async def _refetch(
        self, targets: Mapping[str, tuple[int, dict[str, int]]], prefer: str | None
    ) -> set[str]:
        """Fetch notified namespaces concurrently; returns those fetched.

        ``targets`` maps each namespace to the notification id and messages it was notified
        of: they advance with its release, in one step of the store, once it is fetched.

        An exception other than an :class:`ApolloError` is a bug, not a failed fetch: it is
        raised (after the others are handled) for the poller's supervisor to see.
        """
        names = list(targets)
        results: list[BaseException | None]
        if len(names) == 1:  # the usual case: fetched on this task, no task of its own
            try:
                await self._fetch(names[0], forced=True, prefer=prefer, notified=targets[names[0]])
                results = [None]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(self._fetch(n, forced=True, prefer=prefer, notified=targets[n]) for n in names),
                return_exceptions=True,
            )
        done: set[str] = set()
        unexpected: BaseException | None = None
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ApolloNotFoundError):
                logger.warning("namespace %r has no release (404); keeping its values", name)
                self._store.advance(name, *targets[name])
                done.add(name)
            elif isinstance(result, DecryptionError):
                # Fetched but refused (said already): it keeps its values, and the long poll
                # moves on rather than fetch it again at once; the safety refresh retries it.
                self._store.advance(name, *targets[name])
                done.add(name)
            elif isinstance(result, BaseException) and not isinstance(result, ApolloError):
                unexpected = unexpected or result
            elif isinstance(result, Exception):
                record = self._store.records[name]
                record.refetch_failures += 1
                failures = record.refetch_failures
                # Warn on failures 1, 2, 4, 8, ...: visible, but never a flood in an outage.
                level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
                logger.log(
                    level,
                    "refetching namespace %r failed (%d in a row): %s",
                    name,
                    failures,
                    result,
                )
            else:
                done.add(name)
        for name in done:
            record = self._store.records[name]
            if record.refetch_failures:
                record.refetch_failures = 0
                logger.info("namespace %r fetched again", name)
        if unexpected is not None:
            raise unexpected
        return done

    async def _refresh_loop(self, progress: Progress) -> None:
        """Safety net: re-read the service list and every namespace periodically.

        Restarted after a crash, it refreshes at once: the crashed refresh did not finish.
        """
        assert self._pool is not None
        wait = not progress.restarted
        while True:
            if wait:
                await asyncio.sleep(self._options.refresh_interval)
            wait = True
            fault("refresh")
            try:
                await self._pool.refresh()
            except ApolloError as exc:
                logger.warning("service discovery failed for %s: %s", self.app_id, exc)
                if self._hooks:
                    self._hooks.error(ErrorEvent(self.app_id, "discovery", exc))
            for name in self._store.records:
                try:
                    await self._fetch(name, forced=False)
                except ApolloError as exc:
                    logger.info("periodic refresh of %r failed: %s", name, exc)
            progress.done()

    async def _fetch(
        self,
        name: str,
        *,
        forced: bool,
        prefer: str | None = None,
        notified: tuple[int, dict[str, int]] | None = None,
    ) -> None:
        """Fetch one namespace from the config services and hand it to the store.

        Tries every service in random order (``prefer`` first), twice when ``forced``. A 404
        or 401 stops at once. Raises the last error when every attempt failed. ``notified``:
        the notification id and messages to advance to with it.
        """
        assert self._transport is not None and self._pool is not None
        opts = self._options
        record = self._store.records[name]
        async with record.lock:
            held = record.snapshot
            release_key = held.release_key if held and held.source is Source.REMOTE else None
            target = config_target(
                opts.app_id,
                opts.cluster,
                name,
                release_key=release_key,
                data_center=opts.data_center,
                ip=opts.ip,
                label=opts.label,
                messages=notified[1] if notified is not None else record.messages,
            )
            last: ApolloError | None = None
            for attempt in range(2 if forced else 1):
                if attempt:
                    await asyncio.sleep(opts.fetch_retry_delay)
                for base in self._pool.ordered(prefer):
                    try:
                        reply = await self._get_config(base, target, name)
                        if reply.status == 304:
                            self._store.synced(name, time.time())
                            if notified is not None:
                                self._store.advance(name, *notified)
                            return
                        if reply.status == 200:
                            fault("fetch.apply")
                            reply_body = parse_config(reply.body)
                            await self._apply(name, reply_body, release_key, notified)
                            return
                        error = config_status_error(reply, base, opts, name)
                    except DecryptionError:
                        raise  # every config service serves the same release: no retry
                    except ApolloError as exc:
                        if isinstance(exc, ApolloConnectionError):
                            self._pool.mark_unreachable(base)
                        last = exc
                        continue
                    if error.status in (401, 404):
                        raise error
                    last = error
            raise last or self._pool.no_service_error()

    async def _get_config(self, base: str, target: str, name: str) -> Reply:
        """``transport.get`` for ``/configs``, reported to the hooks when there are any."""
        assert self._transport is not None
        if not self._hooks:
            return await self._transport.get(base, target)
        started = time.perf_counter()
        try:
            reply = await self._transport.get(base, target)
        except ApolloError as exc:
            took = time.perf_counter() - started
            self._hooks.fetch(FetchEvent(self.app_id, name, base, took, None, exc))
            self._hooks.error(ErrorEvent(self.app_id, "fetch", exc, name))
            raise
        took = time.perf_counter() - started
        error = (
            None
            if reply.status in (200, 304)
            else config_status_error(reply, base, self._options, name)
        )
        self._hooks.fetch(FetchEvent(self.app_id, name, base, took, reply.status, error))
        if error is not None:
            self._hooks.error(ErrorEvent(self.app_id, "fetch", error, name))
        return reply

    async def _apply(
        self,
        name: str,
        reply: ConfigReply,
        sent_key: str | None,
        notified: tuple[int, dict[str, int]] | None,
    ) -> None:
        """Hand a 200 reply to the store (unless it holds exactly what is held already).

        Compared with, and changes applied to, the release as delivered: the snapshot may
        hold transformed (decrypted) values, which must never flow back into a release.
        """
        record = self._store.records[name]
        held = record.snapshot
        delivered = record.release.items if record.release is not None else None
        now = time.time()
        if reply.configurations is not None:
            items = reply.configurations
        else:
            if held is None or sent_key is None or delivered is None:
                raise ApolloResponseError(f"incremental reply for {name!r} without a base")
            items = dict(delivered)
            for key, value in reply.changes or ():
                if value is None:
                    items.pop(key, None)
                else:
                    items[key] = value
        if (
            held is not None
            and held.source is Source.REMOTE
            and held.release_key == reply.release_key
            and delivered == items
        ):
            self._store.synced(name, now)
            if notified is not None:
                self._store.advance(name, *notified)
            return
        await self._store.deliver(
            Release(
                namespace=name,
                items=items,
                release_key=reply.release_key,
                source=Source.REMOTE,
                notification_id=notified[0] if notified is not None else None,
                messages=notified[1] if notified is not None else None,
                synced_at=now,
            ),
            notify=held is not None,
        )
