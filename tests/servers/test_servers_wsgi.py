"""examples/flask_app.py under real uWSGI and gunicorn sync workers: every worker updates.

The app creates a SyncApolloClient at import time (in the master when the server preloads),
reads a value there, logs ``worker PID sees greeting=...`` from a listener in each worker,
and asks the server for one graceful reload when ``db_url`` changes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES, UWSGI_HINT, ServerProcess, server_env, tool
from .._support import free_port

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]
pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")

APP_ID = "demo-app"
WORKERS = 4
SEES = r"worker (\d+) sees greeting='{}'"
STARTED = r"(\d+) aioapollo ApolloClient\('demo-app'\) started"
APPS = Path(__file__).resolve().parents[1] / "apps"  # tests/apps


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=30) as server:
        server.publish(APP_ID, "application", {"greeting": "hello", "db_url": "pg://db-1"})
        yield server


def uwsgi_args(port: int, *extra: str) -> list[str]:
    return [
        tool("uwsgi", UWSGI_HINT),
        "--ini",
        "examples/uwsgi.ini",
        "--http-socket",
        f"127.0.0.1:{port}",
        "--processes",
        str(WORKERS),
        *extra,
    ]


def gunicorn_args(port: int, *extra: str) -> list[str]:
    return [
        tool("gunicorn", "pip install gunicorn"),
        "--no-control-socket",  # its default path is per user, shared by parallel test runs
        "--chdir",
        "examples",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(WORKERS),
        "--graceful-timeout",
        "10",
        *extra,
        "flask_app:app",
    ]


async def greetings(port: int, count: int = 12) -> list[dict[str, object]]:
    headers = {"Connection": "close"}  # uWSGI's http-socket does not keep connections alive
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers
    ) as http:
        replies = [await http.get("/greeting") for _ in range(count)]
    assert all(r.status_code == 200 for r in replies)
    return [r.json() for r in replies]


async def publish_and_collect(
    apollo: ApolloTestServer,
    server: ServerProcess,
    pids: set[int],
    greeting: str,
    db_url: str = "pg://db-1",
) -> None:
    """One publish; every worker pid must log the new value from its listener."""
    # Each worker's poller has loaded (so it will see the publish as a change)...
    await server.wait_pids(STARTED, pids)
    async with asyncio.timeout(60):
        await apollo.wait_for_polls(len(pids))  # ...and (at least) that many polls are held
    apollo.publish(APP_ID, "application", {"greeting": greeting, "db_url": db_url})
    # Every worker logs it; one may log it twice (the example's listener logs the value it
    # reads at call time, so a late call for an earlier change shows the new value too):
    # wait for every pid, not for a count of lines.
    await server.wait_pids(SEES.format(greeting), pids)
    seen = {int(pid) for pid in await server.wait_log(SEES.format(greeting), count=len(pids))}
    assert seen == pids


def assert_clean(log: str) -> None:
    bad = [line for line in log.splitlines() if BAD_LOG_LINES.search(line)]
    assert not bad, bad


@pytest.mark.parametrize(
    "extra",
    [[], ["--lazy-apps"], ["--py-call-uwsgi-fork-hooks"]],
    ids=["prefork", "lazy-apps", "with-python-fork-hooks"],
)
async def test_uwsgi_every_worker_updates(
    apollo: ApolloTestServer, tmp_path: Path, extra: list[str]
) -> None:
    port = free_port()
    lazy_apps = "--lazy-apps" in extra
    server = ServerProcess(
        uwsgi_args(port, *extra), server_env(apollo.url, tmp_path), tmp_path / "uwsgi.log"
    )
    try:
        found = await server.wait_log(r"spawned uWSGI worker \d+ \(pid: (\d+)", WORKERS)
        pids = {int(pid) for pid in found}
        master_loaded = "loaded in the uWSGI master" in server.log()
        assert master_loaded is not lazy_apps
        before = await greetings(port)
        assert {g["greeting"] for g in before} == {"hello"}
        assert {g["greeting_at_import"] for g in before} == {"hello"}
        await publish_and_collect(apollo, server, pids, "bonjour")
        after = await greetings(port)
        assert {g["greeting"] for g in after} == {"bonjour"}
        assert {g["greeting_at_import"] for g in after} == {"hello"}
        assert {int(str(g["pid"])) for g in after} <= pids and all(g["polling"] for g in after)
        assert await server.stop() in (0, 30)  # uWSGI exits 30 after SIGTERM
        await server.wait_gone(pids | {server.proc.pid})
        assert "goodbye to uWSGI" in server.log()
        assert "without enable-threads" not in server.log()
        assert_clean(server.log())
    finally:
        server.kill()


async def test_uwsgi_db_url_change_reloads_exactly_once(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    port = free_port()
    server = ServerProcess(
        uwsgi_args(port), server_env(apollo.url, tmp_path), tmp_path / "uwsgi.log"
    )
    spawned = r"spawned uWSGI worker \d+ \(pid: (\d+)"
    try:
        first = {int(p) for p in await server.wait_log(spawned, WORKERS)}
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(WORKERS)
        apollo.publish(APP_ID, "application", {"greeting": "hello", "db_url": "pg://db-2"})
        found = await server.wait_log(spawned, 2 * WORKERS)
        second = {int(p) for p in found[WORKERS:]}
        assert not first & second
        # The reloaded master imported the app again and read the new db_url: the new
        # workers start from it and see no change, so nothing asks for a second reload.
        await publish_and_collect(apollo, server, second, "after reload", "pg://db-2")
        log = server.log()
        assert len(re.findall(r"asking uWSGI for a graceful reload", log)) == 1
        assert log.count("binary reloading uWSGI") == 1
        await server.stop()
        await server.wait_gone(first | second | {server.proc.pid})
        assert_clean(server.log())
    finally:
        server.kill()


async def test_uwsgi_without_enable_threads_warns(apollo: ApolloTestServer, tmp_path: Path) -> None:
    port = free_port()
    args = [  # the example's settings without enable-threads
        tool("uwsgi", UWSGI_HINT),
        "--master",
        "--processes=1",
        f"--http-socket=127.0.0.1:{port}",
        "--chdir=examples",
        "--module=flask_app:app",
        "--need-app",
        "--die-on-term",
    ]
    server = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "uwsgi.log")
    try:
        await server.wait_log(r"spawned uWSGI worker 1 ")
        await server.wait_log(r"uWSGI runs without enable-threads.*Set `enable-threads = true`")
        # The worker serves the master's values; it never hangs trying to start a thread.
        assert {g["greeting"] for g in await greetings(port, 2)} == {"hello"}
        await server.stop()
        assert_clean(server.log())
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("worker_class", "preload"),
    [("sync", True), ("sync", False), ("gthread", True)],
    ids=["sync-preload", "sync-no-preload", "gthread-preload"],
)
async def test_gunicorn_sync_workers_update_and_reload_once(
    apollo: ApolloTestServer, tmp_path: Path, worker_class: str, preload: bool
) -> None:
    port = free_port()
    extra = ["-k", worker_class, "--threads", "2" if worker_class == "gthread" else "1"]
    args = gunicorn_args(port, *extra, *(["--preload"] if preload else []))
    server = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "gunicorn.log")
    booting = r"Booting worker with pid: (\d+)"
    try:
        first = {int(p) for p in await server.wait_log(booting, WORKERS)}
        assert ("loaded in the gunicorn master" in server.log()) is preload
        await publish_and_collect(apollo, server, first, "bonjour")
        assert {g["greeting"] for g in await greetings(port)} == {"bonjour"}
        # db_url changes: one SIGHUP, the arbiter replaces every worker.
        apollo.publish(APP_ID, "application", {"greeting": "bonjour", "db_url": "pg://db-2"})
        found = await server.wait_log(booting, 2 * WORKERS)
        second = {int(p) for p in found[WORKERS:]}
        if preload:
            # The arbiter does not re-import a preloaded app on HUP: the new workers start
            # from its old snapshot, see the db_url change themselves, and stand down.
            await server.wait_log(r"another worker asked for the reload already", WORKERS)
        await publish_and_collect(apollo, server, second, "after reload", "pg://db-2")
        assert server.log().count("Handling signal: hup") == 1
        await server.stop()
        await server.wait_gone(first | second | {server.proc.pid})
        assert_clean(server.log())
    finally:
        server.kill()


async def test_uwsgi_keeps_the_apps_own_post_fork_hooks(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    port = free_port()
    args = [
        tool("uwsgi", UWSGI_HINT),
        "--master",
        "--processes=2",
        "--enable-threads",
        f"--http-socket=127.0.0.1:{port}",
        f"--chdir={APPS}",
        "--module=postfork_app:application",
        "--need-app",
        "--die-on-term",
    ]
    server = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "uwsgi.log")
    try:
        found = await server.wait_log(r"spawned uWSGI worker \d+ \(pid: (\d+)", 2)
        pids = {int(pid) for pid in found}
        await server.wait_pids(r"hand-set hook ran in (\d+)", pids)
        await server.wait_pids(r"decorated hook ran in (\d+)", pids)
        await server.wait_pids(STARTED, pids)  # and each worker's own poller
        await server.stop()
        assert_clean(server.log())
    finally:
        server.kill()
