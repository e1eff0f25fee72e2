"""Start-up: time from start to every namespace loaded (1, 10, 50), and 200 namespaces at once.

The baseline is one round trip measured in the same run: a new aiohttp session, one
``GET /configs/...`` and ``json.loads`` of its body. Loading namespaces concurrently should make
start-up about one round trip, not N. "200 namespaces" counts the requests the test server
logged: one client should hold one long poll for all of them, not 200.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common as c
import aiohttp

import aioapollo

SIZES = (1, 10, 50)
WIDE = (100, 200)


def names(count: int) -> list[str]:
    return [c.NS] + [f"ns{i:03d}" for i in range(1, count)]


async def concurrent_gets(url: str, count: int) -> float:
    """The floor: a new aiohttp session, ``count`` concurrent GET /configs, json.loads each."""

    async def one(session: aiohttp.ClientSession, name: str) -> None:
        async with session.get(f"{url}/configs/{c.APP}/default/{name}") as response:
            json.loads(await response.read())

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, name) for name in names(count)))
    return (time.perf_counter() - t0) * 1000


Starter = Callable[[str, list[str], Path], Awaitable[Callable[[], Awaitable[None]]]]


async def start_aioapollo(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    client = aioapollo.ApolloClient(
        c.APP, namespaces=ns, config_server=url, cache_dir=tmp / "aio", **c.AIOAPOLLO_OPTIONS
    )
    await client.start()
    return client.aclose


async def start_aioapollo_nocache(
    url: str, ns: list[str], tmp: Path
) -> Callable[[], Awaitable[None]]:
    client = aioapollo.ApolloClient(
        c.APP, namespaces=ns, config_server=url, cache_dir=None, **c.AIOAPOLLO_OPTIONS
    )
    await client.start()
    return client.aclose


async def start_papollo(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    import papollo

    client = papollo.Apollo(url, c.APP, watch=True)
    for name in ns:  # its API loads a namespace on first read, one at a time
        client.namespace(name)

    async def close() -> None:
        client.close()

    return close


async def start_papollo_async(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    import papollo

    client = papollo.AsyncApollo(url, c.APP, watch=True)
    await asyncio.gather(*(client.namespace(name) for name in ns))
    return client.aclose


async def start_acp(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    from apollo.apollo_client import ApolloClient

    ApolloClient(url, c.APP, ns, enable_dotenv=False, auto_update_enabled=False)

    async def close() -> None:
        pass

    return close


async def start_apollocfg(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    import apollocfg

    client = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=ns)
    client.start()

    async def close() -> None:
        client.stop(timeout=0.05)

    return close


CLIENTS: list[tuple[str, str, Starter]] = [
    ("aioapollo `await start()`", "aioapollo", start_aioapollo),
    ("aioapollo `await start()`, cache_dir=None", "aioapollo", start_aioapollo_nocache),
    ("papollo `Apollo` (first read of each)", "papollo", start_papollo),
    ("papollo `AsyncApollo` (gathered reads)", "papollo", start_papollo_async),
    ("apollo-client-python (constructor)", "apollo.apollo_client", start_acp),
    ("apollocfg `start()`", "apollocfg", start_apollocfg),
]


async def startup_rows(url: str, reps: int, tmp: Path) -> tuple[list[list[Any]], float]:
    floors: dict[int, float] = {}
    rows: list[list[Any]] = []
    for size in SIZES:
        times = [await concurrent_gets(url, size) for _ in range(reps * 2)]
        floors[size] = c.median(times)
        rows.append(
            [
                f"{size} concurrent GETs (baseline)",
                size,
                c.fmt(floors[size], 2),
                c.fmt(c.percentile(times, 99), 2),
                "1.00x",
                c.ratio(floors[size], floors[SIZES[0]]),
            ]
        )
    base = floors[SIZES[0]]
    for label, module, starter in CLIENTS:
        if not c.peer_available(module):
            rows.append([label, "—", "—", "—", "—", "not installed"])
            continue
        for size in SIZES:
            times: list[float] = []
            try:
                for _ in range(reps):
                    t0 = time.perf_counter()
                    close = await starter(url, names(size), tmp)
                    times.append((time.perf_counter() - t0) * 1000)
                    await close()
            except Exception as exc:  # a peer that cannot start here is reported, not fatal
                rows.append([label, size, "—", "—", "—", f"could not start ({type(exc).__name__})"])
                continue
            med = c.median(times)
            rows.append(
                [
                    label,
                    size,
                    c.fmt(med, 2),
                    c.fmt(c.percentile(times, 99), 2),
                    c.ratio(med, floors[size]),
                    c.ratio(med, base),
                ]
            )
    return rows, base


def count(server: Any, prefix: str, since: float) -> int:
    return sum(1 for r in server.requests if r.time >= since and r.path.startswith(prefix))


def poll_line_bytes(count: int) -> int:
    """Length of the request line of one long poll for ``count`` namespaces (as we send it)."""
    from aioapollo._protocol import notifications_target

    target = notifications_target(
        c.APP, "default", [(n, -1) for n in names(count)], data_center=None, ip=None
    )
    return len(f"GET {target} HTTP/1.1")


async def wide_rows(tmp: Path) -> list[list[Any]]:
    """100 and 200 namespaces in one client: start time and the requests it made."""
    rows: list[list[Any]] = []
    for label, module, starter in CLIENTS:
        if not c.peer_available(module) or "constructor" in label or "cache_dir" in label:
            continue
        for size in WIDE:
            with c.ServerThread(hold_seconds=60) as server:  # fresh: no polls left by others
                for name in names(size):
                    server.publish(c.APP, name, c.payload(20))
                rows.append(await wide_row(server, label, starter, size, tmp))
    return rows


async def wide_row(server: Any, label: str, starter: Starter, size: int, tmp: Path) -> list[Any]:
    """One client with ``size`` namespaces against a fresh server."""
    since = time.time()
    t0 = time.perf_counter()
    try:
        close = await starter(server.url, names(size), tmp)
    except Exception as exc:  # reported, not fatal
        return [label, size, f"could not start ({type(exc).__name__})", "", "", ""]
    elapsed = (time.perf_counter() - t0) * 1000
    # Settle: let the polls the client sends on its own arrive (bounded).
    await asyncio.to_thread(c.wait_until, lambda: server.held_polls >= 1, 3.0)
    await asyncio.sleep(1.0)
    configs = count(server, "/configs/", since)
    polls = count(server, "/notifications/v2", since)
    held = server.held_polls
    await close()
    return [label, size, c.fmt(elapsed, 1), configs, polls, held]


async def measure(args: Any, tmp: Path) -> list[dict[str, Any]]:
    reps = 3 if args.quick else 15
    with c.ServerThread(hold_seconds=60) as server:
        for name in names(max(SIZES)):
            server.publish(c.APP, name, c.payload(20))
        rows, base = await startup_rows(server.url, reps, tmp)
    wide = await wide_rows(tmp)
    return [
        {
            "section": "startup",
            "title": "Start-up: start to every namespace loaded (ms)",
            "columns": [
                "client",
                "namespaces",
                "median ms",
                "p99 ms",
                "/ N concurrent GETs",
                "/ one round trip",
            ],
            "rows": rows,
            "notes": [
                f"{reps} starts per row. Baselines: a new aiohttp session, N concurrent "
                f"GET /configs and json.loads of each (the floor for loading N namespaces "
                f"concurrently; the server shares this process); one round trip = N=1, "
                f"{base:.2f} ms in this run.",
                "aioapollo's `start()` awaits each namespace's disk-cache write (temp file, "
                "fsync, rename) before it returns; the `cache_dir=None` rows show start-up "
                "without it.",
                "Peers that load namespaces one at a time (papollo `Apollo`, "
                "apollo-client-python, apollocfg) grow with N; apollo-client-python's "
                "constructor also probes 8.8.8.8 for its IP and writes a cache file per "
                "namespace.",
            ],
        },
        {
            "section": "wide",
            "title": "100 and 200 namespaces in one client (requests in the server log)",
            "columns": [
                "client",
                "namespaces",
                "start ms",
                "/configs requests",
                "/notifications/v2 requests",
                "long polls it holds",
            ],
            "rows": wide,
            "notes": [
                "Requests counted from start to 1 s after the first long poll was held "
                "(3 s at most). One held poll covering every namespace is the goal; papollo "
                "aborts and re-sends its poll each time a namespace is first read.",
                "Every client fetches each namespace twice while starting: its first poll "
                "carries notificationId -1, the server answers at once with the current ids, "
                "and the client re-checks each namespace (304s). The Java client does the same.",
                "The request line of one long poll is "
                + ", ".join(f"{poll_line_bytes(n):,} bytes for {n} namespaces" for n in WIDE)
                + " (names `ns001`...). The test server (aiohttp) rejects request lines over "
                "8,190 bytes with a 400 before logging them, so a client whose poll is too "
                "long shows 0 polls and 0 held: it never gets a long poll through. aioapollo "
                "splits its poll into groups of at most 6 KiB.",
            ],
        },
    ]


def main() -> None:
    c.run_section(__doc__ or "", measure)


if __name__ == "__main__":
    main()
