"""End to end: `aioapollo config apply --publish` in its own process reaches an ApolloClient
listener here and a SyncApolloClient in another process, exactly; a rollback takes both back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aioapollo.openapi import ApolloOpenApiClient
from aioapollo.testing import ApolloTestServer

from .conftest import APP, NS, TOKEN

# A SyncApolloClient in its own process: prints one JSON line per change event.
_WATCHER = """
import json, sys
from aioapollo import SyncApolloClient
cfg = SyncApolloClient(sys.argv[2], config_server=sys.argv[1], cache_dir=None, backoff_initial=0.05)
def show(event):
    changes = {k: [c.old_value, c.new_value] for k, c in event.changes.items()}
    print(json.dumps(changes, sort_keys=True), flush=True)
cfg.on_change(show)
cfg.start()
print(json.dumps({"ready": cfg.get("timeout")}), flush=True)
sys.stdin.read()  # until the test closes stdin
cfg.close()
"""


def _env(portal: ApolloTestServer) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "APOLLO_PORTAL_URL": portal.url,
        "APOLLO_OPENAPI_TOKEN": TOKEN,
        "APOLLO_OPENAPI_OPERATOR": "ci-bot",
        "APP_ID": APP,
    }


async def _line(proc: asyncio.subprocess.Process) -> Any:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, "the watcher process ended"
    return json.loads(line)


async def _apply(portal: ApolloTestServer, root: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioapollo", "config", "apply", str(root), "--publish", *args,
        env=_env(portal), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b"published release" in out


async def test_apply_publish_then_rollback_reaches_every_client(
    portal: ApolloTestServer, make_client, events, tmp_path: Path, api: ApolloOpenApiClient
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    watcher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WATCHER, portal.url, APP, env=_env(portal),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await _line(watcher) == {"ready": "30"}
        desired = tmp_path / "DEV" / "default" / "application"
        desired.parent.mkdir(parents=True)
        desired.write_text('timeout: "45"\ngreeting: "hello"\nretries: "3"\n')
        await _apply(portal, tmp_path, "--title", "raise timeout")
        expected = {"timeout": ["30", "45"], "retries": [None, "3"]}
        event = await events.next()
        assert {k: [c.old_value, c.new_value] for k, c in event.changes.items()} == expected
        assert await _line(watcher) == expected

        latest = await api.latest_release(**NS)
        assert latest is not None and latest.name == "raise timeout"
        await api.rollback(env="DEV", release_id=latest.id)
        back = {"timeout": ["45", "30"], "retries": ["3", None]}
        event = await events.next()
        assert {k: [c.old_value, c.new_value] for k, c in event.changes.items()} == back
        assert await _line(watcher) == back
    finally:
        assert watcher.stdin is not None
        watcher.stdin.close()
        await asyncio.wait_for(watcher.wait(), 20)
    assert watcher.returncode == 0
