"""One owner of fork state: import has no side effects, generations, facade parity."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

from aioapollo import ClientOptions, ClientState, SyncApolloClient
from aioapollo._core.engine import Engine
from aioapollo._hooks import HookSet
from aioapollo._runtime import process as _process
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, FAST

IMPORT_ONLY = """
import sys, types
fake = types.ModuleType("uwsgi")
def hook(): pass
fake.post_fork_hook = hook
sys.modules["uwsgi"] = fake  # as inside uWSGI, with or without a master
import aioapollo, aioapollo.integrations.starlette
from aioapollo._runtime import process as _process
assert fake.post_fork_hook is hook, "import chained into uWSGI's post-fork hook"
assert not _process._installed and not _process.under_uwsgi
assert "uwsgidecorators" not in sys.modules
print("clean")
"""


def test_import_has_no_side_effects() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


async def test_start_installs_the_hooks_once(server: ApolloTestServer) -> None:
    """Built directly, the engine under either client: its start belongs to this process's
    generation."""
    options = ClientOptions.build(APP, config_server=server.url, cache_dir=None, **FAST)
    engine = Engine(options, HookSet(None), lambda live: None)
    await engine.start(share_poll=False)
    try:
        assert _process._installed
        assert engine.owner is not None and engine.owner.generation == _process.current()
    finally:
        await engine.aclose()


async def test_sync_client_has_the_async_clients_introspection(
    server: ApolloTestServer, make_sync: Callable[..., SyncApolloClient]
) -> None:
    cfg = make_sync()
    assert cfg.state is ClientState.CREATED
    await asyncio.to_thread(cfg.start)
    assert cfg.state is ClientState.RUNNING
    stats = cfg.stats()
    assert stats.state == "running" and stats.healthy
    assert stats.app_id == APP and set(stats.namespaces) == {"application"}
    server.publish(APP, "application", {"greeting": "hi"})
    await wait_until(lambda: cfg.notification_ids["application"] >= 0, timeout=10)
    assert cfg.last_poll_success is not None
    await asyncio.to_thread(cfg.close)
    assert cfg.state is ClientState.CLOSED and cfg.stats().state == "closed"
    assert not cfg.stats().healthy


async def test_sync_client_in_a_preforking_master_reports_created(
    make_sync: Callable[..., SyncApolloClient],
) -> None:
    cfg = make_sync()
    await asyncio.to_thread(cfg.start, prefork=True)
    assert cfg.state is ClientState.CREATED and not cfg.polling
    assert cfg.get("greeting") == "hello"
