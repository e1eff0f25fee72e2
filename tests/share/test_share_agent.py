"""`aioapollo agent`: a process that leads its host's sharing group; app clients follow it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo._share.group import share_fingerprint
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST

pytestmark = pytest.mark.timeout(90)


async def read_line(proc: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                pytest.fail(f"the agent exited before printing {pattern!r}")
            if match := re.search(pattern, line):
                return match


async def test_the_agent_leads_and_an_app_client_follows_it(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    share_dir = tmp_path / "share"
    env = {
        **os.environ,
        "APP_ID": APP,
        "APOLLO_CONFIG_SERVICE": server.url,
        "APOLLO_SHARE_DIR": str(share_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioapollo",
        "agent",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        group = (await read_line(proc, r"group (\w+)"))[1]
        await read_line(proc, r"leading \(pid \d+\)")
        client = ApolloClient(
            APP,
            config_server=server.url,
            share_poll=True,
            share_dir=share_dir,
            cache_dir=None,
            **FAST,
        )
        assert share_fingerprint(client.options) == group  # the agent printed the app's group
        heard: asyncio.Queue[ConfigChangeEvent] = asyncio.Queue()

        async def on_change(event: ConfigChangeEvent) -> None:
            await heard.put(event)

        client.on_change(on_change)
        async with client:
            stats = client.stats()
            assert stats.role == "follower" and stats.leader_pid == proc.pid
            await server.wait_for_polls(1)
            assert server.held_polls == 1  # the agent's
            server.publish(APP, "application", {"greeting": "from-agent"})
            async with asyncio.timeout(10):
                event = await heard.get()
            assert event.snapshot.get("greeting") == "from-agent"
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
            # The agent left: the app's client takes over and keeps updating.
            server.publish(APP, "application", {"greeting": "after-agent"})
            async with asyncio.timeout(10):
                event = await heard.get()
            assert event.snapshot.get("greeting") == "after-agent"
            assert client.stats().role == "leader"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
