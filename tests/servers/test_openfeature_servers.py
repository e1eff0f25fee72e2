"""An OpenFeature provider set at import under gunicorn --preload works in every worker.

The provider is created and set in the arbiter (which imports the app once), the workers are
forked from it: each must evaluate flags with the provider READY and follow a release.
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

pytestmark = [pytest.mark.servers, pytest.mark.timeout(150)]

APPS = Path(__file__).resolve().parents[1] / "apps"
APP_ID = "demo-app"
WORKERS = 2
BOOTED = r"Booting worker with pid: (\d+)"
CHANGED = r"worker (\d+) flag greeting=bonjour status=READY"


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=30) as server:
        server.publish(APP_ID, "application", {"greeting": "hello"})
        yield server


async def flags(port: int, count: int = 8) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        replies = [await http.get("/flag", headers={"Connection": "close"}) for _ in range(count)]
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return [r.json() for r in replies]


@pytest.mark.parametrize(
    ("app", "worker"),
    [
        ("openfeature_wsgi_app:app", "sync"),
        ("openfeature_asgi_app:app", "uvicorn_worker.UvicornWorker"),
    ],
    ids=["sync-client", "async-client"],
)
async def test_provider_set_at_import_works_in_every_worker(
    apollo: ApolloTestServer, tmp_path: Path, app: str, worker: str
) -> None:
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--preload",
        "--chdir", str(APPS), "-b", f"127.0.0.1:{port}", "-w", str(WORKERS), "-k", worker,
        "--graceful-timeout", "10", app,
    ]  # fmt: skip
    server = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "gunicorn.log")
    try:
        pids = {int(p) for p in await server.wait_log(BOOTED, WORKERS)}
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(WORKERS)  # one poller per worker, none in the arbiter
        before = await flags(port)
        assert {f["value"] for f in before} == {"hello"}
        assert {f["status"] for f in before} == {"READY"}
        apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
        await server.wait_pids(CHANGED, pids)  # every worker's provider followed the release
        after = await flags(port)
        assert {f["value"] for f in after} == {"bonjour"}
        assert {f["reason"] for f in after} == {"STATIC"}
        await server.stop()
        bad = [line for line in server.log().splitlines() if BAD_LOG_LINES.search(line)]
        assert not bad, bad
    finally:
        server.kill()
