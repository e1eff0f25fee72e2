"""Apollo going away, hanging, slowing down or failing in storms: the client rides it out.

Every test asserts both halves: what the client did during the fault (kept its values, backed
off: requests are counted) and that it recovered by itself afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from aioapollo import ApolloClient, ApolloTimeoutError, NamespaceUnavailableError
from aioapollo.testing import ApolloTestServer

from .._support import assert_backoff, gaps, wait_for_requests, wait_until
from ..conftest import APP, FAST, ClientFactory, Events

CONFIGS = f"/configs/{APP}/default/application"
POLL = "/notifications/v2"


async def test_apollo_dies_mid_run_and_returns(server: ApolloTestServer, events: Events) -> None:
    store, port = server.store, server.port
    client = ApolloClient(
        APP, config_server=server.url, cache_dir=None, **{**FAST, "backoff_max": 0.2}
    )
    client.on_change(events)
    async with client:
        await server.close()  # Apollo dies: held polls end, new connections are refused
        server.publish(APP, "application", {"greeting": "while-down"})  # its store lives on
        assert await client.get("greeting") == "hello"
        async with ApolloTestServer(hold_seconds=0.5, port=port, store=store) as again:
            event = await events.next(timeout=8)
            assert event.changes["greeting"].new_value == "while-down"
            again.publish(APP, "application", {"greeting": "after"})
            event = await events.next(timeout=8)
            assert event.changes["greeting"].new_value == "after"
            assert await client.get("greeting") == "after"


async def test_long_poll_hanging_past_its_timeout_is_abandoned_and_retried(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    # A proxy that swallows the long poll: no 304 ever comes. The server holds for 0.5 s, so
    # a 1.5 s poll timeout is safely above the hold (server_hold) and short enough for CI.
    client = make_client(server_hold=0.5, poll_timeout=1.5)
    client.on_change(events)
    await client.start()
    async with asyncio.timeout(5):
        await server.wait_for_polls(1)  # the first (healthy) poll is being held
    server.clear_requests()
    fault = server.inject("/notifications/v2", hang=True)
    hung = await server.wait_for_request(lambda r: r.fault is fault)
    server.publish(APP, "application", {"greeting": "after-hang"})
    event = await events.next(timeout=8)
    noticed = time.time() - hung.time
    assert event.changes["greeting"].new_value == "after-hang"
    assert hung.status is None  # never answered: the client gave up on it
    assert 1.4 <= noticed < 6, noticed  # not before poll_timeout, and not much after
    assert client.last_poll_success is not None


async def test_slow_configs_times_out_retries_and_never_blocks_reads(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(read_timeout=0.5)
    client.on_change(events)
    await client.start()
    fault = server.inject(CONFIGS, delay=3.0)  # longer than read_timeout: the first try fails
    server.publish(APP, "application", {"greeting": "slow"})
    await server.wait_for_request(lambda r: r.fault is fault)
    started = time.monotonic()
    assert await client.get("greeting") == "hello"  # reads are not held up by the fetch
    assert time.monotonic() - started < 1.0
    event = await events.next(timeout=8)
    assert event.changes["greeting"].new_value == "slow"
    fetches = [r for r in server.requests if r.path == CONFIGS]
    assert fetches[-2].fault is fault and fetches[-1].fault is None


async def test_slow_configs_within_the_read_timeout_is_just_slow(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(read_timeout=2.0)
    client.on_change(events)
    await client.start()
    server.clear_requests()
    server.inject(CONFIGS, delay=0.6)
    server.publish(APP, "application", {"greeting": "late"})
    assert (await events.next(timeout=8)).changes["greeting"].new_value == "late"
    assert len([r for r in server.requests if r.path == CONFIGS]) == 1  # no needless retry


async def test_slow_configs_at_start_is_bounded_by_start_timeout(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    async with make_client():  # warm the cache
        pass
    server.inject(CONFIGS, delay=30, times=None)
    client = make_client(start_timeout=0.5, read_timeout=10)
    started = time.monotonic()
    await client.start()
    assert time.monotonic() - started < 3
    assert client.sources["application"].value == "cache"


async def test_5xx_storm_backoff_grows_then_resets(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    # A cap high enough not to matter in the first storm (0.05 * 2**5 = 1.6 s), so a backoff
    # that the success did not reset would next wait 1.6-3.2 s, far from 0.05.
    client = make_client(backoff_initial=0.05, backoff_max=3.2)
    client.on_change(events)
    await client.start()
    fault = server.inject(POLL, status=503, times=6)
    server.publish(APP, "application", {"greeting": "after-storm"})
    event = await events.next(timeout=10)
    assert event.changes["greeting"].new_value == "after-storm"
    storm = [r for r in server.requests if r.fault is fault]
    assert len(storm) == 6
    # Equal-jitter backoff: gap k lies in [d_k / 2, d_k], d_k = 0.05 * 2**k (0.05 ... 0.8).
    assert_backoff(gaps(storm), initial=0.05, cap=3.2)
    # The success reset it: a second storm starts again from backoff_initial.
    again = server.inject(POLL, status=503, times=3)
    second = await wait_for_requests(server, lambda r: r.fault is again and r.status == 503, 3)
    assert_backoff(gaps(second), initial=0.05, cap=3.2)
    server.publish(APP, "application", {"greeting": "after-second-storm"})
    event = await events.next(timeout=5)
    assert event.changes["greeting"].new_value == "after-second-storm"


async def test_configs_5xx_storm_is_not_a_hot_loop_and_nothing_is_lost(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The long poll works and keeps saying "changed", every /configs fails: the client must
    # back off between refetch rounds instead of re-polling and re-fetching at once.
    caplog.set_level(logging.INFO, logger="aioapollo")
    client = make_client(backoff_initial=0.1)
    client.on_change(events)
    await client.start()
    server.clear_requests()
    rounds = 5  # each round is 2 attempts
    fault = server.inject(CONFIGS, status=500, times=2 * rounds)
    server.publish(APP, "application", {"greeting": "eventually"})
    await wait_for_requests(server, lambda r: r.fault is fault and r.status == 500, 4)
    assert await client.get("greeting") == "hello"  # two rounds failed: values kept
    event = await events.next(timeout=8)  # the notification was kept: applied once possible
    assert event.changes["greeting"].new_value == "eventually"
    fetches = [r for r in server.requests if r.path == CONFIGS]
    failed, last = fetches[:-1], fetches[-1]
    assert len(failed) == 2 * rounds and all(r.fault is fault for r in failed)
    assert last.status == 200
    # Within a round the 2 attempts are fetch_retry_delay apart; between rounds the client
    # waits its exponential backoff, 0.1, 0.2, 0.4, 0.8, 1.6 s (jittered down to half).
    spacing = gaps([*failed, last])
    assert all(gap >= FAST["fetch_retry_delay"] - 0.002 for gap in spacing[0::2]), spacing
    assert_backoff(spacing[1::2], initial=0.1, cap=8.0)
    # One long poll per round (it names the namespace again at once), never a re-poll loop.
    polls = [r for r in server.requests if r.path == POLL and r.status == 200]
    assert len(polls) == rounds + 1, polls
    # A warning on failed rounds 1, 2 and 4 of 5 (DEBUG in between), then the recovery is told.
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "refetching" in r.message]
    assert len(warned) == rounds.bit_length() == 3, warned
    # (logged once the refetch returns, just after the listeners got the release)
    await wait_until(lambda: any("fetched again" in r.getMessage() for r in caplog.records))


async def test_404_for_one_namespace_while_the_others_keep_updating(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "second", {"x": "1"})
    client = make_client(namespaces=["application", "second"])
    client.on_change(events)
    await client.start()
    lost = server.inject(f"/configs/{APP}/default/second", status=404, times=None)
    server.publish(APP, "second", {"x": "2"})
    await server.wait_for_request(lambda r: r.fault is lost and r.status == 404)
    for n in range(3):
        server.publish(APP, "application", {"greeting": f"v{n}"})
        event = await events.next()
        assert (event.namespace, event.changes["greeting"].new_value) == ("application", f"v{n}")
    assert await client.get("x", namespace="second") == "1"  # kept, not emptied
    # A 404 is definitive ("no release"): it stops at once, without a retry round.
    assert lost.hits == 1
    server.clear_faults()
    server.publish(APP, "second", {"x": "3"})
    event = await events.next()
    assert (event.namespace, event.changes["x"].old_value, event.changes["x"].new_value) == (
        "second",
        "1",
        "3",
    )


async def test_timeouts_surface_as_apollo_timeout_errors(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.inject(CONFIGS, delay=5, times=None)
    client = make_client(read_timeout=0.3, cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    cause = info.value.causes["application"]
    assert isinstance(cause, ApolloTimeoutError) and "timed out" in str(cause)


async def test_clock_skew_on_the_long_poll_is_named_backed_off_and_outlived(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.set_secret(APP, "s3cret")
    client = make_client(secret="s3cret", backoff_initial=0.05, backoff_max=0.2)
    client.on_change(events)
    await client.start()
    right_clock = server.clock
    server.clock = lambda: right_clock() + 120_000  # the server's clock jumps
    server.clear_requests()
    refused = await wait_for_requests(server, lambda r: r.path == POLL and r.status == 401, 6)
    # Retried with a growing backoff (0.05, 0.1, then 0.2), never given up.
    assert_backoff(gaps(refused), initial=0.05, cap=0.2)
    assert [r for r in server.requests if r.path == POLL][: len(refused)] == refused
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "long poll" in r.message]
    assert len(errors) >= len(refused) - 1  # every refusal is an error, and says why
    assert all("clock" in r.getMessage() for r in errors)
    assert await client.get("greeting") == "hello"  # values kept meanwhile
    server.clock = right_clock  # the clock is fixed: the next retry is accepted
    server.publish(APP, "application", {"greeting": "in-time"})
    event = await events.next(timeout=5)
    assert event.changes["greeting"].new_value == "in-time"


async def test_blackholed_instance_costs_one_connect_timeout_not_one_per_release(
    server: ApolloTestServer, events: Events
) -> None:
    """Discovery lists an instance whose host swallows connections (no RST: connects hang).
    After one connect timeout the client puts it last, so later releases arrive promptly."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        filler = socket.create_connection(hole.getsockname())  # fills the accept queue
        try:
            server.config_services = [f"http://127.0.0.1:{hole.getsockname()[1]}", server.url]
            options = {**FAST, "connect_timeout": 0.5, "backoff_max": 30.0}
            client = ApolloClient(APP, meta_server=server.url, cache_dir=None, **options)
            client.on_change(events)
            latencies = []
            async with client:
                for n in range(8):
                    # An idle poll ends (304): the client may re-pick an instance, at random.
                    since = time.time()
                    async with asyncio.timeout(5):
                        await server.wait_for_request(
                            lambda r, since=since: r.time > since and r.status == 304
                        )
                    started = time.monotonic()
                    server.publish(APP, "application", {"greeting": f"v{n}"})
                    await events.next(timeout=8)
                    latencies.append(time.monotonic() - started)
            # Without the cooldown each re-pick has a 1 in 4 chance of hitting the hole (and
            # so does the first fetch at start, which is not measured).
            assert sum(latency >= 0.4 for latency in latencies) <= 1, latencies
        finally:
            filler.close()


