"""A fleet at scale, in one process: 200 simulated hosts x 8 clients against 3 config services.

Each simulated host is its own share dir: its 8 clients elect one leader there. The fleet
with sharing must hold exactly one long poll per host (200, not 1,600) and every client must
see a publish; the same fleet without sharing is measured beside it (printed: run with -s).
Sized for 2 CPUs: both fleets start, publish and close within the test's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo.testing import ApolloTestServer

from .._support import wait_until

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

APP = "fleet-app"
HOSTS = 200
PER_HOST = 8
HOLD = 30.0
QUIET: dict[str, Any] = {
    "cache_dir": None,
    "backoff_initial": 0.2,
    "backoff_max": 2.0,
    "fetch_retry_delay": 0.2,
    "poll_min_interval": 0.0,
    "close_timeout": 5.0,
}


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[list[ApolloTestServer]]:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(ApolloTestServer(hold_seconds=HOLD))
        rest = [
            await stack.enter_async_context(ApolloTestServer(hold_seconds=HOLD, store=first.store))
            for _ in range(2)
        ]
        first.publish(APP, "application", {"greeting": "hello"})
        yield [first, *rest]


async def run_fleet(share: bool, root: Path) -> dict[str, float]:
    """Start the fleet, publish once, wait until every client has it; return figures."""
    async with cluster() as servers:
        seen = asyncio.Event()
        count = 0

        async def heard(event: ConfigChangeEvent) -> None:
            nonlocal count
            count += 1
            if count == HOSTS * PER_HOST:
                seen.set()

        clients = []
        for host in range(HOSTS):
            for _ in range(PER_HOST):
                client = ApolloClient(
                    APP,
                    meta_server=[s.url for s in servers],
                    share_poll=share,
                    share_dir=root / str(host),
                    **QUIET,
                )
                client.on_change(heard)
                clients.append(client)
        started = time.perf_counter()
        try:
            for client in clients:
                await client.start()
            start_s = time.perf_counter() - started
            polls = HOSTS if share else HOSTS * PER_HOST
            await wait_until(lambda: sum(s.held_polls for s in servers) >= polls, timeout=120)
            held = sum(s.held_polls for s in servers)
            before_each = {id(s): len(s.requests) for s in servers}
            published = time.perf_counter()
            servers[0].publish(APP, "application", {"greeting": "fleet-wide"})
            async with asyncio.timeout(120):
                await seen.wait()
            spread_s = time.perf_counter() - published
            fetches = sum(
                1
                for s in servers
                for r in s.requests[before_each[id(s)] :]
                if r.path.startswith("/configs/")
            )
            roles = [c.stats().role for c in clients]
            return {
                "start_s": start_s,
                "held": held,
                "fetches_per_publish": fetches,
                "all_seen_s": spread_s,
                "leaders": roles.count("leader"),
                "followers": roles.count("follower"),
            }
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))


async def test_a_fleet_holds_one_poll_per_host(record_property: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="aa"))  # short: Unix socket paths are limited
    shared = await run_fleet(True, root)
    solo = await run_fleet(False, root)
    record_property("fleet_shared", shared)  # in the junit report; -s shows the line below
    record_property("fleet_solo", solo)
    sys.stdout.write(f"\nfleet {HOSTS}x{PER_HOST}: shared {shared}\n  no sharing {solo}\n")
    assert shared["leaders"] == HOSTS and shared["followers"] == HOSTS * (PER_HOST - 1)
    assert shared["held"] == HOSTS and solo["held"] == HOSTS * PER_HOST
    # A release costs one fetch per host with sharing, one per client without.
    assert shared["fetches_per_publish"] == HOSTS
    assert solo["fetches_per_publish"] == HOSTS * PER_HOST
