"""Read cost: what one config read costs on the request path, ours against baselines and peers.

Every getter runs ``calls`` times in a plain ``for`` loop, timed with ``perf_counter_ns``;
the loop's own cost (an empty loop of the same length, median over the run) is subtracted,
so figures are the net cost of one call. Variants are interleaved batch by batch, so a burst
of load from other processes hits all of them alike; a ratio is the median over batches of
(variant / its baseline in the same batch).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common as c

import aioapollo

KEY = "timeout"
INT_KEY = "timeout"


class Minimal:
    """The floor for a getter: the smallest method that does what ours does."""

    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        self._d = values

    def get(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        return self._d[namespace].get(key, default)

    async def aget(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        return self._d[namespace].get(key, default)

    async def aget_int(
        self, key: str, default: int | None = None, namespace: str = "application"
    ) -> int | None:
        raw = self._d[namespace].get(key)
        return default if raw is None else int(raw.strip())


SyncLoop = Callable[[range], int]
AsyncLoop = Callable[[range], Awaitable[int]]
Loop = SyncLoop | AsyncLoop


def sync_loop(fn: Callable[[str], Any], key: str = KEY) -> SyncLoop:
    def loop(r: range) -> int:
        t0 = time.perf_counter_ns()
        for _ in r:
            fn(key)
        return time.perf_counter_ns() - t0

    return loop


def async_loop(fn: Callable[[str], Awaitable[Any]], key: str = KEY) -> AsyncLoop:
    async def loop(r: range) -> int:
        t0 = time.perf_counter_ns()
        for _ in r:
            await fn(key)
        return time.perf_counter_ns() - t0

    return loop


def empty_loop(r: range) -> int:
    t0 = time.perf_counter_ns()
    for _ in r:
        pass
    return time.perf_counter_ns() - t0


async def _papollo(url: str, tmp: Path) -> tuple[dict[str, Loop], list[Any]]:
    import papollo

    sync_client = papollo.Apollo(url, c.APP, watch=True)
    sync_client.namespace(c.NS)
    async_client = papollo.AsyncApollo(url, c.APP, watch=True)
    await async_client.namespace(c.NS)
    return {
        "papollo `Apollo.get`": sync_loop(sync_client.get),
        "papollo `await AsyncApollo.get`": async_loop(async_client.get),
    }, [sync_client.close, async_client.aclose]


async def _acp(url: str, tmp: Path) -> tuple[dict[str, Loop], list[Any]]:
    from apollo.apollo_client import ApolloClient as AcpClient

    acp = AcpClient(url, c.APP, [c.NS], enable_dotenv=False, auto_update_enabled=False)
    return {"apollo-client-python `get_value`": sync_loop(acp.get_value)}, []


async def _apollocfg(url: str, tmp: Path) -> tuple[dict[str, Loop], list[Any]]:
    import apollocfg

    cfg = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=[c.NS])
    cfg.start()
    return {"apollocfg `get_value`": sync_loop(cfg.get_value)}, [lambda: cfg.stop(timeout=0.05)]


async def _acc(url: str, tmp: Path) -> tuple[dict[str, Loop], list[Any]]:
    import apollo_config

    acc = apollo_config.ApolloClient(c.APP, url, namespaces=[c.NS], cache_dir=str(tmp / "acc"))
    acc.start()
    return {"apollo-config-client `get_value`": sync_loop(acc.get_value)}, []


async def _zen(url: str, tmp: Path) -> tuple[dict[str, Loop], list[Any]]:
    from pyapollo.client import ApolloClient as ZenClient

    host, port = url.rsplit(":", 1)
    zen = ZenClient(
        app_id=c.APP,
        config_server_host=host,
        config_server_port=int(port),
        cache_file_dir_path=str(tmp / "zen"),
    )
    return {"pyapollo-zenkilan `get_value`": sync_loop(zen.get_value)}, [zen.stop_polling_thread]


PEER_BUILDERS = [
    ("papollo", "papollo", _papollo),
    ("apollo-client-python", "apollo.apollo_client", _acp),
    ("apollocfg", "apollocfg", _apollocfg),
    ("apollo-config-client", "apollo_config", _acc),
    ("pyapollo-zenkilan", "pyapollo.client", _zen),
]


async def build_peers(
    url: str, tmp: Path
) -> tuple[dict[str, Loop], list[Any], list[dict[str, str]]]:
    """Each installed peer's getter, loaded against the test server; rows for the others."""
    loops: dict[str, Loop] = {}
    closers: list[Any] = []
    missing: list[dict[str, str]] = []
    for name, module, build in PEER_BUILDERS:
        if not c.peer_available(module):
            missing.append({"name": name, "why": "not installed"})
            continue
        try:
            more, close = await build(url, tmp)
        except Exception as exc:  # a peer that cannot start here is reported, not fatal
            missing.append({"name": name, "why": f"could not start ({type(exc).__name__})"})
            continue
        loops.update(more)
        closers += close
    return loops, closers, missing


