"""How much a SyncApolloClient.get costs next to the cheapest possible dict read.

    python bench/sync_get.py

Starts the Apollo test server on a background loop, starts a SyncApolloClient against it (its
poller thread runs, so get() takes the hot path), and times one read of an existing key with
timeit, best of several repeats, against a minimal ``self._d[ns].get(k, default)`` method and,
for scale, the same method plus an ``os.getpid()`` check.
"""

from __future__ import annotations

import os
import timeit
from typing import Any

import _common as c

from aioapollo import SyncApolloClient

NUMBER = 300_000
REPEAT = 25


class Minimal:
    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        self._d = values

    def get(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        return self._d[namespace].get(key, default)


class WithPid(Minimal):
    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        super().__init__(values)
        self._pid = os.getpid()

    def get(self, key: str, default: Any = None, namespace: str = "application") -> Any:
        if self._pid == os.getpid():
            return self._d[namespace].get(key, default)
        return default


def measure(candidates: dict[str, str], env: dict[str, Any]) -> dict[str, float]:
    """ns per call, best of REPEAT rounds, the candidates taking turns."""
    timers = {name: timeit.Timer(stmt, globals=env) for name, stmt in candidates.items()}
    return c.best_ns(timers, NUMBER, REPEAT)


def main() -> None:
    with c.ServerThread() as server:
        server.publish("bench", "application", {"greeting": "hello", "timeout": "30"})
        with SyncApolloClient("bench", config_server=server.url, cache_dir=None) as cfg:
            assert cfg.polling
            values = {"application": {"greeting": "hello", "timeout": "30"}}
            env = {"minimal": Minimal(values), "with_pid": WithPid(values), "cfg": cfg}
            results = measure(
                {
                    "minimal self._d[ns].get(k, default)": "minimal.get('greeting')",
                    "minimal + os.getpid() check": "with_pid.get('greeting')",
                    "SyncApolloClient.get": "cfg.get('greeting')",
                    "SyncApolloClient.get (missing, default)": "cfg.get('nope', 'd')",
                },
                env,
            )
    base = results["minimal self._d[ns].get(k, default)"]
    for name, ns in results.items():
        print(f"{name:40s} {ns:6.1f} ns   {ns / base:4.2f}x")


if __name__ == "__main__":
    main()
