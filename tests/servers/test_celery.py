"""Celery's prefork pool: ``SyncApolloClient`` started at import, every pool process updates.

``celery worker -P prefork -c 4`` imports ``examples/celery_app.py`` in its main process and
forks the pool from there. The main process is a preforking master: it loads on a temporary
thread and holds no long poll; each pool process polls by itself (the test server counts
exactly four held polls) and logs a publish from its listener. With Apollo hung and a warm
cache, the main process starts within the warm-start budget and every pool process comes up
well within Celery's 4 s ``worker_proc_alive_timeout``, then catches up when Apollo answers.
The broker is kombu's filesystem transport: no broker server, and it crosses processes.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from aioapollo._apollo.cache import DiskCache
from aioapollo._config import ClientOptions
from aioapollo.testing import ApolloTestServer

from .._hung import HungServer
from .._procs import BAD_LOG_LINES, ServerProcess, server_env, tool

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]
pytest.importorskip("celery", reason="celery is not installed (pip install -e '.[test]')")

APP_ID = "demo-app"
POOL = 4
SEES = r"pool process (\d+) sees greeting='{}'"
READY = r"test@localhost ready\."


def celery_worker(
    apollo_url: str, tmp_path: Path, pool: str = "prefork", **env: str
) -> ServerProcess:
    args = [
        tool("celery", "pip install celery"),
        "-A",
        "celery_app",
        "worker",
        "-P",
        pool,
        "-c",
        str(POOL),
        "--loglevel",
        "INFO",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
        "-n",
        "test@localhost",
    ]
    extra = {"CELERY_QUEUE_DIR": str(tmp_path / "queue"), "C_FORCE_ROOT": "1", **env}
    return ServerProcess(args, server_env(apollo_url, tmp_path, **extra), tmp_path / "celery.log")


def pool_pids(main: int) -> set[int]:
    """The main process's children: its pool processes."""
    children = Path(f"/proc/{main}/task/{main}/children")
    return {int(pid) for pid in children.read_text().split()}


def assert_clean(log: str) -> None:
    bad = [line for line in log.splitlines() if BAD_LOG_LINES.search(line)]
    assert not bad, bad
    assert "Timed out waiting for UP message" not in log
    assert "could not start" not in log


async def stop(worker: ServerProcess, pids: set[int]) -> None:
    assert await worker.stop() == 0  # SIGTERM: Celery's warm shutdown
    await worker.wait_gone(pids | {worker.proc.pid})


async def test_every_pool_process_updates(tmp_path: Path) -> None:
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        worker = celery_worker(apollo.url, tmp_path)
        try:
            await worker.wait_log(READY)
            assert "loaded in the Celery master" in worker.log()
            # One long poll per pool process, none in the main process.
            async with asyncio.timeout(60):
                await apollo.wait_for_polls(POOL)
            pids = pool_pids(worker.proc.pid)
            assert len(pids) == POOL and apollo.held_polls == POOL
            apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
            seen = await worker.wait_log(SEES.format("bonjour"), POOL)
            assert {int(pid) for pid in seen} == pids
            await stop(worker, pids)
            assert_clean(worker.log())
            assert (tmp_path / "queue" / "control").is_dir()  # kombu's, never in the cwd
        finally:
            worker.kill()


async def test_hung_apollo_with_a_warm_cache_every_pool_process_starts_then_catches_up(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    async with ApolloTestServer(hold_seconds=30) as apollo, HungServer() as hung:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        # A warm cache, as the workers (asking the hung service) read it: cache files are
        # keyed by the servers asked, among others.
        options = ClientOptions.build(APP_ID, config_server=hung.url, cache_dir=cache)
        disk = DiskCache.for_options(options)
        assert disk is not None
        disk.save("application", "rk-hello", {"greeting": "hello"}, time.time())
        apollo.publish(APP_ID, "application", {"greeting": "published while hung"})
        worker = celery_worker(
            hung.url, tmp_path, APOLLO_CACHE_FILE_ENABLE="true", APOLLO_CACHE_DIR=str(cache)
        )
        try:
            await worker.wait_log(READY, timeout=30)
            log = worker.log()
            # The main process served the cache after the 3 s budget, not 11 s later.
            assert "loaded in the Celery master" in log
            took = re.search(r"warm_start_timeout=(\S+) s", log)
            assert took is not None and float(took.group(1)) <= 3
            pids = pool_pids(worker.proc.pid)
            assert len(pids) == POOL
            # Every pool process served its warm values and goes on loading; then Apollo
            # answers, and each one's listener hears about the release published meanwhile.
            await worker.wait_log(r"still loading it from Apollo in the background", 1 + POOL)
            hung.release(apollo.port)
            seen = await worker.wait_log(SEES.format("published while hung"), POOL)
            assert {int(pid) for pid in seen} == pids
            await stop(worker, pids)
            assert_clean(worker.log())
        finally:
            worker.kill()


async def test_solo_pool_main_process_polls_itself(tmp_path: Path) -> None:
    """Taken for a master at import, the main process learns from ``worker_init`` that it
    runs the tasks itself (no pool to fork) and starts polling."""
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        worker = celery_worker(apollo.url, tmp_path, pool="solo")
        try:
            await worker.wait_log(READY)
            assert "SyncApolloClient polls there" in worker.log()
            async with asyncio.timeout(60):
                await apollo.wait_for_polls(1)
            apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
            seen = await worker.wait_log(SEES.format("bonjour"))
            assert {int(pid) for pid in seen} == {worker.proc.pid}
            await stop(worker, set())
            assert_clean(worker.log())
        finally:
            worker.kill()
