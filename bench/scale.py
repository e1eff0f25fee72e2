"""Scale: one namespace of 1,000 / 10,000 / 100,000 keys: load time, update time, memory.

* load: construction to loaded (fetch + parse), a new client each time, each in a fresh cache
  directory and ``HOME``; the baseline and the clients take turns (who goes first rotates);
* update: publish of a one-key change -> listener fired (notification + fetch + parse + diff
  of the whole namespace), measured from the moment the server's publish returned. The
  clients that have a change listener run side by side, each on its own copy of the
  namespace, and take turns publish by publish;
* memory: bytes still allocated (``tracemalloc``) once one client is loaded, against a test
  server in another process, after a warm-up build (imports, SSL contexts).

Baselines from the same run: an open aiohttp session fetching the same ``/configs`` body and
``json.loads`` it (time), and the parsed ``configurations`` dict alone (memory).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
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


REPS = {1_000: 10, 10_000: 6, 100_000: 5}


def ns_for(size: int, copy: str = "") -> str:
    return f"scale{size}{copy}"


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
    url: str,
    size: int,
    tmp: Path,
    listener: Any = None,
    copy: str = "",
    *,
    cache: bool = True,
    written: bool = False,
) -> Callable[[], Awaitable[Built]]:
    """aioapollo with its defaults; ``written``: return once the cache file is on disk too
    (``start()`` does not wait for it; a write in flight holds its encoded copy)."""

    async def build() -> Built:
        client = aioapollo.ApolloClient(
            c.APP,
            namespaces=[ns_for(size, copy)],
            config_server=url,
            cache_dir=tmp / "aio" if cache else None,
        )
        if listener is not None:
            client.add_listener(listener)
        await client.start()
        if cache and written:
            await asyncio.to_thread(c.wait_until, lambda: _cache_file(tmp / "aio"), 10.0)
            await asyncio.sleep(0.1)  # the writer's thread returns after the rename
        return client, client.aclose

    return build


def _cache_file(directory: Path) -> bool:
    return any(not p.name.startswith(".tmp-") for p in directory.rglob("*.json"))


def aio_nocache_builder(
    url: str, size: int, tmp: Path, listener: Any = None, copy: str = ""
) -> Callable[[], Awaitable[Built]]:
    return aio_builder(url, size, tmp, listener, copy, cache=False)


def papollo_builder(
    url: str, size: int, tmp: Path, listener: Any = None, copy: str = ""
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        import papollo

        client = papollo.Apollo(url, c.APP, watch=True)
        if listener is not None:
            client.add_listener(lambda ns, old, new: listener(new))
        client.namespace(ns_for(size, copy))

        async def close() -> None:
            client.close()

        return client, close

    return build


def acp_builder(
    url: str, size: int, tmp: Path, listener: Any = None, copy: str = ""
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
    url: str, size: int, tmp: Path, listener: Any = None, copy: str = ""
) -> Callable[[], Awaitable[Built]]:
    async def build() -> Built:
        import apollocfg

        client = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=[ns_for(size)])
        client.start()

        async def close() -> None:
            client.stop(timeout=0.05)

        return client, close

    return build


FLOOR = "fetch + json.loads (baseline)"
CLIENTS = [
    ("aioapollo", "aioapollo", aio_builder, True),
    ("aioapollo, cache_dir=None", "aioapollo", aio_nocache_builder, True),
    ("papollo `Apollo`", "papollo", papollo_builder, True),
    ("apollo-client-python", "apollo.apollo_client", acp_builder, False),
    ("apollocfg", "apollocfg", apollocfg_builder, False),
]


Builder = Callable[..., Callable[[], Awaitable[Built]]]


async def timed_build(builder: Builder, url: str, size: int, fresh: Path) -> float:
    """One load in a fresh directory (also ``HOME``: peers cache under ``~``), in ms."""
    os.makedirs(fresh)
    home = os.environ["HOME"]
    os.environ["HOME"] = str(fresh)
    try:
        gc.collect()
        t0 = time.perf_counter()
        _, close = await builder(url, size, fresh)()
        elapsed = (time.perf_counter() - t0) * 1000
        await close()
    finally:
        os.environ["HOME"] = home
    return elapsed


async def update_times(
    server: Any, builders: list[tuple[str, Builder]], url: str, size: int, tmp: Path, reps: int
) -> dict[str, list[float]]:
    """Publish one-key changes, each client's copy in turn; time until its listener saw it."""
    loop = asyncio.get_running_loop()
    seen: dict[str, asyncio.Queue[float]] = {label: asyncio.Queue() for label, _ in builders}
    closers = []
    copies = {label: f"-{i}" for i, (label, _) in enumerate(builders)}
    data = c.payload(size)
    for label, builder in builders:
        server.publish(c.APP, ns_for(size, copies[label]), data)

        def on_change(event: Any, queue: asyncio.Queue[float] = seen[label]) -> None:
            stamp = time.monotonic()
            loop.call_soon_threadsafe(queue.put_nowait, stamp)

        async def async_listener(event: Any, hear: Any = on_change) -> None:
            hear(event)

        listener = async_listener if label.startswith("aioapollo") else on_change
        fresh = tmp / f"update-{size}-{copies[label]}"
        os.makedirs(fresh)
        _, close = await builder(url, size, fresh, listener, copies[label])()
        closers.append(close)
    times: dict[str, list[float]] = {label: [] for label, _ in builders}
    try:
        for rep in range(1, reps + 1):
            for label, _ in c.rotate(builders, rep):
                held = await asyncio.to_thread(
                    c.wait_until, lambda: server.held_polls >= len(builders), 10.0
                )
                if not held:
                    continue
                change = {**data, "round": str(rep)}
                await asyncio.to_thread(server.publish, c.APP, ns_for(size, copies[label]), change)
                t0 = time.monotonic()
                try:
                    stamp = await asyncio.wait_for(seen[label].get(), 20)
                except TimeoutError:
                    continue
                times[label].append(max(0.0, stamp - t0) * 1000)
    finally:
        for close in closers:
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
                    _, close = await builder(url, sizes[0], tmp / f"warm-{label}")()
                except Exception:  # cannot start here: reported by measure()
                    continue
                await close()
                usable.append((label, builder))
        for size in sizes:
            found[("floor", size)] = await retained(functools.partial(build_floor, url, size))
            for label, builder in usable:
                where = tmp / f"m{size}-{label}"
                if builder is aio_builder:
                    build = aio_builder(url, size, where, written=True)
                else:
                    build = builder(url, size, where)
                found[(label, size)] = await retained(build)
    return found


