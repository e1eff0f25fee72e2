"""A reverse proxy that cuts every long poll at Apollo's hold time: the client re-polls at once.

nginx's default ``proxy_read_timeout`` (60 s) equals the config service's hold, so behind it
every held poll ends in a 504 (or a 502, or a closed connection) instead of its 304. These tests
put the test server's ``cut_after`` proxy in front with the hold and the cut both at 0.5 s,
and give the client a long ``backoff_initial``: had a cut counted as a failure, the next poll
would visibly wait seconds. A cut long before the hold stays an ordinary failure.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from aioapollo import ApolloHTTPStatusError, ApolloTimeoutError, Hooks, PollEvent
from aioapollo._apollo.poller import CUT_FRACTION
from aioapollo.testing import ApolloTestServer, RecordedRequest

from ..conftest import APP, ClientFactory, Events

POLL = "/notifications/v2"
HOLD = 0.5
#: Long enough that a single backoff step would stand out from a re-poll "at once".
SLOW_BACKOFF: dict[str, Any] = {"backoff_initial": 5.0, "backoff_max": 60.0}
CUTS = pytest.mark.parametrize(
    "cut", [{"status": 504}, {"status": 502}, {"drop": True}], ids=["504", "502", "closed"]
)


class Polls(Hooks):
    """Keeps every PollEvent; ``await polls.wait(n)`` waits for the n-th cut one."""

    def __init__(self) -> None:
        self.events: list[PollEvent] = []
        self._added = asyncio.Event()

    def on_poll(self, event: PollEvent) -> None:
        self.events.append(event)
        self._added.set()

    @property
    def cut(self) -> list[PollEvent]:
        return [e for e in self.events if e.cut]

    @property
    def failed(self) -> list[PollEvent]:
        """Failures that were not cuts (and so backed off)."""
        return [e for e in self.events if e.error is not None and not e.cut]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._added.clear()
                await self._added.wait()

    async def wait_for_cuts(self, count: int, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: len(self.cut) >= count, timeout)


def proxy_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "proxy_read_timeout" in r.getMessage()
    ]


def failure_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "long poll" in r.getMessage() and "failed" in r.message
    ]


async def held(server: ApolloTestServer, count: int = 1) -> None:
    """Wait until the client's polls are held: its first, immediate poll went by the fault."""
    async with asyncio.timeout(10):
        await server.wait_for_polls(count)


def polls_through(server: ApolloTestServer, fault: object) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == POLL and r.fault is fault]


