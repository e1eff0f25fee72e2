"""Scale: one namespace of 1,000 / 10,000 / 100,000 keys: load time, update time, memory.

* load: start to loaded (fetch + parse + first diff), new client each time;
* update: publish of a one-key change -> listener fired (notification + fetch + parse + diff
  of the whole namespace), measured from the moment the server's publish returned;
* memory: bytes still allocated (``tracemalloc``) once one client is loaded, the test
  server's own allocations filtered out.

Baselines from the same run: an open aiohttp session fetching the same ``/configs`` body and
``json.loads`` it (time), and the parsed ``configurations`` dict alone (memory).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common as c
import aiohttp

import aioapollo

SIZES = (1_000, 10_000, 100_000)
Built = tuple[Any, Callable[[], Awaitable[None]]]
_FILTERS = [tracemalloc.Filter(False, tracemalloc.__file__)]


def ns_for(size: int) -> str:
    return f"scale{size}"


async def retained(build: Callable[[], Awaitable[Built]]) -> int:
    """Bytes still allocated after ``build()`` (the server runs in another process)."""
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        _, close = await build()
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(_FILTERS)
    finally:
        tracemalloc.stop()
    await close()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


async def build_floor(url: str, size: int) -> Built:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/configs/{c.APP}/default/{ns_for(size)}") as resp:
            body = await resp.read()
    data = json.loads(body)["configurations"]
    del body

    async def close() -> None:
        data.clear()

    return data, close


def aio_builder(
    url: str, size: int, tmp: Path, listener: Any = None
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        client = aioapollo.ApolloClient(
            c.APP,
            namespaces=[ns_for(size)],
            config_server=url,
            cache_dir=tmp / "aio",
            **c.AIOAPOLLO_OPTIONS,
        )
        if listener is not None:
            client.add_listener(listener)
        await client.start()
        return client, client.aclose

    return build


def papollo_builder(
    url: str, size: int, tmp: Path, listener: Any = None
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        import papollo

        client = papollo.Apollo(url, c.APP, watch=True)
        if listener is not None:
            client.add_listener(lambda ns, old, new: listener(new))
        client.namespace(ns_for(size))

        async def close() -> None:
            client.close()

        return client, close

    return build


def acp_builder(
    url: str, size: int, tmp: Path, listener: Any = None
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        from apollo.apollo_client import ApolloClient

        client = ApolloClient(
            url, c.APP, [ns_for(size)], enable_dotenv=False, auto_update_enabled=False
        )

        async def close() -> None:
            ApolloClient._instances.clear()  # its per-arguments singleton keeps it alive

        return client, close

    return build


def apollocfg_builder(
    url: str, size: int, tmp: Path, listener: Any = None
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        import apollocfg

        client = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=[ns_for(size)])
        client.start()

        async def close() -> None:
            client.stop(timeout=0.05)

        return client, close

    return build


CLIENTS = [
    ("aioapollo", "aioapollo", aio_builder, True),
    ("papollo `Apollo`", "papollo", papollo_builder, True),
    ("apollo-client-python", "apollo.apollo_client", acp_builder, False),
    ("apollocfg", "apollocfg", apollocfg_builder, False),
]


async def time_builds(build: Callable[[], Awaitable[Built]], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        _, close = await build()
        times.append((time.perf_counter() - t0) * 1000)
        await close()
    return times


async def update_times(
    server: Any, builder: Any, url: str, size: int, tmp: Path, reps: int
) -> list[float]:
    """Publish a one-key change ``reps`` times; time until the listener saw it."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Queue[float] = asyncio.Queue()

    def on_change(event: Any) -> None:
        stamp = time.monotonic()
        loop.call_soon_threadsafe(seen.put_nowait, stamp)

    async def async_listener(event: aioapollo.ConfigChangeEvent) -> None:
        on_change(event)

    listener = async_listener if builder is aio_builder else on_change
    _, close = await builder(url, size, tmp, listener)()
    data = c.payload(size)
    times: list[float] = []
    try:
        for round_no in range(1, reps + 1):
            if not await asyncio.to_thread(c.wait_until, lambda: server.held_polls >= 1, 10.0):
                break
            await asyncio.to_thread(
                server.publish, c.APP, ns_for(size), {**data, "round": str(round_no)}
            )
            t0 = time.monotonic()
            try:
                stamp = await asyncio.wait_for(seen.get(), 20)
            except TimeoutError:
                break
            times.append(max(0.0, stamp - t0) * 1000)
    finally:
        await close()
    return times


