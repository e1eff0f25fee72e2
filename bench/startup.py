"""Start-up: time from start to every namespace loaded (1, 10, 50), and 100 / 200 namespaces.

Baselines from the same run: a new aiohttp session making N concurrent ``GET /configs/...``
calls with ``json.loads`` of each body (the floor for loading N namespaces concurrently), and
N=1 as one round trip. The floor and the clients take turns repetition by repetition (who goes
first rotates), and every start gets a fresh, empty cache directory and ``HOME``, so no start
finds what an earlier one wrote. "100 / 200 namespaces" counts the requests the test server
logged: one client should hold as few long polls as its request lines allow, not 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common as c
import aiohttp

import aioapollo

SIZES = (1, 10, 50)
WIDE = (100, 200)
WIDE_WAIT = 3.0  # seconds for the first long poll to be held
WIDE_SETTLE = 1.0  # seconds more, for the polls the client sends on its own


def names(count: int) -> list[str]:
    return [c.NS] + [f"ns{i:03d}" for i in range(1, count)]


Starter = Callable[[str, list[str], Path], Awaitable[Callable[[], Awaitable[None]]]]


async def start_aioapollo(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    client = aioapollo.ApolloClient(c.APP, namespaces=ns, config_server=url, cache_dir=tmp / "aio")
    await client.start()
    return client.aclose


async def start_aioapollo_nocache(
    url: str, ns: list[str], tmp: Path
) -> Callable[[], Awaitable[None]]:
    client = aioapollo.ApolloClient(c.APP, namespaces=ns, config_server=url, cache_dir=None)
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
        ApolloClient._instances.clear()  # its per-arguments singleton would be reused

    return close


async def start_apollocfg(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    import apollocfg

    client = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=ns)
    client.start()

    async def close() -> None:
        client.stop(timeout=0.05)

    return close


async def start_floor(url: str, ns: list[str], tmp: Path) -> Callable[[], Awaitable[None]]:
    """The floor: a new aiohttp session, N concurrent GET /configs, json.loads of each."""

    async def one(session: aiohttp.ClientSession, name: str) -> None:
        async with session.get(f"{url}/configs/{c.APP}/default/{name}") as response:
            json.loads(await response.read())

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, name) for name in ns))

    async def close() -> None:
        pass

    return close


FLOOR = "N concurrent GETs (baseline)"
CLIENTS: list[tuple[str, str, Starter]] = [
    (FLOOR, "aiohttp", start_floor),
    ("aioapollo `await start()`", "aioapollo", start_aioapollo),
    ("aioapollo `await start()`, cache_dir=None", "aioapollo", start_aioapollo_nocache),
    ("papollo `Apollo` (first read of each)", "papollo", start_papollo),
    ("papollo `AsyncApollo` (gathered reads)", "papollo", start_papollo_async),
    ("apollo-client-python (constructor)", "apollo.apollo_client", start_acp),
    ("apollocfg `start()`", "apollocfg", start_apollocfg),
]


async def timed_start(starter: Starter, url: str, ns: list[str], fresh: Path) -> float:
    """One start in a fresh directory (also ``HOME``: peers cache under ``~``), in ms."""
    os.makedirs(fresh)
    home = os.environ["HOME"]
    os.environ["HOME"] = str(fresh)
    try:
        t0 = time.perf_counter()
        close = await starter(url, ns, fresh)
        elapsed = (time.perf_counter() - t0) * 1000
        await close()
    finally:
        os.environ["HOME"] = home
    return elapsed


async def startup_rows(url: str, reps: int, tmp: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    usable = [(label, starter) for label, module, starter in CLIENTS if c.peer_available(module)]
    missing = [
        {"label": label, "why": "not installed"}
        for label, module, _ in CLIENTS
        if not c.peer_available(module)
    ]
    times: dict[tuple[str, int], list[float]] = {
        (label, n): [] for label, _ in usable for n in SIZES
    }
    failed: dict[tuple[str, int], str] = {}
    serial = 0
    for rep in range(reps):
        for size in SIZES:
            for label, starter in c.rotate(usable, rep):  # who goes first takes turns
                if (label, size) in failed:
                    continue
                serial += 1
                try:
                    elapsed = await timed_start(starter, url, names(size), tmp / f"s{serial}")
                except Exception as exc:  # a peer that cannot start here is reported
                    failed[(label, size)] = f"could not start ({type(exc).__name__})"
                    continue
                times[(label, size)].append(elapsed)
    rows = [
        {
            "label": label,
            "size": size,
            "floor": label == FLOOR,
            "ms": c.rounded(times[(label, size)]),
            "note": failed.get((label, size), ""),
        }
        for label, _ in usable
        for size in SIZES
    ]
    return rows, missing


def count(server: Any, prefix: str, since: float) -> int:
    return sum(1 for r in server.requests if r.time >= since and r.path.startswith(prefix))


def poll_line_bytes(count: int) -> int:
    """Length of the request line of one long poll for ``count`` namespaces (as we send it)."""
    from aioapollo._apollo.protocol import notifications_target

    target = notifications_target(
        c.APP, "default", [(n, -1) for n in names(count)], data_center=None, ip=None
    )
    return len(f"GET {target} HTTP/1.1")


async def wide_rows(tmp: Path) -> list[dict[str, Any]]:
    """100 and 200 namespaces in one client: start time and the requests it made."""
    rows: list[dict[str, Any]] = []
    for label, module, starter in CLIENTS:
        skip = ("constructor" in label, "cache_dir" in label, label == FLOOR)
        if not c.peer_available(module) or any(skip):
            continue
        for size in WIDE:
            with c.ServerThread(hold_seconds=60) as server:  # fresh: no polls left by others
                for name in names(size):
                    server.publish(c.APP, name, c.payload(20))
                fresh = tmp / f"wide-{len(rows)}"
                os.makedirs(fresh)
                rows.append(await wide_row(server, label, starter, size, fresh))
    return rows


async def wide_row(
    server: Any, label: str, starter: Starter, size: int, tmp: Path
) -> dict[str, Any]:
    """One client with ``size`` namespaces against a fresh server."""
    since = time.time()
    t0 = time.perf_counter()
    try:
        close = await starter(server.url, names(size), tmp)
    except Exception as exc:  # reported, not fatal
        row: dict[str, Any] = {"label": label, "size": size}
        return {**row, "note": f"could not start ({type(exc).__name__})"}
    elapsed = (time.perf_counter() - t0) * 1000
    # Settle: let the polls the client sends on its own arrive (bounded).
    await asyncio.to_thread(c.wait_until, lambda: server.held_polls >= 1, WIDE_WAIT)
    await asyncio.sleep(WIDE_SETTLE)
    configs = count(server, "/configs/", since)
    polls = count(server, "/notifications/v2", since)
    held = server.held_polls
    await close()
    return {
        "label": label,
        "size": size,
        "start_ms": round(elapsed, 2),
        "configs": configs,
        "polls": polls,
        "held": held,
        "note": "",
    }


async def measure(args: Any, tmp: Path) -> dict[str, Any]:
    reps = 3 if args.quick else 20
    with c.ServerThread(hold_seconds=60) as server:
        for name in names(max(SIZES)):
            server.publish(c.APP, name, c.payload(20))
        rows, missing = await startup_rows(server.url, reps, tmp)
    wide = await wide_rows(tmp)
    return {
        "params": {
            "reps": reps,
            "sizes": list(SIZES),
            "wide": list(WIDE),
            "wide_wait_s": WIDE_WAIT,
            "wide_settle_s": WIDE_SETTLE,
        },
        "rows": rows,
        "missing": missing,
        "wide": wide,
        "poll_line_bytes": {str(n): poll_line_bytes(n) for n in WIDE},
    }


def main() -> None:
    c.run_section("startup", __doc__ or "", measure)


if __name__ == "__main__":
    main()