async def test_stats_name_the_config_service_that_refused_and_count_long_polls(
    server: ApolloTestServer,
) -> None:
    """A listed instance refuses connections: the fetches at start that try it first put it
    last, and ``stats()`` names it (without its credentials) for as long as it cools down."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead = f"http://apollo:s3cret@127.0.0.1:{closed.getsockname()[1]}"
        server.config_services = [dead, server.url]
        # 20 namespaces fetched at once, each trying the two in random order: the dead one
        # is tried first by at least one of them but for 1 chance in 2**20.
        names = [f"ns{i}" for i in range(20)]
        # The cooldown is min(backoff_max, 30 s): FAST's 0.4 s could end before stats() on a
        # busy machine; 30 s outlasts the test.
        client = ApolloClient(
            APP,
            meta_server=server.url,
            namespaces=names,
            allow_empty=True,
            cache_dir=None,
            **{**FAST, "backoff_max": 30.0},
        )
        assert client.stats().long_polls == 0
        async with client:
            stats = client.stats()
            assert stats.unreachable == (f"http://127.0.0.1:{closed.getsockname()[1]}",)
            assert stats.as_dict()["unreachable"] == list(stats.unreachable)
            assert "s3cret" not in repr(stats) and "s3cret" not in str(stats.as_dict())
            assert stats.long_polls == 1 and stats.as_dict()["long_polls"] == 1
        assert client.stats().long_polls == 0
