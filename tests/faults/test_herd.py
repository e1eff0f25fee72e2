"""A herd: 500 clients in one process, 3 config services found by discovery, one stopped.

The displaced clients must move to the surviving instances, spread over both of them and over
time (jittered backoff), and every client must still get the next release. The peak request
rate each instance saw before and after the stop is logged (``-o log_cli=true``) and bounded.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Iterable

from aioapollo import ApolloClient, ConfigChangeEvent, Hooks, PollEvent
from aioapollo.testing import ApolloTestServer, RecordedRequest

from .._support import wait_until
from ..conftest import APP

logger = logging.getLogger("tests.faults.herd")

CLIENTS = 500
HOLD = 2.0  # seconds a long poll is held: 500 clients poll 250 times a second in all

HERD_OPTIONS = {
    "backoff_initial": 0.6,
    "backoff_max": 2.0,
    "fetch_retry_delay": 0.2,
    "poll_min_interval": 0.0,
    "connect_timeout": 5.0,
    "read_timeout": 10.0,
    "server_hold": HOLD,
    "poll_timeout": HOLD + 10,
    "close_timeout": 5.0,
}


#: Waits for a state of the whole herd (no single event exists for it): checked every 50 ms.
HERD_WAIT = {"timeout": 30.0, "interval": 0.05}


def peak_per_second(requests: Iterable[RecordedRequest], start: float, end: float) -> int:
    """The most requests seen in any sliding one-second window within [start, end)."""
    times = sorted(r.time for r in requests if start <= r.time < end)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def client_ip(n: int) -> str:
    """Each client's ``ip`` query parameter (a label in the request log, never dialled)."""
    return f"10.1.{n // 250}.{n % 250 + 1}"


class PollLog(Hooks):
    """The long polls one client finished, each with when it finished (``perf_counter``)."""

    def __init__(self) -> None:
        self.polls: list[tuple[float, PollEvent]] = []

    def on_poll(self, event: PollEvent) -> None:
        self.polls.append((time.perf_counter(), event))

    def first_backoff(self, since: float) -> float | None:
        """How long the client waited after its first failed poll since ``since``: from that
        failure (reported just before the backoff sleep) to the start of its next poll."""
        for (failed_at, failed), (ended_at, following) in itertools.pairwise(self.polls):
            if failed_at >= since and not failed.ok:
                return ended_at - following.duration - failed_at
        return None


