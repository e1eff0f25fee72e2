"""Daphne (no ASGI lifespan) and Django under WSGI and ASGI servers, with real processes.

Daphne never runs the lifespan, so ``examples/daphne_app.py`` uses ``lazy_start=True``: the
first request starts the client on Daphne's loop, once however many arrive together. The Django
project (``examples/django_project``) starts a ``SyncApolloClient`` in its settings and
registers its listener in ``AppConfig.ready()``; it runs under ``gunicorn --preload`` (WSGI:
the arbiter loads, each worker polls), Daphne and ``uvicorn --workers 2`` (ASGI).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES, ServerProcess, server_env, tool
from .._support import free_port

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]
pytest.importorskip("daphne", reason="daphne is not installed (pip install -e '.[test]')")
pytest.importorskip("django", reason="django is not installed (pip install -e '.[test]')")

APP_ID = "demo-app"
CONFIGS = f"/configs/{APP_ID}/default/application"
STARTED = r"(\d+) aioapollo ApolloClient\('demo-app'\) started"
ONE_START = r"ApolloClient\('demo-app'\) started"


@pytest.fixture
async def apollo() -> ApolloTestServer:  # type: ignore[misc]
    async with ApolloTestServer(hold_seconds=30) as server:
        server.publish(APP_ID, "application", {"greeting": "hello"})
        yield server


async def get_json(port: int, path: str, count: int = 1) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        replies = await asyncio.gather(*(http.get(path) for _ in range(count)))
    assert all(r.status_code == 200 for r in replies), [r.text[:200] for r in replies]
    return [r.json() for r in replies]


def assert_clean(log: str) -> None:
    bad = [line for line in log.splitlines() if BAD_LOG_LINES.search(line)]
    assert not bad, bad


async def test_daphne_lazy_start_once_then_every_publish(
    apollo: ApolloTestServer, tmp_path: Path
) -> None:
    port = free_port()
    args = [tool("daphne", "pip install daphne"), "-b", "127.0.0.1", "-p", str(port)]
    server = ServerProcess(
        [*args, "daphne_app:app"], server_env(apollo.url, tmp_path), tmp_path / "daphne.log"
    )
    try:
        await server.wait_log(r"Listening on TCP address")
        assert not [r for r in apollo.requests if r.path == CONFIGS]  # inert until used
        first = await get_json(port, "/", count=20)  # concurrent first requests
        assert {(row["greeting"], row["state"]) for row in first} == {("hello", "running")}
        pid = {int(str(row["pid"])) for row in first}
        # Daphne sets up logging before it imports the app: its lines carry no pid.
        assert len(await server.wait_log(ONE_START)) == 1
        loads = [r for r in apollo.requests if r.path == CONFIGS and r.status == 200]
        assert len(loads) == 1  # one start (the poller's refetch after it is a 304)
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(1)
        apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
        seen = await server.wait_log(r"daphne (\d+) sees greeting='bonjour'")
        assert {int(p) for p in seen} == pid
        assert (await get_json(port, "/"))[0]["greeting"] == "bonjour"
        assert len(re.findall(ONE_START, server.log())) == 1  # never started again
        await server.stop()
        assert_clean(server.log())
    finally:
        server.kill()


DJANGO = {
    "gunicorn-preload": (
        ["gunicorn", "--no-control-socket", "--preload", "-w", "2", "--graceful-timeout", "10"],
        "django_project.wsgi:application",
        2,
    ),
    "daphne": (["daphne"], "django_project.asgi:application", 1),
    "uvicorn-workers": (
        ["uvicorn", "--workers", "2", "--lifespan", "off"],
        "django_project.asgi:application",
        2,
    ),
}


def django_args(name: str, port: int) -> list[str]:
    argv, target, _ = DJANGO[name]
    exe = tool(argv[0], f"pip install {argv[0]}")
    if argv[0] == "gunicorn":
        bind = ["-b", f"127.0.0.1:{port}"]
    elif argv[0] == "daphne":
        bind = ["-b", "127.0.0.1", "-p", str(port)]
    else:
        bind = ["--host", "127.0.0.1", "--port", str(port)]
    return [exe, *argv[1:], *bind, target]


@pytest.mark.parametrize("name", list(DJANGO))
async def test_django_every_process_follows_a_publish(
    name: str, apollo: ApolloTestServer, tmp_path: Path
) -> None:
    workers = DJANGO[name][2]
    port = free_port()
    env = server_env(apollo.url, tmp_path, DJANGO_SETTINGS_MODULE="django_project.settings")
    server = ServerProcess(django_args(name, port), env, tmp_path / "server.log")
    try:
        # Every serving process polls by itself (a preloading arbiter holds no poll). Start-up
        # lines are logged before Django configures logging: the polls are counted instead.
        async with asyncio.timeout(60):
            await apollo.wait_for_polls(workers)
        assert apollo.held_polls == workers
        apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
        seen = await server.wait_log(r"django (\d+) sees greeting='bonjour'", workers)
        pids = {int(p) for p in seen}
        assert len(pids) == workers
        if name != "daphne":  # a supervisor or arbiter that serves nothing
            assert server.proc.pid not in pids
        for path in ("/greeting", "/greeting-async"):
            rows = await get_json(port, path, count=4)
            assert {row["greeting"] for row in rows} == {"bonjour"}
            assert {int(str(row["pid"])) for row in rows} <= pids
        await server.stop()
        await server.wait_gone(pids | {server.proc.pid})
        assert_clean(server.log())
    finally:
        server.kill()