async def memory(tmp: Path, sizes: tuple[int, ...]) -> dict[tuple[str, int], int]:
    """Retained bytes per client and size, against a server in a child process."""
    found: dict[tuple[str, int], int] = {}
    releases = {ns_for(size): c.payload(size) for size in sizes}
    with c.ServerProcess(releases, hold_seconds=60) as url:
        usable = []
        for label, module, builder, _ in CLIENTS:  # first-use costs (imports, SSL contexts...)
            if c.peer_available(module):
                try:
                    _, close = await builder(url, sizes[0], tmp)()
                except Exception:  # cannot start here: reported by measure()
                    continue
                await close()
                usable.append((label, builder))
        for size in sizes:
            found[("floor", size)] = await retained(lambda s=size: build_floor(url, s))
            for label, builder in usable:
                found[(label, size)] = await retained(builder(url, size, tmp))
    return found


async def measure(args: Any, tmp: Path) -> list[dict[str, Any]]:
    rows: list[list[Any]] = []
    mem = await memory(tmp, SIZES)
    with c.ServerThread(hold_seconds=60) as server:
        url = server.url
        for size in SIZES:
            server.publish(c.APP, ns_for(size), c.payload(size))
        for size in SIZES:
            reps = {1_000: 10, 10_000: 5, 100_000: 3}[size]
            if args.quick:
                reps = 2
            floor_times = await time_builds(lambda s=size: build_floor(url, s), reps)
            floor_ms = c.median(floor_times)
            floor_mem = mem[("floor", size)]
            rows.append(
                [
                    "fetch + json.loads (baseline)",
                    f"{size:,}",
                    c.fmt(floor_ms),
                    "1.00x",
                    "—",
                    f"{floor_mem / 2**20:.2f}",
                    "1.00x",
                ]
            )
            for label, module, builder, with_update in CLIENTS:
                if (label, size) not in mem:
                    why = "could not start" if c.peer_available(module) else "not installed"
                    rows.append([label, f"{size:,}", why, "", "", "", ""])
                    continue
                load = c.median(await time_builds(builder(url, size, tmp), reps))
                update = (
                    await update_times(server, builder, url, size, tmp, reps) if with_update else []
                )
                rows.append(
                    [
                        label,
                        f"{size:,}",
                        c.fmt(load),
                        c.ratio(load, floor_ms),
                        c.fmt(c.median(update)) if update else "—",
                        f"{mem[(label, size)] / 2**20:.2f}",
                        c.ratio(mem[(label, size)], floor_mem),
                    ]
                )
    return [
        {
            "section": "scale",
            "title": "Scale: one namespace of N keys (load and update in ms, memory in MiB)",
            "columns": [
                "client",
                "keys",
                "load ms",
                "load / baseline",
                "update ms",
                "retained MiB",
                "memory / baseline",
            ],
            "rows": rows,
            "notes": [
                "Keys look like `key.000123` = `value-123-xxxxxxxxxxxxxxxx`. Median of 10 / 5 / 3 "
                "loads for 1k / 10k / 100k keys; update = median of as many one-key changes.",
                "update ms starts when the server's publish returned; `—` = not measured "
                "(clients whose change path is the same thread-and-urllib fetch as their load).",
                "Retained memory: `tracemalloc` difference before building and after loading "
                "one client (gc collected), measured against a test server in another process.",
            ],
        }
    ]


def main() -> None:
    c.run_section(__doc__ or "", measure)


if __name__ == "__main__":
    main()
