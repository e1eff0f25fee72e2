"""One long poll per host with real worker processes: gunicorn, uvicorn and uWSGI workers.

Workers run examples/asgi_workers_app.py (ApolloClient) or examples/flask_app.py
(SyncApolloClient) with ``APOLLO_SHARE_POLL=true`` and a private share dir. The test server
counts held long polls: one for the whole host. Then the leader is killed (SIGKILL) or
stopped (SIGSTOP) and every surviving worker must go on seeing publishes, exactly once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import ServerProcess, server_env, tool
from .._support import free_port
from ..servers.test_asgi_servers import APP_ID, CASES, Run

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

LEADER_LINE = r"shares group \w+ as leader \(pid (\d+)\)"


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=30) as srv:
        srv.publish(APP_ID, "application", {"greeting": "hello"})
        yield srv


def polls_since(apollo: ApolloTestServer, since: float) -> list[float]:
    return [r.time for r in apollo.requests if r.path == "/notifications/v2" and r.time >= since]


def share_env(tmp_path: Path) -> dict[str, str]:
    share = tmp_path / "share"
    return {"APOLLO_SHARE_POLL": "true", "APOLLO_SHARE_DIR": str(share)}


@pytest.mark.parametrize("name", ["gunicorn-uvicorn-preload", "uvicorn-workers"])
async def test_one_poll_per_host_and_a_killed_leader_is_replaced(
    name: str, apollo: ApolloTestServer, tmp_path: Path
) -> None:
    case = CASES[name]
    run = Run(case, apollo, tmp_path, **share_env(tmp_path))
    try:
        await run.wait_for(
            "every worker", lambda: len({r["pid"] for r in run.lines("started")}) >= case.workers
        )
        started = {r["pid"]: r for r in run.lines("started")}
        roles = sorted(r["role"] for r in started.values())
        assert roles == ["follower"] * (case.workers - 1) + ["leader"], roles
        await run.wait_for("one held poll", lambda: apollo.held_polls == 1)
        assert apollo.held_polls == 1
        apollo.publish(APP_ID, "application", {"greeting": "one"})
        await run.wait_for(
            "every worker's listener",
            lambda: {r["pid"] for r in run.lines("changed")} >= started.keys(),
        )
        assert apollo.held_polls == 1

        leader = next(pid for pid, r in started.items() if r["role"] == "leader")
        killed_at = time.time()
        os.kill(leader, signal.SIGKILL)
        # A publish right after the kill, during the failover, reaches every survivor.
        apollo.publish(APP_ID, "application", {"greeting": "two"})
        survivors = set(started) - {leader}
        await run.wait_for(
            "the survivors to see the publish made during failover",
            lambda: {r["pid"] for r in run.lines("changed") if r["value"] == "two"} >= survivors,
        )
        await run.wait_for("a new poll", lambda: bool(polls_since(apollo, killed_at)))
        took_over = min(polls_since(apollo, killed_at)) - killed_at
        assert took_over < 1.0, took_over
        if name.startswith("gunicorn"):  # the arbiter replaces the worker: it follows
            await run.wait_for("a replacement", lambda: len(run.lines("started")) > case.workers)
            fresh = [r for r in run.lines("started") if r["pid"] not in started]
            assert [r["role"] for r in fresh] == ["follower"]
            # It may start during the failover, before the new leader has fetched "two" (a
            # follower that takes over imports aiohttp first): then it hears "two" next.
            pid = fresh[0]["pid"]
            await run.wait_for(
                "the replacement to hold the publish made during failover",
                lambda: (
                    fresh[0]["value"] == "two"
                    or any(r["pid"] == pid and r["value"] == "two" for r in run.lines("changed"))
                ),
            )
        apollo.publish(APP_ID, "application", {"greeting": "three"})
        live = {r["pid"] for r in run.lines("started")} - {leader}
        await run.wait_for(
            "every live worker to see the next publish",
            lambda: {r["pid"] for r in run.lines("changed") if r["value"] == "three"} >= live,
        )
        # Exactly once each: no duplicated and no missed events.
        for pid in survivors:
            values = [r["value"] for r in run.lines("changed") if r["pid"] == pid]
            assert values == ["one", "two", "three"], (pid, values)
        assert await run.stop() == 0
    finally:
        run.kill()


async def test_a_stopped_leader_degrades_its_followers_and_they_recover(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    case = CASES["gunicorn-uvicorn-preload"]
    run = Run(case, apollo, tmp_path, **share_env(tmp_path))
    leader = 0
    try:
        await run.wait_for("the workers", lambda: len(run.lines("started")) >= case.workers)
        started = {r["pid"]: r for r in run.lines("started")}
        leader = next(pid for pid, r in started.items() if r["role"] == "leader")
        followers = set(started) - {leader}
        await run.wait_for("one held poll", lambda: apollo.held_polls == 1)
        os.kill(leader, signal.SIGSTOP)
        stopped_at = time.monotonic()
        degraded = r"sent nothing for 4 s; polling Apollo from this process"
        await run.wait_for(
            "every follower to degrade",
            lambda: len(re.findall(degraded, run.log_text())) >= len(followers),
        )
        assert time.monotonic() - stopped_at < 8.0  # 4 s of silence, then at most a beat
        apollo.publish(APP_ID, "application", {"greeting": "while-stopped"})
        await run.wait_for(
            "the followers to see it by themselves",
            lambda: {r["pid"] for r in run.lines("changed")} >= followers,
        )
        os.kill(leader, signal.SIGCONT)
        # The resumed leader catches up on the release it slept through before the next
        # publish; published sooner, its first fetch could already return "after" (Apollo
        # gives the latest release, not every one in between).
        await run.wait_for(
            "the followers to follow again and the leader to catch up",
            lambda: (
                run.log_text().count("following the leader") >= len(followers)
                and any(
                    r["pid"] == leader and r["value"] == "while-stopped"
                    for r in run.lines("changed")
                )
            ),
        )
        apollo.publish(APP_ID, "application", {"greeting": "after"})
        await run.wait_for(
            "everyone to see the next publish",
            lambda: (
                {r["pid"] for r in run.lines("changed") if r["value"] == "after"} >= set(started)
            ),
        )
        for pid in started:
            values = [r["value"] for r in run.lines("changed") if r["pid"] == pid]
            assert values == ["while-stopped", "after"], (pid, values)
        assert await run.stop() == 0
    finally:
        if leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader, signal.SIGCONT)
        run.kill()


async def test_uwsgi_prefork_sync_clients_share_one_poll(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    apollo.publish(APP_ID, "application", {"greeting": "hello", "db_url": "pg://db-1"})
    port = free_port()
    args = [
        tool("uwsgi", "pip install uwsgi"),
        "--ini",
        "examples/uwsgi.ini",
        "--http-socket",
        f"127.0.0.1:{port}",
        "--processes",
        "4",
    ]
    env = server_env(apollo.url, tmp_path, APP_ID=APP_ID, **share_env(tmp_path))
    server = ServerProcess(args, env, tmp_path / "uwsgi.log")
    sees = r"worker (\d+) sees greeting='{}'"
    try:
        found = await server.wait_log(r"spawned uWSGI worker \d+ \(pid: (\d+)", 4)
        pids = {int(p) for p in found}
        await server.wait_log(LEADER_LINE)
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(1)
        await server.wait_log(r"shares group \w+ as follower", 3)
        assert apollo.held_polls == 1
        apollo.publish(APP_ID, "application", {"greeting": "bonjour", "db_url": "pg://db-1"})
        seen = await server.wait_log(sees.format("bonjour"), count=4)
        assert {int(p) for p in seen} == pids
        leader = int((await server.wait_log(LEADER_LINE))[0])
        killed_at = time.time()
        os.kill(leader, signal.SIGKILL)
        apollo.publish(APP_ID, "application", {"greeting": "ciao", "db_url": "pg://db-1"})
        seen = await server.wait_log(sees.format("ciao"), count=3)
        assert {int(p) for p in seen} == pids - {leader}
        took_over = min(polls_since(apollo, killed_at)) - killed_at
        assert took_over < 1.0, took_over
        # uWSGI respawns the worker; it joins as a follower of the new leader.
        respawned = int((await server.wait_log(r"Respawned uWSGI worker \d+ \(new pid: (\d+)"))[0])
        await server.wait_log(rf"{respawned} aioapollo .* as follower \(pid {respawned}\)")
        await server.stop()
    finally:
        server.kill()