def build_sync_client(url: str) -> Any:
    """``aioapollo.SyncApolloClient`` started against the server."""
    client = aioapollo.SyncApolloClient(c.APP, config_server=url, cache_dir=None)
    client.start()
    client.get(KEY)
    return client


BASELINES = {
    "plain": "minimal plain method (baseline)",
    "async": "minimal `async def` method (baseline)",
    "typed": "minimal typed `async def` (baseline)",
}


async def measure(args: Any, url: str, tmp: Path) -> dict[str, Any]:
    client = aioapollo.ApolloClient(c.APP, config_server=url, cache_dir=None)
    await client.start()
    minimal = Minimal({c.NS: dict(client.snapshot(c.NS).items)})
    sync_client = build_sync_client(url)
    plain: dict[str, Loop] = {
        "bare `dict.get`": sync_loop(minimal._d[c.NS].get),
        BASELINES["plain"]: sync_loop(minimal.get),
        BASELINES["async"]: async_loop(minimal.aget),
        BASELINES["typed"]: async_loop(minimal.aget_int, INT_KEY),
        "aioapollo `get_nowait`": sync_loop(client.get_nowait),
        "aioapollo `await get`": async_loop(client.get),
        "aioapollo `await get_int`": async_loop(client.get_int, INT_KEY),
        "aioapollo `snapshot().get_int`": sync_loop(
            lambda k: client.snapshot().get_int(k), INT_KEY
        ),
        "aioapollo `SyncApolloClient.get`": sync_loop(sync_client.get),
    }
    peers, closers, missing = await build_peers(url, tmp)
    variants = {**plain, **peers}

    calls = 2_000 if args.quick else 5_000
    batches = 60 if args.quick else 300
    r = range(calls)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    empties: list[float] = []
    names = list(variants)
    gc.collect()
    gc.disable()
    try:
        for batch in range(batches):
            empties.append(empty_loop(r))
            for name in c.rotate(names, batch):  # who goes first takes turns
                loop = variants[name]
                result = loop(r)
                if isinstance(result, int):
                    samples[name].append(result)
                else:
                    samples[name].append(await result)
    finally:
        gc.enable()
    empty = c.median(empties)
    net = {name: [max(t - empty, 0.0) / calls for t in ts] for name, ts in samples.items()}

    def baseline(name: str) -> str | None:
        if name in (BASELINES["plain"], BASELINES["async"]):
            return None
        if name == BASELINES["typed"]:
            return BASELINES["async"]
        if "get_int" in name:
            return BASELINES["typed"]
        if "await" in name or "async" in name:
            return BASELINES["async"]
        return BASELINES["plain"]

    targets = {
        "aioapollo `get_nowait`": 1.3,
        "aioapollo `await get`": 1.3,
        "aioapollo `SyncApolloClient.get`": 1.3,
    }
    profile = await profile_get_int(client)
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    sync_client.close()
    await client.aclose()
    return {
        "params": {"batches": batches, "calls": calls, "loop_ns": round(empty / calls, 2)},
        "variants": [
            {
                "name": name,
                "baseline": baseline(name),
                "target": targets.get(name),
                "net_ns": c.rounded(net[name], 2),
            }
            for name in variants
        ],
        "missing": missing,
        "profile": profile,
    }


async def profile_get_int(client: aioapollo.ApolloClient) -> dict[str, Any]:
    """Where the time of ``await get_int`` goes (the read with the most layers)."""

    async def many() -> None:
        for _ in range(20_000):
            await client.get_int(INT_KEY)

    prof = cProfile.Profile()
    prof.enable()
    await many()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    entries = stats.stats.items()  # type: ignore[attr-defined]
    total = sum(st[2] for _, st in entries) or 1.0
    rows = sorted(
        ((f"{Path(fn[0]).stem}.{fn[2]}", st[2]) for fn, st in entries if "/aioapollo/" in fn[0]),
        key=lambda x: -x[1],
    )
    return {
        "calls": 20_000,
        "own_time_shares": [[name, round(own / total, 3)] for name, own in rows[:5]],
    }


def main() -> None:
    args = c.cli(__doc__ or "")
    c.quiet_peer_logging()
    with tempfile.TemporaryDirectory() as tmp:
        c.private_home(Path(tmp))
        with c.ServerThread(hold_seconds=60) as server:
            server.publish(c.APP, c.NS, {**c.payload(50), KEY: "30"})
            data = asyncio.run(measure(args, server.url, Path(tmp)))
    c.emit(args, "read_cost", data)


if __name__ == "__main__":
    main()
