"""Granian with ``--workers 2``: every worker follows a publish (ASGI with the lifespan, WSGI with
``SyncApolloClient``).

ASGI runs ``examples/asgi_workers_app.py`` (the client starts in each worker's lifespan) with
the report-file harness of ``tests/servers/test_asgi_servers.py``; WSGI runs
``examples/flask_app.py`` (the client starts at import, in every worker process Granian makes).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES, ServerProcess, server_env
from .._support import free_port
from .test_asgi_servers import APP, APP_ID, Case, Run

pytestmark = [pytest.mark.servers, pytest.mark.timeout(150)]
pytest.importorskip("granian", reason="granian is not installed (pip install -e '.[test]')")

WORKERS = 2


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=30) as srv:
        srv.publish(APP_ID, "application", {"greeting": "hello"})
        yield srv


def granian(interface: str, port: int, target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        interface,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        target,
    ]


async def test_granian_asgi_every_worker_follows_a_publish(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    port = free_port()
    run = Run(Case(granian("asgi", port, APP), WORKERS), apollo, tmp_path)
    try:
        await run.wait_for("2 workers", lambda: len({r["pid"] for r in run.lines("started")}) == 2)
        await run.wait_for("2 held polls", lambda: apollo.held_polls == WORKERS)
        started = {row["pid"] for row in run.lines("started")}
        assert run.proc.pid not in started
        apollo.publish(APP_ID, "application", {"greeting": "updated"})
        await run.wait_for(
            "every worker's listener",
            lambda: {row["pid"] for row in run.lines("changed")} >= started,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            body = (await http.get("/greeting", timeout=30)).json()
        assert body["greeting"] == "updated" and body["pid"] in started
        assert await run.stop() == 0
        # Every worker's last line is read once the whole group is gone, not when the main
        # process has exited (a server's main process may not wait for its workers).
        await run.wait_for("the group to be gone", lambda: not run.group_alive(), running=False)
        assert {row["pid"] for row in run.lines("stopped")} == started, run.log_text()
        # Granian's own main process runs threads when it forks its workers, and Python 3.12+
        # says so about that process (never a worker). It imports no app there (it holds no
        # poll, checked above), so none of those threads is aioapollo's.
        granian_fork = f"DeprecationWarning: This process (pid={run.proc.pid}) is multi-threaded"
        bad = [
            line
            for line in run.log_text().splitlines()
            if BAD_LOG_LINES.search(line) and granian_fork not in line
        ]
        assert not bad, bad
    finally:
        run.kill()


async def test_granian_wsgi_every_worker_follows_a_publish(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")
    apollo.publish("demo-app", "application", {"greeting": "hello"})  # flask_app's app id
    port = free_port()
    server = ServerProcess(
        granian("wsgi", port, "flask_app:app"),
        server_env(apollo.url, tmp_path),
        tmp_path / "granian.log",
    )
    try:
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(WORKERS)
        pids = {
            int(p)
            for p in await server.wait_log(
                r"(\d+) aioapollo ApolloClient\('demo-app'\) started", WORKERS
            )
        }
        assert apollo.held_polls == WORKERS and server.proc.pid not in pids
        apollo.publish("demo-app", "application", {"greeting": "bonjour"})
        seen = await server.wait_log(r"worker (\d+) sees greeting='bonjour'", WORKERS)
        assert {int(p) for p in seen} == pids
        await server.stop()
        await server.wait_gone(pids | {server.proc.pid})
        bad = [line for line in server.log().splitlines() if BAD_LOG_LINES.search(line)]
        assert not bad, bad
    finally:
        server.kill()
