"""uWSGI's gevent loop (``--gevent 100 --gevent-monkey-patch``) with ``SyncApolloClient``.

The master patches with gevent, imports ``examples/flask_app.py`` (the client loads there and
keeps no thread) and forks; each worker runs its requests as greenlets and its poller on a
real OS thread (built from the original ``_thread`` primitives), started from uWSGI's
post-fork hook. One publish reaches every worker, and requests see it.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import UWSGI_HINT, ServerProcess, server_env, tool
from .._support import free_port
from .test_servers_wsgi import assert_clean, greetings, publish_and_collect, uwsgi_args

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]
pytest.importorskip("gevent", reason="gevent is not installed (pip install -e '.[test]')")
pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")

APP_ID = "demo-app"
WORKERS = 2


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=30) as server:
        server.publish(APP_ID, "application", {"greeting": "hello", "db_url": "pg://db-1"})
        yield server


def require_gevent_plugin() -> None:
    """This uWSGI build must have its gevent loop engine (``--gevent``), else skip."""
    plugins = subprocess.run(
        [tool("uwsgi", UWSGI_HINT), "--plugins-list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # uWSGI prints the list on stderr
        text=True,
        timeout=30,
        check=False,
    ).stdout
    if "gevent" not in plugins.split():
        pytest.skip("this uWSGI build has no gevent plugin (uwsgi --plugins-list)")


async def test_uwsgi_gevent_every_worker_updates(apollo: ApolloTestServer, tmp_path: Path) -> None:
    require_gevent_plugin()
    port = free_port()
    args = uwsgi_args(port, "--gevent", "100", "--gevent-monkey-patch")
    args[args.index("--processes") + 1] = str(WORKERS)
    server = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "uwsgi.log")
    try:
        found = await server.wait_log(r"spawned uWSGI worker \d+ \(pid: (\d+)", WORKERS)
        pids = {int(pid) for pid in found}
        assert "loaded in the uWSGI master" in server.log()
        assert {g["greeting"] for g in await greetings(port, 4)} == {"hello"}
        await publish_and_collect(apollo, server, pids, "bonjour")
        after = await greetings(port, 8)
        assert {g["greeting"] for g in after} == {"bonjour"} and all(g["polling"] for g in after)
        assert apollo.held_polls == WORKERS
        assert await server.stop() in (0, 30)  # uWSGI exits 30 after SIGTERM
        await server.wait_gone(pids | {server.proc.pid})
        assert_clean(server.log())
    finally:
        server.kill()
