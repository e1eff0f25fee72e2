"""Idle cost: requests per minute and CPU seconds per hour of a client nobody publishes to.

Each client runs alone in a forked worker against its own test server (real 60 s hold), all
at the same time, for one measured window after a settle period. Requests are counted in each
server's log; CPU is the worker's utime + stime from ``/proc/<pid>/stat`` (all its threads)
at the window's start and end. Both are extrapolated linearly from the window.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _common as c
from _workers import ADAPTERS, TIMER_PEER, Pool

SETTLE = 3.0  # seconds after ready before the window opens
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=float, help="measured seconds (default 65, quick 8)")


def main() -> None:
    args = c.cli(__doc__ or "", extra=_options)
    window = args.window or (8.0 if args.quick else 65.0)
    c.quiet_peer_logging()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with threads (3.12+)
    adapters = [a for a in [*ADAPTERS, TIMER_PEER] if "cache_dir" not in a.name]
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        c.private_home(tmp)
        running: list[tuple[str, Any, Pool]] = []
        for adapter in adapters:
            if adapter.available:
                rows.append([adapter.name, "—", "—", "—", adapter.available])
                continue
            server = stack.enter_context(c.ServerThread(hold_seconds=60))
            server.publish(c.APP, c.NS, c.payload(10))
            pool = Pool(adapter, server.url, tmp, 1, prebuilt=False)
            pool.fork()
            stack.callback(pool.close)
            ready, errors = pool.wait_ready(30)
            if not ready:
                rows.append([adapter.name, "—", "—", "—", "; ".join(errors[:1]) or "not ready"])
                continue
            running.append((adapter.name, server, pool))
        time.sleep(SETTLE)
        start = time.time()
        cpu0 = {name: cpu_seconds(pool.pids[0]) for name, _, pool in running}
        time.sleep(window)
        end = time.time()
        for name, server, pool in running:
            cpu = cpu_seconds(pool.pids[0]) - cpu0[name]
            requests = [r for r in server.requests if start <= r.time < end]
            polls = sum(1 for r in requests if r.path.startswith("/notifications/v2"))
            rows.append(
                [
                    name,
                    f"{len(requests) / (end - start) * 60:.2f}",
                    f"{polls} / {len(requests) - polls}",
                    f"{cpu / (end - start) * 3600:.2f}"
                    if cpu > 0
                    else f"< {1 / TICKS / (end - start) * 3600:.2f} (no tick)",
                    "",
                ]
            )
    c.emit(
        args,
        [
            {
                "section": "idle",
                "title": "Idle cost of one client (one namespace, 60 s server hold)",
                "columns": [
                    "client",
                    "requests / min",
                    "polls / other requests in window",
                    "CPU s / hour",
                    "note",
                ],
                "rows": rows,
                "notes": [
                    f"Window {end - start:.0f} s after a {SETTLE:.0f} s settle; figures "
                    "extrapolated linearly. CPU from /proc (10 ms ticks).",
                    "Not in a window this short: aioapollo's safety refresh (every 300 s: "
                    "one /configs per namespace, +0.2 requests/min), apollocfg's (300 s), "
                    "apollo-client-python's scheduled refetch (600 s).",
                ],
            }
        ],
    )


if __name__ == "__main__":
    main()
