"""Rebuild a connection pool in place when its settings change (no server reload).

Some settings need new connections, not just new values. When the pool is owned by the app,
a listener can build a new pool from the new values, swap it in, and close the old one once
the requests already using it are done. Requests never see a closed pool.

    python examples/rebuild_pool.py

runs it against the embedded Apollo test server: the "upstream" is the test server's own
health endpoint, and a publish of ``upstream.pool_size`` swaps the pool.
"""

from __future__ import annotations

import asyncio

import aiohttp

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo.testing import ApolloTestServer

#: How long an old pool stays open for requests that were already using it.
DRAIN_SECONDS = 1.0


class UpstreamPool:
    """An aiohttp session built from config, rebuilt when its keys change."""

    KEYS = ("upstream.url", "upstream.pool_size", "upstream.timeout")

    def __init__(self, cfg: ApolloClient) -> None:
        self._cfg = cfg
        self.session = self._build()
        self.rebuilt = asyncio.Event()
        self._draining: set[asyncio.Task[None]] = set()
        cfg.add_listener(self._rebuild, keys=self.KEYS)

    def _build(self) -> aiohttp.ClientSession:
        snap = self._cfg.snapshot()
        return aiohttp.ClientSession(
            base_url=snap.get("upstream.url"),
            connector=aiohttp.TCPConnector(limit=snap.get_int("upstream.pool_size", 10) or 10),
            timeout=aiohttp.ClientTimeout(total=snap.get_float("upstream.timeout", 5.0)),
        )

    async def _rebuild(self, event: ConfigChangeEvent) -> None:
        """A coroutine listener: runs on the client's loop, the loop that owns the pool."""
        old, self.session = self.session, self._build()
        task = asyncio.create_task(self._close_later(old))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        print(f"pool rebuilt for {sorted(event.changed_keys)}")
        self.rebuilt.set()

    async def _close_later(self, session: aiohttp.ClientSession) -> None:
        try:
            await asyncio.sleep(DRAIN_SECONDS)
        finally:  # also when cancelled by aclose()
            await session.close()

    async def aclose(self) -> None:
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        await self.session.close()


async def main() -> None:
    async with ApolloTestServer() as apollo:
        settings = {"upstream.url": apollo.url, "upstream.pool_size": "4"}
        apollo.publish("pool-demo", "application", settings)
        async with ApolloClient("pool-demo", config_server=apollo.url, cache_dir=None) as cfg:
            pool = UpstreamPool(cfg)
            try:
                async with pool.session.get("/__aioapollo__/health") as reply:
                    print("before:", reply.status, "limit", pool.session.connector.limit)
                apollo.publish("pool-demo", "application", {**settings, "upstream.pool_size": "16"})
                await asyncio.wait_for(pool.rebuilt.wait(), 10)
                async with pool.session.get("/__aioapollo__/health") as reply:
                    print("after: ", reply.status, "limit", pool.session.connector.limit)
            finally:
                await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
