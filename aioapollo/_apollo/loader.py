"""Loading namespaces: fetching ``/configs``, applying replies, the cache and the refresh loop.

A mixin of :class:`~aioapollo._client.ApolloClient`, kept apart so the client module holds
the lifecycle and the read path only. It reads and swaps the client's snapshots; it never
blocks a reader (snapshots are replaced whole).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping

from .._config import ClientOptions
from .._core.cachewriter import CacheWriter
from .._core.listeners import ListenerRegistry
from .._core.supervise import Progress, Supervisor, fault
from .._exceptions import (
    ApolloConnectionError,
    ApolloError,
    ApolloNotFoundError,
    ApolloResponseError,
    ApolloTimeoutError,
    NamespaceUnavailableError,
)
from .._hooks import ChangeEvent, ErrorEvent, FetchEvent, HookSet
from .._models import ConfigChangeEvent, NamespaceSnapshot, Source, diff_items
from .._share.group import FOLLOWER, Sharing
from .cache import CachedRelease, DiskCache
from .discovery import ServicePool
from .parsing import parse_content
from .poller import NamespaceState
from .protocol import ConfigReply, config_target, parse_config
from .transport import Reply, Transport, config_status_error

__all__ = ["Loading", "with_source"]

logger = logging.getLogger("aioapollo")


class Loading:
    """Fetch, apply and persist releases (mixed into ApolloClient, which sets these)."""

    _options: ClientOptions
    _snapshots: dict[str, NamespaceSnapshot]
    _values: dict[str, dict[str, str]]
    _states: dict[str, NamespaceState]
    _formats: dict[str, str]
    _locks: dict[str, asyncio.Lock]
    _transport: Transport | None
    _pool: ServicePool | None
    _cache: DiskCache | None
    _writer: CacheWriter | None
    _listeners: ListenerRegistry
    _hooks: HookSet
    _synced: dict[str, float]
    _refetch_failures: dict[str, int]
    _share: Sharing | None
    _supervisor: Supervisor

    @property
    def app_id(self) -> str:
        """The Apollo appId."""
        return self._options.app_id

    async def _initial_load(self, pool: ServicePool) -> list[asyncio.Task[None]]:
        """Load every namespace for ``start()``; returns the loads left running in the background.

        One deadline, ``start_timeout``, bounds the whole load from Apollo, discovery included.
        A namespace with warm values (its cache file, or values inherited across fork) waits
        for Apollo at most ``warm_start_timeout`` seconds, discovery included: then it serves
        those values and its load goes on in the background (its listeners hear about the
        release if it differs). A namespace without them waits for Apollo as long as the
        timeouts allow. The returned tasks belong to the caller, who must cancel them.
        """
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
            for name in self._states
        }
        try:
            results = await asyncio.gather(
                *(self._load_at_start(name, remote[name], began) for name in self._states),
                return_exceptions=True,
            )
            failures: dict[str, BaseException] = {}
            for name, result in zip(self._states, results, strict=True):
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
                if self._serve_warm(name, cached, why, background=True):
                    remote.add_done_callback(functools.partial(self._background_load_done, name))
                    return
        try:
            await remote
            return
        except ApolloError as exc:
            remote_error: Exception = exc
        if not read:
            cached = await self._read_cache(name)
        if self._serve_warm(name, cached, remote_error, background=False):
            return
        if self._options.allow_empty:
            self._install(name, {}, None, Source.NONE, emit=False)
            logger.warning("namespace %r starts empty: %s", name, remote_error)
            return
        raise remote_error

    async def _read_cache(self, name: str) -> CachedRelease | None:
        return await asyncio.to_thread(self._cache.load, name) if self._cache else None

    def _serve_warm(
        self, name: str, cached: CachedRelease | None, why: object, *, background: bool
    ) -> bool:
        """Serve the cache (else the inherited values) for ``name``; False if there are none."""
        later = "; still loading it from Apollo in the background" if background else ""
        if cached is not None:
            self._install(name, cached.items, cached.release_key, Source.CACHE, emit=False)
            logger.warning(
                "namespace %r served from the local cache (saved %s%s): %s%s",
                name,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cached.saved_at)),
                " by an earlier version, in the old layout" if cached.legacy else "",
                why,
                later,
            )
            return True
        if name in self._snapshots:  # inherited across fork: better than nothing
            logger.warning("namespace %r keeps its inherited values: %s%s", name, why, later)
            return True
        return False

    async def _refetch(self, targets: Mapping[str, dict[str, int]], prefer: str | None) -> set[str]:
        """Fetch notified namespaces concurrently; returns those fetched.

        An exception other than an :class:`ApolloError` is a bug, not a failed fetch: it is
        raised (after the others are handled) for the poller's supervisor to see.
        """
        names = list(targets)
        results = await asyncio.gather(
            *(self._fetch(n, forced=True, prefer=prefer, messages=targets[n]) for n in names),
            return_exceptions=True,
        )
        done: set[str] = set()
        unexpected: BaseException | None = None
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ApolloNotFoundError):
                logger.warning("namespace %r has no release (404); keeping its values", name)
                done.add(name)
            elif isinstance(result, BaseException) and not isinstance(result, ApolloError):
                unexpected = unexpected or result
            elif isinstance(result, Exception):
                failures = self._refetch_failures[name] = self._refetch_failures.get(name, 0) + 1
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
            if self._refetch_failures.pop(name, 0):
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
            for name in self._states:
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
        messages: Mapping[str, int] | None = None,
    ) -> None:
        """Fetch one namespace from the config services and apply it.

        Tries every service in random order (``prefer`` first), twice when ``forced``. A 404
        or 401 stops at once. Raises the last error when every attempt failed.
        """
        assert self._transport is not None and self._pool is not None
        opts = self._options
        async with self._locks[name]:
            held = self._snapshots.get(name)
            release_key = held.release_key if held and held.source is Source.REMOTE else None
            target = config_target(
                opts.app_id,
                opts.cluster,
                name,
                release_key=release_key,
                data_center=opts.data_center,
                ip=opts.ip,
                label=opts.label,
                messages=messages if messages is not None else self._states[name].messages,
            )
            last: ApolloError | None = None
            for attempt in range(2 if forced else 1):
                if attempt:
                    await asyncio.sleep(opts.fetch_retry_delay)
                for base in self._pool.ordered(prefer):
                    try:
                        reply = await self._get_config(base, target, name)
                        if reply.status == 304:
                            self._synced[name] = time.time()
                            return
                        if reply.status == 200:
                            fault("fetch.apply")
                            if self._apply(name, parse_config(reply.body), release_key):
                                self._write_to_cache(name)  # after _apply queued the event
                            self._synced[name] = time.time()
                            return
                        error = config_status_error(reply, base, opts, name)
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

    def _apply(self, name: str, reply: ConfigReply, sent_key: str | None) -> bool:
        """Install a 200 reply; False when it holds exactly what is held already."""
        held = self._snapshots.get(name)
        if reply.configurations is not None:
            items = reply.configurations
        else:
            if held is None or sent_key is None:
                raise ApolloResponseError(f"incremental reply for {name!r} without a base")
            items = dict(self._values[name])
            for key, value in reply.changes or ():
                if value is None:
                    items.pop(key, None)
                else:
                    items[key] = value
        if (
            held is not None
            and held.source is Source.REMOTE
            and held.release_key == reply.release_key
            and self._values[name] == items
        ):
            return False
        self._install(name, items, reply.release_key, Source.REMOTE, emit=held is not None)
        return True

    def _install(
        self,
        name: str,
        items: Mapping[str, str],
        release_key: str | None,
        source: Source,
        *,
        emit: bool,
    ) -> None:
        held = self._snapshots.get(name)
        old_items = self._values.get(name, {})
        fmt = self._formats[name]
        data, error = parse_content(fmt, items, held.data if held else None)
        if error is not None:
            parsed_before = held is not None and (held.parse_error is None or held.data is not None)
            logger.warning(
                "namespace %r: %s; %s",
                name,
                error,
                "keeping the last parsed value"
                if parsed_before
                else ".data stays None until a release parses",
            )
        snap = NamespaceSnapshot(
            name,
            fmt,
            items,
            release_key=release_key,
            source=source,
            fetched_at=time.time(),
            data=data,
            parse_error=error,
        )
        self._snapshots[name] = snap
        self._values[name] = snap._dict
        if self._share is not None:
            self._share.changed(name)  # a leader pushes it to its followers
        if held is None:
            # First load: nothing to tell listeners, and a per-key diff against nothing costs
            # one object per key (0.24 s of a 0.38 s start with 100k keys).
            logger.info("namespace %r loaded: %d key(s), release %s", name, len(snap), release_key)
            if self._hooks:
                keys = frozenset(snap._dict)
                self._hooks.change(ChangeEvent(self.app_id, name, keys, release_key, source, True))
            return
        changes = diff_items(name, old_items, snap._dict)
        if changes:
            logger.info(
                "namespace %r changed: %d key(s), release %s",
                name,
                len(changes),
                release_key,
            )
            if emit:
                self._listeners.emit(ConfigChangeEvent(name, changes, snap))
            if self._hooks:
                self._hooks.change(
                    ChangeEvent(
                        self.app_id, name, frozenset(changes), release_key, source, not emit
                    )
                )

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

    def _write_to_cache(self, name: str) -> None:
        """Hand a release just applied from Apollo to the cache writer.

        The writer starts the write only once the listener dispatcher has taken the change
        event that :meth:`_install` queued before this call (see ``_cachewriter``).
        """
        snap = self._snapshots[name]
        if self._share is not None and self._share.role == FOLLOWER:
            return  # the leader writes the cache of its group
        if self._writer is not None and snap.source is Source.REMOTE:
            self._writer.submit(name, snap.release_key, snap._dict, snap.fetched_at)


def with_source(snap: NamespaceSnapshot, source: Source) -> NamespaceSnapshot:
    return NamespaceSnapshot(
        snap.name,
        snap.format,
        snap._dict,
        release_key=snap.release_key,
        source=source,
        fetched_at=snap.fetched_at,
        data=snap.data,
        parse_error=snap.parse_error,
    )