async def test_herd_fails_over_spread_over_instances_and_time() -> None:
    async with (
        ApolloTestServer(hold_seconds=HOLD) as one,
        ApolloTestServer(hold_seconds=HOLD, store=one.store) as two,
        ApolloTestServer(hold_seconds=HOLD, store=one.store) as three,
    ):
        servers = {"one": one, "two": two, "three": three}
        urls = [s.url for s in servers.values()]
        for srv in servers.values():
            srv.config_services = urls
        one.publish(APP, "application", {"k": "v0"})
        got: collections.Counter[str] = collections.Counter()
        all_got = asyncio.Event()

        def on_change(event: ConfigChangeEvent) -> None:
            got[event.snapshot.get("k") or ""] += 1
            if got["v1"] == CLIENTS:
                all_got.set()

        async def listener(event: ConfigChangeEvent) -> None:
            on_change(event)

        poll_logs = {client_ip(n): PollLog() for n in range(CLIENTS)}
        clients = [
            ApolloClient(
                APP,
                meta_server=[one.url, two.url],
                cache_dir=None,
                ip=client_ip(n),
                hooks=[poll_logs[client_ip(n)]],
                **HERD_OPTIONS,
            )
            for n in range(CLIENTS)
        ]
        for client in clients:
            client.on_change(listener)
        try:
            t_start = time.time()
            for batch in range(0, CLIENTS, 100):
                await asyncio.gather(*(c.start() for c in clients[batch : batch + 100]))
            await wait_until(
                lambda: sum(s.held_polls for s in servers.values()) == CLIENTS, **HERD_WAIT
            )
            t_steady = time.time()
            await asyncio.sleep(2 * HOLD)  # a steady-state window to measure
            t_stop = time.time()
            before = {
                name: peak_per_second(s.requests, t_steady, t_stop) for name, s in servers.items()
            }
            # The clients whose long poll is held by the instance about to die.
            last_poll: dict[str, tuple[float, str]] = {}
            for name, srv in servers.items():
                for r in srv.requests:
                    ip = r.query.get("ip")
                    if (
                        r.path == "/notifications/v2"
                        and ip
                        and r.time > last_poll.get(ip, (0, ""))[0]
                    ):
                        last_poll[ip] = (r.time, name)
            displaced = {ip for ip, (_, name) in last_poll.items() if name == "three"}
            # Where each client polls (its latest long poll) just before the stop.
            spread_before = collections.Counter(name for _, name in last_poll.values())
            # One instance dies: from now on it answers nothing (connections are dropped,
            # then refused); its held polls end with the 304 of its shutdown.
            stopped = time.perf_counter()
            three.inject("/", drop=True, times=None)
            await three.close()
            survivors = {"one": one, "two": two}

            def moved() -> dict[str, float]:
                """When each displaced client first long-polled a surviving instance."""
                first: dict[str, float] = {}
                for srv in survivors.values():
                    for r in srv.requests:
                        ip = r.query.get("ip")
                        if r.path == "/notifications/v2" and r.time >= t_stop and ip in displaced:
                            first[ip] = min(first.get(ip, r.time), r.time)
                return first

            await wait_until(lambda: len(moved()) == len(displaced), **HERD_WAIT)
            t_moved = time.time()
            await asyncio.sleep(HOLD)  # a steady window on two instances
            t_publish = time.time()
            one.publish(APP, "application", {"k": "v1"})
            async with asyncio.timeout(30):
                await all_got.wait()
            t_end = time.time() + 0.5
            await asyncio.sleep(0.5)
            after = {
                name: peak_per_second(survivors[name].requests, t_stop, t_publish)
                for name in survivors
            }
            publish_peak = {
                name: peak_per_second(survivors[name].requests, t_publish, t_end)
                for name in survivors
            }
            first = moved()
            delays = sorted(t - t_stop for t in first.values())
            buckets = collections.Counter(int(d / 0.05) for d in delays)
            # Client side: how long each displaced client that failed waited after its first
            # failure, drawn from [backoff_initial / 2, backoff_initial] (plus the time this
            # one event loop takes to wake it among 500 clients). From the clients' own poll
            # hooks: server-side arrival times also hold the failed connection attempts.
            initial = HERD_OPTIONS["backoff_initial"]
            first_backoffs = sorted(
                wait
                for ip in displaced
                if (wait := poll_logs[ip].first_backoff(stopped)) is not None
            )
            logger.info(
                "herd of %d: started in %.1f s; clients per instance before %s; "
                "peak req/s before %s, "
                "after the stop %s, during the publish that followed %s; %d displaced clients "
                "reconnected over %.2f s "
                "(median %.2f s, at most %d in any 50 ms); all moved in %.1f s; by 50 ms: %s; "
                "first backoffs waited: %d between %.2f and %.2f s (median %.2f s)",
                CLIENTS,
                t_steady - t_start,
                dict(spread_before),
                before,
                after,
                publish_peak,
                len(delays),
                delays[-1] - delays[0] if delays else 0.0,
                delays[len(delays) // 2] if delays else 0.0,
                max(buckets.values(), default=0),
                t_moved - t_stop,
                sorted(buckets.items()),
                len(first_backoffs),
                min(first_backoffs, default=0.0),
                max(first_backoffs, default=0.0),
                first_backoffs[len(first_backoffs) // 2] if first_backoffs else 0.0,
            )
            # Discovery spread the herd over all three instances.
            assert len(last_poll) == CLIENTS
            assert all(spread_before[name] >= CLIENTS / 6 for name in servers), spread_before
            assert len(displaced) >= CLIENTS / 6
            # Every client got the release published after the failover, exactly once.
            assert got["v1"] == CLIENTS
            # The displaced clients went to both survivors ...
            per_survivor = collections.Counter(
                name
                for name, srv in survivors.items()
                for r in srv.requests
                if r.path == "/notifications/v2"
                and r.time >= t_stop
                and r.query.get("ip") in displaced
            )
            assert min(per_survivor.values()) >= len(displaced) / 5, per_survivor
            # ... and over time. Up to half of them may move at once (a 304 drops the pick at
            # random), the rest wait a jittered backoff: no 50 ms slot holds 75 % of them.
            assert len(first) == len(displaced)
            assert max(buckets.values()) <= 0.75 * len(displaced), sorted(buckets.items())
            assert delays[-1] - delays[0] >= 0.2, delays
            # Those that failed backed off (none retried at once) by a jittered delay: spread
            # out, and not all at the top of the range (waking late only ever adds to a wait).
            assert len(first_backoffs) >= len(displaced) / 4, (len(first_backoffs), displaced)
            assert first_backoffs[0] >= initial / 2 - 0.002, first_backoffs
            assert first_backoffs[-1] - first_backoffs[0] >= 0.15, first_backoffs
            assert sum(w < 0.75 * initial for w in first_backoffs) >= len(first_backoffs) / 4, (
                first_backoffs
            )
            # No reconnect storm: while moving, a survivor sees at most the steady rate of the
            # whole herd (CLIENTS / HOLD polls a second) plus one poll per displaced client.
            for name, peak in after.items():
                assert peak <= CLIENTS / HOLD + len(displaced), (name, peak)
            # The publish costs each client one /configs fetch and one new poll, no more.
            for name, peak in publish_peak.items():
                assert peak <= 2 * CLIENTS + CLIENTS / HOLD, (name, peak)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
