"""multiprocessing ``spawn`` and ``forkserver``: a client built at import in each child updates.

``examples/multiprocessing_config.py`` builds and starts a ``SyncApolloClient`` at module level;
``examples/multiprocessing_app.py`` starts two children. With ``spawn`` (and ``forkserver``)
each child imports the module again and polls with its own client; with a forkserver that
preloads the module, the server process imports it once as a preforking master (loads, holds
no poll) and each child forked from it polls. The test server counts exactly one
held poll per child plus the parent's, and every child's listener sees the publish.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from aioapollo.testing import ApolloTestServer

from .._procs import BAD_LOG_LINES, EXAMPLES, ServerProcess, server_env

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

APP_ID = "demo-app"
CHILDREN = 2


def lines(server: ServerProcess, event: str) -> list[dict[str, object]]:
    found = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if row["event"] == event:
                found.append(row)
    return found


@pytest.mark.parametrize(
    ("method", "preload"),
    [("spawn", False), ("forkserver", False), ("forkserver", True)],
    ids=["spawn", "forkserver", "forkserver-preload"],
)
async def test_a_client_built_at_import_in_each_child_updates(
    tmp_path: Path, method: str, preload: bool
) -> None:
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        args = [
            sys.executable,
            str(EXAMPLES / "multiprocessing_app.py"),
            method,
            str(CHILDREN),
            "bonjour",
            *(["preload"] if preload else []),
        ]
        run = ServerProcess(args, server_env(apollo.url, tmp_path), tmp_path / "mp.log")
        try:
            await run.wait_log(r'"event": "ready"', CHILDREN)
            ready = lines(run, "ready")
            assert all(row["polling"] and row["greeting"] == "hello" for row in ready)
            children = {row["pid"] for row in ready}
            assert run.proc.pid not in children and len(children) == CHILDREN
            # The parent's poll and one per child; none in a forkserver.
            async with asyncio.timeout(60):
                await apollo.wait_for_polls(1 + CHILDREN)
            assert apollo.held_polls == 1 + CHILDREN
            assert ("loaded in the multiprocessing forkserver master" in run.log()) is preload
            apollo.publish(APP_ID, "application", {"greeting": "bonjour"})
            await run.wait_log(r'"event": "changed"', CHILDREN)
            assert await asyncio.wait_for(asyncio.to_thread(run.proc.wait), 60) == 0
            changed = lines(run, "changed")
            assert {row["pid"] for row in changed} == children
            assert all(row["greeting"] == "bonjour" for row in changed)
            bad = [line for line in run.log().splitlines() if BAD_LOG_LINES.search(line)]
            assert not bad, bad
        finally:
            run.kill()
