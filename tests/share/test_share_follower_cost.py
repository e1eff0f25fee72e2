"""A process that only follows is cheap: it never imports aiohttp until it must poll Apollo.

The follower is a spawned interpreter (tests/_follower.py), so nothing this test process has
imported can hide what the follower imports. Its leader is a forked child.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST
from .test_share_faults import leader_in_child

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

FOLLOWER = Path(__file__).resolve().parent.parent / "_follower.py"


class Spawned:
    """A follower process and its JSON-line reports."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def next(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, "the follower exited without reporting"
        report: dict[str, Any] = json.loads(line)
        return report


@pytest.fixture
async def spawn_follower(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def spawn(**options: Any) -> Spawned:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(FOLLOWER),
            json.dumps({"app_id": APP, **FAST, **options}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
        procs.append(proc)
        return Spawned(proc)

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # it closes its client and exits
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_a_spawned_follower_imports_aiohttp_only_once_it_polls_apollo_itself(
    server: ApolloTestServer, make_client: Any, tmp_path: Path, spawn_follower: Any
) -> None:
    share_dir = tmp_path / "share"

    def shared(**kwargs: Any) -> Any:
        return make_client(share_poll=True, share_dir=share_dir, **kwargs)

    leader = leader_in_child(shared)
    assert (await leader.next())["role"] == "leader"
    follower = await spawn_follower(
        config_server=server.url,
        share_dir=str(share_dir),
        cache_dir=str(tmp_path / "follower-cache"),
        leader_silence=0.5,
    )
    started = await follower.next()
    assert started["role"] == "follower", started
    assert started["greeting"] == "hello"
    assert started["aiohttp"] is False, "a follower imported aiohttp at start"

    # A release reaches it through the leader: still no aiohttp.
    server.publish(APP, "application", {"greeting": "via the leader", "timeout": "30"})
    heard = await follower.next()
    assert (heard["what"], heard["greeting"]) == ("change", "via the leader")
    assert heard["aiohttp"] is False, "a follower imported aiohttp to apply a pushed release"
    assert heard["degraded"] is None

    # Its leader hangs: it polls Apollo itself, which loads aiohttp, and hears releases.
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        server.publish(APP, "application", {"greeting": "while the leader hangs", "timeout": "30"})
        heard = await follower.next()
        assert (heard["what"], heard["greeting"]) == ("change", "while the leader hangs")
        assert heard["degraded"] is not None
        assert heard["aiohttp"] is True
    finally:
        os.kill(leader.pid, signal.SIGCONT)
