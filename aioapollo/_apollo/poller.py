"""The long-poll loop on ``/notifications/v2``: one request for every namespace of a client.

A 304 means "nothing new": poll again at once. A 200 names the namespaces that changed; every
one of them is refetched concurrently and its notification id advances only once its fetch
succeeded, so a failed fetch is retried by the very next poll (the server answers at once while
our id is behind). Errors back off exponentially with jitter and never loop hot.

A poll *cut* by a reverse proxy at about the hold time (see :data:`CUT_FRACTION`) is not an
error of Apollo's: it is handled like the 304 it replaced, and logged once per client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .._config import ClientOptions, redact_url
from .._core.store import NamespaceRecord
from .._core.supervise import Progress, fault
from .._exceptions import (
    ApolloAuthError,
    ApolloConnectionError,
    ApolloError,
    ApolloHTTPStatusError,
    ApolloTimeoutError,
)
from .._hooks import ErrorEvent, HookSet, PollEvent
from .discovery import ServicePool
from .protocol import Notification, notifications_target, parse_notifications
from .transport import Transport, closed_after_sending, status_error
from .wire import strip_properties

__all__ = [
    "CUT_FRACTION",
    "CUT_STATUSES",
    "Backoff",
    "PollCuts",
    "Poller",
    "poll_groups",
]

#: Longest long-poll request target we send. Servlet containers refuse longer request lines
#: and headers (Tomcat's default limit is 8 KiB for the whole header block), so a client with
#: many namespaces splits them over several concurrent long polls.
MAX_POLL_TARGET = 6144

#: A long poll that fails with one of :data:`CUT_STATUSES`, or whose connection is closed
#: after the request was sent, once it was held for at least this fraction of ``server_hold``,
#: was cut by a reverse proxy or load balancer whose timeout is at or below Apollo's hold
#: (nginx's default ``proxy_read_timeout`` is 60 s, exactly the hold). Such a poll cost the
#: server no more than a normal hold, so it is handled like the 304 it replaced: no backoff, the
#: service is not marked unreachable, and the next poll goes out at once (rate limit applies).
#: The same failure sooner than that is an ordinary failure and backs off.
CUT_FRACTION = 0.8
#: What proxies answer when their timeout ends a request (nginx, HAProxy, load balancers).
CUT_STATUSES = frozenset({502, 504})

logger = logging.getLogger("aioapollo")


class _TokenBucket:
    """At most one poll per ``interval`` on average, with a small burst allowance, so an
    instant 304 from a broken proxy cannot turn the loop hot, while a quick poll after a
    notification is never delayed."""

    def __init__(self, interval: float, burst: int) -> None:
        self._interval = interval
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def take(self) -> None:
        if self._interval <= 0:
            return
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
        self._stamp = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) * self._interval)
            self._tokens = 1.0
            self._stamp = time.monotonic()
        self._tokens -= 1


class Backoff:
    """Exponential backoff with "equal jitter": a delay in [d/2, d], d doubling up to a cap."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial = initial
        self._cap = cap
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures since the last reset."""
        return self._failures

    def next(self) -> float:
        """Record a failure and return how long to wait."""
        ceiling = min(self._cap, self._initial * 2 ** min(self._failures, 32))
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Record a success."""
        self._failures = 0


@dataclass(slots=True)
class PollCuts:
    """Long polls cut by a proxy at about the hold time; one per client, shared by its pollers."""

    count: int = 0
    warned: bool = False


#: ``refetch({name: (notification_id, messages)}, prefer)`` fetches those namespaces and
#: advances each one fetched to its notification id and messages (in the store, with its
#: release); returns the names that were fetched (200, 304 or a definitive 404).
Refetch = Callable[[Mapping[str, tuple[int, dict[str, int]]], str | None], Awaitable[set[str]]]