async def measure(args: Any, tmp: Path) -> dict[str, Any]:
    mem = await memory(tmp, SIZES)
    floor: tuple[str, Builder] = (FLOOR, lambda url, size, fresh: lambda: build_floor(url, size))
    usable = [floor] + [
        (label, builder) for label, _, builder, _ in CLIENTS if (label, SIZES[0]) in mem
    ]
    rows: list[dict[str, Any]] = []
    reps_of = {size: 2 if args.quick else REPS[size] for size in SIZES}
    serial = 0
    with c.ServerThread(hold_seconds=60) as server:
        url = server.url
        for size in SIZES:
            server.publish(c.APP, ns_for(size), c.payload(size))
        for size in SIZES:
            loads: dict[str, list[float]] = {label: [] for label, _ in usable}
            for rep in range(reps_of[size]):
                for label, builder in c.rotate(usable, rep):  # who goes first takes turns
                    serial += 1
                    loads[label].append(await timed_build(builder, url, size, tmp / f"l{serial}"))
            listened = [
                (label, b)
                for label, _, b, with_update in CLIENTS
                if with_update and (label, SIZES[0]) in mem
            ]
            # A server of their own: held_polls counts the polls of closed clients until
            # their hold ends, which would let a publish go out before every poll is held.
            with c.ServerThread(hold_seconds=60) as fresh:
                updates = await update_times(fresh, listened, fresh.url, size, tmp, reps_of[size])
            for label, _ in usable:
                rows.append(
                    {
                        "label": label,
                        "size": size,
                        "floor": label == FLOOR,
                        "load_ms": c.rounded(loads[label]),
                        "update_ms": c.rounded(updates[label]) if label in updates else None,
                        "mem_bytes": mem.get(("floor" if label == FLOOR else label, size)),
                        "note": "",
                    }
                )
    missing = [
        {"label": label, "why": "could not start" if c.peer_available(module) else "not installed"}
        for label, module, _, _ in CLIENTS
        if (label, SIZES[0]) not in mem
    ]
    return {
        "params": {"sizes": list(SIZES), "reps": {str(k): v for k, v in reps_of.items()}},
        "rows": rows,
        "missing": missing,
    }


def main() -> None:
    c.run_section("scale", __doc__ or "", measure)


if __name__ == "__main__":
    main()