@CUTS
async def test_polls_cut_at_the_hold_are_sent_again_at_once(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
    cut: dict[str, Any],
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    polls = Polls()
    client = make_client(server_hold=HOLD, poll_timeout=1.5, hooks=[polls], **SLOW_BACKOFF)
    client.on_change(events)
    await client.start()
    await held(server)
    fault = server.inject(POLL, times=None, cut_after=HOLD, **cut)
    await polls.wait_for_cuts(3)

    # A publish still arrives through the long poll at once: the held poll is woken.
    started = time.monotonic()
    server.publish(APP, "application", {"greeting": "through-the-proxy"})
    event = await events.next(timeout=5)
    assert event.changes["greeting"].new_value == "through-the-proxy"
    assert time.monotonic() - started < 1.0
    await polls.wait_for_cuts(len(polls.cut) + 1)  # and the cuts go on after it

    cut_polls = polls_through(server, fault)
    assert len(cut_polls) >= 4
    expected_status = cut.get("status")  # a closed connection records no status
    assert {r.status for r in cut_polls} <= {expected_status, 200}
    # Each poll went out right after the previous one was cut: one hold plus a little, never
    # a backoff step (backoff_initial is 5 s: the first step alone waits 2.5 s or more).
    gaps = [b.time - a.time for a, b in itertools.pairwise(cut_polls)]
    assert max(gaps) < HOLD + 1.5, gaps
    # The client saw cuts, never an ordinary failure, and the service stayed in favour.
    assert polls.failed == []
    for poll in polls.cut:
        assert poll.duration >= CUT_FRACTION * HOLD and poll.service == server.url
        assert isinstance(poll.error, ApolloHTTPStatusError) == ("status" in cut)
    assert client.stats().unreachable == ()
    assert client.stats().poll_cuts == client.poll_cuts == len(polls.cut)
    assert client.stats().as_dict()["poll_cuts"] == len(polls.cut)

    # One warning for the client, naming the proxy settings to fix; later cuts at DEBUG only.
    (warning,) = proxy_warnings(caplog)
    message = warning.getMessage()
    assert "cut after" in message and "idle timeout" in message and "timeout server" in message
    assert "above 0.5 s" in message
    assert failure_warnings(caplog) == []
    assert len([r for r in caplog.records if "cut after" in r.getMessage()]) == len(polls.cut)


async def test_one_warning_per_client_with_several_long_polls(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Enough long names that the long poll is split over two requests (two pollers).
    names = [f"proxied.namespace.{i:03d}.with.a.rather.long.name.indeed" for i in range(60)]
    polls = Polls()
    client = make_client(
        namespaces=names,
        allow_empty=True,
        server_hold=HOLD,
        poll_timeout=1.5,
        hooks=[polls],
        **SLOW_BACKOFF,
    )
    await client.start()
    assert client.stats().long_polls == 2
    await held(server, 2)
    server.inject(POLL, times=None, cut_after=HOLD)
    await polls.wait_for_cuts(4)
    assert len(proxy_warnings(caplog)) == 1
    assert polls.failed == []


@pytest.mark.parametrize(
    "early",
    [
        pytest.param({"status": 504}, id="504-at-once"),
        pytest.param({"drop": True, "times": 8}, id="closed-at-once"),
        pytest.param({"cut_after": 0.1}, id="504-long-before-the-hold"),
    ],
)
async def test_an_early_504_or_close_is_an_ordinary_failure_and_backs_off(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
    early: dict[str, Any],
) -> None:
    # The hold is 1 s: the cut threshold is 0.8 s, and every failure below comes far sooner.
    server.hold_seconds = 1.0
    polls = Polls()
    client = make_client(
        server_hold=1.0, poll_timeout=2.0, backoff_initial=0.2, backoff_max=5.0, hooks=[polls]
    )
    client.on_change(events)
    await client.start()
    await held(server)
    server.clear_requests()
    fault = server.inject(POLL, **{"times": 4, **early})
    # Publish once the client polls past the fault, so the release cannot wake a poll before.
    await asyncio.wait_for(
        server.wait_for_request(lambda r: r.path == POLL and r.fault is None), 15
    )
    server.publish(APP, "application", {"greeting": "after-the-failures"})
    event = await events.next(timeout=15)
    assert event.changes["greeting"].new_value == "after-the-failures"

    faulted = polls_through(server, fault)
    assert len(faulted) >= 4
    # Spaced by a growing backoff: gap k lies in [d_k / 2, d_k] plus the time the poll took,
    # d_k = 0.2 * 2**k.
    failures = [e for e in polls.events if e.error is not None]
    assert failures and not any(e.cut for e in failures)
    assert len(failures) >= 3
    client_polls = faulted[:: 2 if early.get("drop") else 1]  # aiohttp resends a dropped GET once
    gaps = [b.time - a.time for a, b in itertools.pairwise(client_polls)]
    for k, gap in enumerate(gaps[:3]):
        assert gap >= 0.2 * 2**k / 2 * 0.9, gaps
    assert client.poll_cuts == 0
    assert proxy_warnings(caplog) == []
    assert failure_warnings(caplog)


async def test_a_poll_the_client_gives_up_on_is_not_a_cut(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Held past the hold, but ended by the client's own poll_timeout: no proxy answered, so
    # this is the "long poll hangs" failure, which backs off and tries another instance.
    polls = Polls()
    client = make_client(server_hold=HOLD, poll_timeout=1.0, hooks=[polls])
    await client.start()
    await held(server)
    server.inject(POLL, hang=True)
    await polls.wait_until(lambda: bool(polls.failed))
    (failed,) = polls.failed
    assert isinstance(failed.error, ApolloTimeoutError) and failed.duration >= HOLD
    assert polls.cut == [] and client.poll_cuts == 0
    assert proxy_warnings(caplog) == []


async def test_re_polls_after_cuts_still_obey_the_rate_limit(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    # A proxy cutting a 0.1 s hold would allow 10 polls a second; the client's token bucket
    # (poll_min_interval=0.5, a burst of 5) still spaces them after the burst.
    server.hold_seconds = 0.1
    polls = Polls()
    client = make_client(server_hold=0.1, poll_timeout=1.0, poll_min_interval=0.5, hooks=[polls])
    await client.start()
    await held(server)
    fault = server.inject(POLL, times=None, cut_after=0.1)
    await polls.wait_for_cuts(10, timeout=20)
    cut_polls = [r for r in polls_through(server, fault) if r.status == 504][:10]
    assert len(cut_polls) == 10
    # After the first poll took its token, at most 4 are left: 9 more polls need 5 refills
    # at one per 0.5 s, so the ten polls span 2.5 s or more (without the limit: about 1 s).
    assert cut_polls[-1].time - cut_polls[0].time >= 2.2
    assert polls.failed == []