class Poller:
    """Runs the long poll for one client until cancelled."""

    def __init__(
        self,
        options: ClientOptions,
        transport: Transport,
        pool: ServicePool,
        states: Mapping[str, NamespaceRecord],
        refetch: Refetch,
        hooks: HookSet | None = None,
        cuts: PollCuts | None = None,
    ) -> None:
        self._options = options
        self.cuts = PollCuts() if cuts is None else cuts
        self._hooks = hooks or HookSet(None)
        self._transport = transport
        self._pool = pool
        self._states = states
        self._refetch = refetch
        self._by_reply_name: dict[str, list[str]] = {}
        for name in states:
            self._by_reply_name.setdefault(strip_properties(name), []).append(name)
        self.last_success: float | None = None

    def match(self, reply_name: str) -> list[str]:
        """Configured names a reply's name stands for (the server strips ``.properties``)."""
        names = self._by_reply_name.get(reply_name)
        if names is None:
            lowered = reply_name.lower()
            names = [
                n
                for key, group in self._by_reply_name.items()
                if key.lower() == lowered
                for n in group
            ]
        return names

    async def run(self, progress: Progress) -> None:
        """Poll until cancelled; tells ``progress`` of each poll answered and handled.

        Everything a restart must keep (notification ids, messages) is in the namespace
        records, outside this frame; a restarted run polls again from them.
        """
        options = self._options
        poll_backoff = Backoff(options.backoff_initial, options.backoff_max)
        fetch_backoff = Backoff(options.backoff_initial, 8.0)
        avoid: str | None = None
        limiter = _TokenBucket(options.poll_min_interval, burst=5)
        while True:
            await limiter.take()
            started = time.perf_counter()
            try:
                base, notes = await self._poll_once(avoid)
            except ApolloError as exc:
                held = time.perf_counter() - started
                if self._is_cut(exc, held):
                    self._on_cut(exc, held)
                    avoid = None
                    if random.random() < 0.5:
                        self._pool.drop_poll_service()  # as after a 304
                    continue
                if self._hooks:
                    self._report_failure(exc, held)
                avoid = self._pool.poll_service()
                if avoid is not None and isinstance(exc, ApolloConnectionError):
                    self._pool.mark_unreachable(avoid)
                self._pool.drop_poll_service()
                delay = poll_backoff.next()
                self._log_failure(exc, delay, poll_backoff.failures)
                await asyncio.sleep(delay)
                continue
            fault("poll.reply")
            avoid = None
            poll_backoff.reset()
            self.last_success = time.time()
            if self._hooks:
                self._report(base, notes, started)
            if notes is None:
                progress.done()
                if random.random() < 0.5:
                    self._pool.drop_poll_service()  # spreads clients over instances
                continue
            fetched = await self._handle(notes, base)
            progress.done()
            # One turn of the loop before the next poll: a release just applied woke the
            # listener dispatcher (and a leader's senders), which then run before this
            # process spends CPU on a request whose answer is a minute away. On a busy
            # host the application hears of the change first, as it should.
            await asyncio.sleep(0)
            if fetched:
                fetch_backoff.reset()
            else:
                await asyncio.sleep(fetch_backoff.next())

    async def _poll_once(self, avoid: str | None) -> tuple[str, list[Notification] | None]:
        if not self._pool.services:
            await self._pool.refresh()
        base = self._pool.poll_service(avoid)
        if base is None:
            raise self._pool.no_service_error()
        target = notifications_target(
            self._options.app_id,
            self._options.cluster,
            [(s.name, s.notification_id) for s in self._states.values()],
            data_center=self._options.data_center,
            ip=self._options.ip,
        )
        fault("poll.request")
        reply = await self._transport.get(base, target, long_poll=True)
        if reply.status == 304:
            return base, None
        if reply.status != 200:
            raise status_error(reply, base + "/notifications/v2")
        return base, parse_notifications(reply.body)

    async def _handle(self, notes: list[Notification], base: str) -> bool:
        """Refetch every namespace a 200 names; True when all of them were fetched."""
        targets: dict[str, tuple[int, dict[str, int]]] = {}
        for note in notes:
            for name in self.match(note.namespace):
                state = self._states[name]
                seen_id, merged = targets.get(name, (state.notification_id, dict(state.messages)))
                for key, value in note.messages.items():
                    if value > merged.get(key, -1):
                        merged[key] = value
                targets[name] = (max(seen_id, note.notification_id), merged)
        if not targets:
            return True
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("notified of %s by %s", sorted(targets), redact_url(base))
        done = await self._refetch(targets, base)
        return done >= targets.keys()

    def _report(self, base: str, notes: list[Notification] | None, started: float) -> None:
        self._hooks.poll(
            PollEvent(
                self._options.app_id,
                base,
                time.perf_counter() - started,
                304 if notes is None else 200,
                tuple(n.namespace for n in notes or ()),
            )
        )

    def _report_failure(self, exc: ApolloError, duration: float, cut: bool = False) -> None:
        app_id = self._options.app_id
        status = getattr(exc, "status", None)
        self._hooks.poll(
            PollEvent(app_id, self._pool.poll_service(), duration, status, (), exc, cut)
        )
        self._hooks.error(ErrorEvent(app_id, "poll", exc))

    def _is_cut(self, exc: ApolloError, held: float) -> bool:
        """Whether a failed poll was cut by a proxy at about the hold (:data:`CUT_FRACTION`)."""
        if held < CUT_FRACTION * self._options.server_hold:
            return False
        if isinstance(exc, ApolloHTTPStatusError):
            return exc.status in CUT_STATUSES
        return (
            isinstance(exc, ApolloConnectionError)
            and not isinstance(exc, ApolloTimeoutError)
            and closed_after_sending(exc)
        )

    def _on_cut(self, exc: ApolloError, held: float) -> None:
        self.cuts.count += 1
        if self._hooks:
            self._report_failure(exc, held, cut=True)
        options = self._options
        how = (
            f"HTTP {exc.status}" if isinstance(exc, ApolloHTTPStatusError) else "connection closed"
        )
        if self.cuts.warned:
            logger.debug(
                "long poll for %s cut after %.1f s (%s); polling again", options.app_id, held, how
            )
            return
        self.cuts.warned = True
        service = self._pool.poll_service()
        logger.warning(
            "long poll for %s to %s was cut after %.1f s (%s), near Apollo's %g s hold: a "
            "reverse proxy or load balancer in between times out held requests. Polling again "
            "at once, without backoff; to stop the cuts, raise that timeout above %g s, e.g. to "
            "%g s (nginx: proxy_read_timeout; HAProxy: timeout server; a load balancer: its "
            "idle timeout). Logged once per client; later cuts at DEBUG.",
            options.app_id,
            redact_url(service) if service else "?",
            held,
            how,
            options.server_hold,
            options.server_hold,
            options.poll_timeout,
        )

    def _log_failure(self, exc: ApolloError, delay: float, failures: int) -> None:
        # An outage logs a warning on failures 1, 2, 4, 8, ...: visible, but never a flood.
        level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
        if isinstance(exc, ApolloAuthError):
            level = logging.ERROR
        logger.log(
            level,
            "long poll for %s failed (%s); retrying in %.1f s",
            self._options.app_id,
            exc,
            delay,
        )


def poll_groups(
    options: ClientOptions, states: Mapping[str, NamespaceRecord]
) -> list[dict[str, NamespaceRecord]]:
    """Split the namespaces into groups whose long-poll target fits in ``MAX_POLL_TARGET``.

    One group (one long poll) in all usual cases; sized with the widest possible notification
    id so a group never outgrows the limit as ids increase.
    """
    widest = 2**63 - 1
    groups: list[dict[str, NamespaceRecord]] = [{}]
    for name, state in states.items():
        candidate = [*groups[-1], name]
        target = notifications_target(
            options.app_id,
            options.cluster,
            [(n, widest) for n in candidate],
            data_center=options.data_center,
            ip=options.ip,
        )
        if len(target) > MAX_POLL_TARGET and groups[-1]:
            groups.append({})
        groups[-1][name] = state
    return groups
