"""gevent workers: every worker of ``gunicorn -k gevent`` (with and without ``--preload``)
holds its own long poll and updates, boot after boot.

Under ``--preload`` the client is built in the arbiter and each worker's poller starts from
the at-fork hook, moments before gunicorn's gevent worker runs ``monkey.patch_all()``. A
poller built from ``threading`` objects raced that patching (a worker logged "cannot release
un-acquired lock" and never polled); it now runs on a real OS thread made from the original
``_thread`` primitives, so patching before, during or after its start cannot touch it. The race
is rare, so the preloaded case boots the server ten times.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES, ServerProcess, server_env, tool
from .._support import free_port

pytestmark = [pytest.mark.servers, pytest.mark.timeout(600)]
pytest.importorskip("gevent", reason="gevent is not installed (pip install -e '.[test]')")
pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")

APPS = Path(__file__).resolve().parents[1] / "apps"
APP_ID = "demo-app"
WORKERS = 4
BOOTING = r"Booting worker with pid: (\d+)"
STARTED = r"(\d+) aioapollo ApolloClient\('demo-app'\) started"
SEES = r"worker (\d+) sees greeting='{}'"


async def boot_and_publish(
    tmp_path: Path, preload: bool, early: bool, n: int, share: bool = False
) -> None:
    # A server per boot: the held polls it counts are this boot's workers' only.
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello", "db_url": "pg://db-1"})
        await run_server(apollo, tmp_path, preload, early, n, share)


async def run_server(
    apollo: ApolloTestServer, tmp_path: Path, preload: bool, early: bool, n: int, share: bool
) -> None:
    args = [
        tool("gunicorn", "pip install gunicorn"),
        "--no-control-socket",  # its default path is per user, shared by parallel test runs
        "--chdir",
        "examples",
        "-b",
        f"127.0.0.1:{free_port()}",
        "-w",
        str(WORKERS),
        "-k",
        "gevent",
        "--graceful-timeout",
        "10",
        *(["--preload"] if preload else []),
        "gevent_early_app:app" if early else "flask_app:app",
    ]
    log = tmp_path / f"gunicorn-{n}.log"
    env = server_env(apollo.url, tmp_path)
    env["PYTHONPATH"] += os.pathsep + str(APPS)
    if share:
        env.update(APOLLO_SHARE_POLL="true", APOLLO_SHARE_DIR=str(tmp_path / f"share-{n}"))
    server = ServerProcess(args, env, log)
    try:
        pids = {int(p) for p in await server.wait_log(BOOTING, WORKERS)}
        await server.wait_pids(STARTED, pids)
        polls = 1 if share else WORKERS  # one per worker (none in the arbiter), or the leader's
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(polls)
        assert apollo.held_polls == polls
        greeting = f"boot-{n}"
        apollo.publish(APP_ID, "application", {"greeting": greeting, "db_url": "pg://db-1"})
        seen = await server.wait_log(SEES.format(greeting), count=WORKERS)
        assert {int(pid) for pid in seen} == pids
        await server.stop()
        await server.wait_gone(pids | {server.proc.pid})
        text = server.log()
        assert "could not start" not in text
        bad = [line for line in text.splitlines() if BAD_LOG_LINES.search(line)]
        assert not bad, bad
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("preload", "early", "boots"),
    [(True, False, 10), (True, True, 3), (False, False, 2)],
    ids=["preload", "preload-app-patches-first", "no-preload"],
)
async def test_gunicorn_gevent_every_worker_updates(
    tmp_path: Path, preload: bool, early: bool, boots: int
) -> None:
    for n in range(boots):
        await boot_and_publish(tmp_path, preload, early, n)


async def test_gunicorn_gevent_workers_share_one_poll(tmp_path: Path) -> None:
    """share_poll=True under gevent: the sharing loops run on the poller's real OS thread."""
    await boot_and_publish(tmp_path, preload=True, early=False, n=0, share=True)
