"""Rebuild a connection pool in place when its settings change (no server reload).

Some settings need new connections, not just new values. ``cfg.resource(build, ...)`` builds
the pool from config on first use, builds a new one when a watched key changes, swaps it in,
and closes the old one once the requests already using it are done. Requests never see a
closed pool. (docs/resources.md has the whole story.)

    python examples/rebuild_pool.py

runs it against the embedded Apollo test server: the "upstream" is the test server's own
health endpoint, and a publish of ``upstream.pool_size`` swaps the pool.
"""

from __future__ import annotations

import asyncio

import aiohttp

from aioapollo import ApolloClient, NamespaceSnapshot
from aioapollo.testing import ApolloTestServer

built = asyncio.Event()


def build(values: NamespaceSnapshot) -> aiohttp.ClientSession:
    """Called on first use and after each change of an ``upstream.*`` key."""
    built.set()
    return aiohttp.ClientSession(
        base_url=values.get("upstream.url"),
        connector=aiohttp.TCPConnector(limit=values.get_int("upstream.pool_size", 10) or 10),
        timeout=aiohttp.ClientTimeout(total=values.get_float("upstream.timeout", 5.0)),
    )


async def main() -> None:
    async with ApolloTestServer() as apollo:
        settings = {"upstream.url": apollo.url, "upstream.pool_size": "4"}
        apollo.publish("pool-demo", "application", settings)
        async with ApolloClient("pool-demo", config_server=apollo.url, cache_dir=None) as cfg:
            # The old session is closed (its close()) once its borrowers are done, or after
            # grace seconds; cfg's own aclose() closes the current one.
            pool = cfg.resource(build, prefixes=["upstream."], grace=1.0, name="upstream")
            async with pool.use() as session, session.get("/__aioapollo__/health") as reply:
                print("before:", reply.status, "limit", session.connector.limit)
            built.clear()
            apollo.publish("pool-demo", "application", {**settings, "upstream.pool_size": "16"})
            await asyncio.wait_for(built.wait(), 10)
            print(f"pool rebuilt: generation {pool.generation}")
            async with pool.use() as session, session.get("/__aioapollo__/health") as reply:
                print("after: ", reply.status, "limit", session.connector.limit)


if __name__ == "__main__":
    asyncio.run(main())
