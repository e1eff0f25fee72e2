"""One worker process of a simulated host: a sharing ApolloClient that reports to a file.

Usage: python share_worker.py CONFIG_URL SHARE_DIR REPORT_FILE. Reports JSON lines:
``started`` (role, value), then ``changed`` (value) on every change, until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from aioapollo import ApolloClient, ConfigChangeEvent

APP_ID = "netns-app"


def report(path: str, **fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def main(url: str, share_dir: str, path: str) -> None:
    client = ApolloClient(
        APP_ID, config_server=url, share_poll=True, share_dir=share_dir, cache_dir=None
    )

    @client.on_change
    async def changed(event: ConfigChangeEvent) -> None:
        report(path, event="changed", value=event.snapshot.get("greeting"))

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with client:
        stats = client.stats()
        report(path, event="started", role=stats.role, value=await client.get("greeting"))
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
