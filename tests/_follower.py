"""A process that only follows: ``python tests/_follower.py '<json options>'``.

Started as a fresh interpreter (as ``multiprocessing``'s spawn, uvicorn's and hypercorn's
``--workers`` start theirs), it builds a ``share_poll=True`` client from the JSON keyword
arguments, starts it, and reports on stdout, one JSON line each: once started, then once per
change event. Each report says whether aiohttp is loaded and the process's RSS. It runs until
its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aioapollo
from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo._share import timing


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def report(client: ApolloClient, what: str, **extra: Any) -> None:
    stats = client.stats()
    line = {
        "what": what,
        "role": stats.role,
        "degraded": stats.degraded,
        "aiohttp": "aiohttp" in sys.modules,
        "rss_kib": rss_kib(),
        "greeting": client.get_nowait("greeting"),
        **extra,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(options: dict[str, Any]) -> None:
    timing.LEADER_SILENCE = options.pop("leader_silence", timing.LEADER_SILENCE)
    loop = asyncio.get_running_loop()
    async with ApolloClient(options.pop("app_id"), share_poll=True, **options) as client:

        def changed(event: ConfigChangeEvent) -> None:
            report(client, "change", keys=sorted(event.changes))

        client.on_change(changed)
        report(client, "started")
        await loop.run_in_executor(None, sys.stdin.read)  # until the test is done with us


if __name__ == "__main__":
    assert aioapollo.__version__
    asyncio.run(main(json.loads(sys.argv[1])))
