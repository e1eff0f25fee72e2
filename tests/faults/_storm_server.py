"""A test server in its own process, publishing on command (for memory measurements).

Prints its URL, then reads ``publish START COUNT`` lines from stdin and answers ``done`` once
it has published ``{"greeting": "hello", "n": str(i)}`` for each ``i`` in that range; stops at
end of input. Run as ``python -m tests.faults._storm_server APP_ID``.
"""

from __future__ import annotations

import asyncio
import sys

from aioapollo.testing import ApolloTestServer


def _serve_commands(server: ApolloTestServer, app_id: str) -> None:
    for line in sys.stdin:
        _, start, count = line.split()
        for i in range(int(start), int(start) + int(count)):
            server.publish(app_id, "application", {"greeting": "hello", "n": str(i)})
        sys.stdout.write("done\n")
        sys.stdout.flush()


async def main(app_id: str) -> None:
    async with ApolloTestServer(hold_seconds=0.5) as server:
        server.publish(app_id, "application", {"greeting": "hello", "n": "-1"})
        sys.stdout.write(server.url + "\n")
        sys.stdout.flush()
        await asyncio.to_thread(_serve_commands, server, app_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
