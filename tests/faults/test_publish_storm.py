"""10 000 publishes in a row: memory stays flat, the last value wins, no change is reordered.

The config service coalesces: a long poll answered after several publishes makes the client
fetch only the newest release. So "listeners saw every change in order" means every change
the client *applied*: each event starts from exactly the value the previous event ended with
(nothing was applied without an event, nothing was skipped between two events), and the
published sequence numbers only ever go up.

The server runs in its own process, so ``tracemalloc`` in this one measures the client alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import tracemalloc
from pathlib import Path

import yarl

from aioapollo import ConfigChangeEvent

from .._support import wait_until
from ..conftest import APP, ClientFactory

logger = logging.getLogger("tests.faults.storm")

PUBLISHES = 10_000
BATCH = 1_000
ROOT = Path(__file__).resolve().parents[2]


class OrderCheck:
    """A listener that checks the chain of changes as they come, keeping O(1) state."""

    def __init__(self, first: str) -> None:
        self.last = first
        self.events = 0
        self.broken: list[tuple[str | None, str | None, str]] = []

    async def __call__(self, event: ConfigChangeEvent) -> None:
        change = event.changes.get("n")
        self.events += 1
        in_order = (
            change is not None
            and change.old_value == self.last
            and change.new_value is not None
            and int(change.new_value) > int(self.last)
        )
        if not in_order and len(self.broken) < 10:
            self.broken.append(
                (change and change.old_value, change and change.new_value, self.last)
            )
        if change is not None and change.new_value is not None:
            self.last = change.new_value


def _clear_url_caches() -> None:
    """yarl memoises parsed URLs in bounded LRU caches (128 entries each), and every release
    gives the client new query strings: empty them so that filling them up does not pass for
    a leak. (``yarl.cache_clear()`` covers only the host caches.)"""
    yarl.cache_clear()
    for module in (sys.modules.get("yarl._url"), sys.modules.get("yarl._parse")):
        for value in vars(module or object).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


async def test_ten_thousand_publishes(make_client: ClientFactory, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults._storm_server",
        APP,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("http://"), url
        client = make_client(config_server=url, cache_dir=tmp_path / "cache")
        check = OrderCheck("-1")
        client.on_change(check)
        await client.start()
        sizes: list[int] = []
        tracemalloc.start()
        try:
            for start in range(0, PUBLISHES, BATCH):
                # Published in the server process while the client polls, fetches and saves.
                proc.stdin.write(f"publish {start} {BATCH}\n".encode())
                await proc.stdin.drain()
                async with asyncio.timeout(30):
                    assert (await proc.stdout.readline()).strip() == b"done"
                last = str(start + BATCH - 1)
                await wait_until(lambda last=last: check.last == last, timeout=20)
                if start >= 2 * BATCH:  # after a warm-up (connection pool, caches)
                    _clear_url_caches()
                    gc.collect()
                    sizes.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        growth = max(sizes) - min(sizes)
        logger.info(
            "%d publishes: %d changes applied, all in order; traced memory %d..%d bytes "
            "(growth %d)",
            PUBLISHES,
            check.events,
            min(sizes),
            max(sizes),
            growth,
        )
        assert check.broken == []
        assert await client.get("n") == str(PUBLISHES - 1)
        assert client.snapshot().get("greeting") == "hello"
        assert check.events >= PUBLISHES // BATCH  # at least one applied change per batch
        # Flat (it wobbles by 10-50 kB with in-flight requests and log records): a leak of 20
        # bytes per publish would add 160 kB over the last 8 batches.
        assert growth < 100_000, sizes
        await client.aclose()
    finally:
        proc.stdin.close()  # end of input: the server process stops
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
