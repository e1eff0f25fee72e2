"""Idle cost: requests per minute and CPU seconds per hour of a client nobody publishes to.

Each client runs alone in a forked worker against its own test server (real 60 s hold), all
at the same time, for one measured window after a settle period. Requests are counted in each
server's log; CPU is the worker's CPU time (all its threads, ``/proc``) at the window's start
and end. Both are extrapolated linearly from the window.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _common as c
from _workers import ADAPTERS, TIMER_PEER, Pool

SETTLE = 3.0  # seconds after ready before the window opens


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", type=float, help="measured seconds (default 65, quick 8)")


def main() -> None:
    args = c.cli(__doc__ or "", extra=_options)
    window = args.window or (8.0 if args.quick else 65.0)
    c.quiet_peer_logging()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with threads (3.12+)
    adapters = [a for a in [*ADAPTERS, TIMER_PEER] if "," not in a.name]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        c.private_home(tmp)
        running: list[tuple[str, Any, Pool]] = []
        for adapter in adapters:
            if adapter.available:
                rows.append({"label": adapter.name, "note": adapter.available})
                continue
            server = stack.enter_context(c.ServerThread(hold_seconds=60))
            server.publish(c.APP, c.NS, c.payload(10))
            pool = Pool(adapter, server.url, tmp / f"idle-{len(running)}", 1, prebuilt=False)
            stack.callback(pool.close)
            pool.fork()
            ready, errors = pool.wait_ready(30)
            if not ready:
                rows.append({"label": adapter.name, "note": "; ".join(errors[:1]) or "not ready"})
                continue
            running.append((adapter.name, server, pool))
        time.sleep(SETTLE)
        start = time.time()
        cpu0 = {name: c.process_cpu(pool.pids[0]) for name, _, pool in running}
        time.sleep(window)
        end = time.time()
        for name, server, pool in running:
            cpu = c.process_cpu(pool.pids[0]) - cpu0[name]
            requests = [r for r in server.requests if start <= r.time < end]
            polls = sum(1 for r in requests if r.path.startswith("/notifications/v2"))
            rows.append(
                {
                    "label": name,
                    "requests": len(requests),
                    "polls": polls,
                    "cpu_s": round(cpu, 6),
                    "window_s": round(end - start, 3),
                    "note": "",
                }
            )
    c.emit(args, "idle", {"params": {"window_s": window, "settle_s": SETTLE}, "rows": rows})


if __name__ == "__main__":
    main()
