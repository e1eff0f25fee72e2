"""reload_server_on_change: exactly one reload per release, whichever worker sees it first."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aioapollo import SyncApolloClient, reload_server_on_change
from aioapollo.testing import ApolloTestServer

from .._workers import STEP_S, Changes, Child, wait_polling
from ..conftest import APP

WORKERS = 4

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = [
    pytest.mark.workers,
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def test_it_needs_keys_and_real_collections(tmp_path: Path) -> None:
    cfg = SyncApolloClient(APP, config_server="http://127.0.0.1:9", cache_dir=None)
    with pytest.raises(ValueError, match="keys"):
        reload_server_on_change(cfg)
    with pytest.raises(TypeError, match="not a string"):
        reload_server_on_change(cfg, keys="db_url")


async def test_one_reload_per_release_across_workers(
    server: ApolloTestServer,
    make_sync: Callable[..., SyncApolloClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.publish(APP, "application", {"db_url": "postgres://db-1/app", "greeting": "hello"})
    cfg = make_sync()
    reloads: list[int] = []  # in each child, the pids that asked for a reload
    reload_server_on_change(
        cfg, keys=["db_url"], marker_dir=tmp_path / "markers", reload=lambda: reloads.append(1)
    )
    handled = Changes()  # registered after the helper: called once the helper returned
    cfg.on_change(handled)
    await asyncio.to_thread(cfg.start, prefork=True)

    def worker(report: Callable[[dict[str, Any]], None]) -> None:
        wait_polling(cfg)
        report({"ready": os.getpid()})
        for _ in range(2):  # one release that touches db_url, one that does not
            event = handled.queue.get(timeout=STEP_S)
            report({"keys": sorted(event.changed_keys), "reloads": len(reloads)})
        cfg.close()

    children = [Child(worker) for _ in range(WORKERS)]
    for child in children:
        await child.next()
    server.publish(APP, "application", {"db_url": "postgres://db-2/app", "greeting": "hello"})
    first = [await child.next() for child in children]
    assert all(r["keys"] == ["db_url"] for r in first)
    assert sum(r["reloads"] for r in first) == 1
    server.publish(APP, "application", {"db_url": "postgres://db-2/app", "greeting": "hi"})
    second = [await child.next() for child in children]
    assert all(r["keys"] == ["greeting"] for r in second)
    assert sum(r["reloads"] for r in second) == 1  # no new reload for an unwatched key
    assert [await child.exit_code() for child in children] == [0] * WORKERS
    assert len(list((tmp_path / "markers").iterdir())) == 1
    assert "postgres://" not in caplog.text


async def test_without_a_server_it_warns_and_does_nothing(
    server: ApolloTestServer,
    make_sync: Callable[..., SyncApolloClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    cfg = make_sync()
    reload_server_on_change(cfg, prefixes=["gree"], marker_dir=tmp_path / "markers")
    handled = Changes()
    cfg.on_change(handled)
    await asyncio.to_thread(cfg.start)
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        server.publish(APP, "application", {"greeting": "bonjour"})
        await handled.next()
    assert "no uWSGI or gunicorn server" in caplog.text
    assert not (tmp_path / "markers").exists()
