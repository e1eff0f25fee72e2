"""Propagation: publish -> change listener fired in every forked worker (slowest worker per round).

The test server runs in a thread of this (parent) process with the real 60 s hold. Workers
are real ``os.fork()`` children. Two modes:

* ``built before fork``: the client is built in the parent, as an app does at import time
  under ``gunicorn --preload`` or uWSGI without lazy-apps (peers that start work on
  construction or first read do so in the parent too), and started in each worker.
* ``built in worker``: each worker builds and starts its own client (the easy case).

Each round waits until every worker's long poll is held, stamps ``t0 = time.monotonic()``,
publishes, and waits (bounded) until every worker's listener has reported that round. The
round's figure is the slowest worker's ``t - t0``. A round that does not reach every worker
within the bound is counted as missed, not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _common as c
from _workers import ADAPTERS, Adapter, Pool

MODES = ("built before fork", "built in worker")
ROUND_TIMEOUT = 3.0  # seconds for a publish to reach every worker
HELD_TIMEOUT = 5.0  # seconds for every worker to hold its long poll again
QUIET = 0.1  # seconds of quiet after every poll is held, before the next publish
MIN_ROUNDS = 15  # rounds taken even past the time budget
HARD_CAP = 32.0  # seconds per row, whatever MIN_ROUNDS says


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", help="measure only this client (repeatable)")
    parser.add_argument("--mode", choices=MODES, help="measure only this mode")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, help="rounds per row (default 100, quick 12)")


def run_config(
    adapter: Adapter, mode: str, workers: int, rounds: int, budget: float, tmp: Path
) -> dict[str, Any]:
    """One client, one mode, one worker count: a fresh server and fresh workers."""
    app_values = dict(c.payload(10))
    result: dict[str, Any] = {"latencies": [], "missed": 0, "note": "", "cpu": None}
    with c.ServerThread(hold_seconds=60) as server:
        server.publish(c.APP, c.NS, app_values)
        pool = Pool(adapter, server.url, tmp, workers, prebuilt=mode == MODES[0])
        try:
            if pool.client is not None:  # a peer polling in the parent holds one poll too
                c.wait_until(lambda: server.held_polls >= 1, 1.0)
            base = server.held_polls
            pool.fork()
            ready, errors = pool.wait_ready(60)
            if errors or ready < workers:
                result["note"] = f"{ready}/{workers} workers ready; {'; '.join(errors[:2])}"
                return result
            started = time.monotonic()
            for round_no in range(1, rounds + 1):
                held = c.wait_until(lambda: server.held_polls >= base + workers, HELD_TIMEOUT)
                # Real publishes are minutes apart: let the last round's tail (cache writes,
                # listener threads) finish so rounds do not queue behind each other.
                time.sleep(QUIET)
                t0 = time.monotonic()
                server.publish(c.APP, c.NS, {**app_values, "round": str(round_no)})
                seen: dict[str, float] = {}
                deadline = t0 + ROUND_TIMEOUT
                while len(seen) < workers and time.monotonic() < deadline:
                    for parts in pool.lines(deadline):
                        if parts[0] == "ev" and parts[2] == str(round_no):
                            seen.setdefault(parts[1], float(parts[3]))
                if len(seen) == workers:
                    result["latencies"].append((max(seen.values()) - t0) * 1000)
                else:
                    result["missed"] += 1
                    if not seen and not held:
                        result["note"] = (
                            f"never updates: no worker's listener fired within "
                            f"{ROUND_TIMEOUT:.0f} s of a publish (no long poll held in workers)"
                        )
                        break
                    if not seen and round_no >= 2 and not result["latencies"]:
                        result["note"] = (
                            f"never updates: no worker's listener fired within "
                            f"{ROUND_TIMEOUT:.0f} s of a publish"
                        )
                        break
                elapsed = time.monotonic() - started
                if (elapsed > budget and round_no >= MIN_ROUNDS) or elapsed > HARD_CAP:
                    break
        finally:
            cpu = pool.close()
        published = len(result["latencies"]) + result["missed"]
        if cpu and published:
            result["cpu"] = sum(cpu) / len(cpu) / published * 1000
    return result


def main() -> None:
    args = c.cli(__doc__ or "", extra=_options)
    parser_workers = tuple(args.workers)
    rounds = args.rounds or (12 if args.quick else 100)
    budget = 4.0 if args.quick else 7.0
    c.quiet_peer_logging()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with threads (3.12+)
    rows: list[list[Any]] = []
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        c.private_home(tmp)
        for adapter in ADAPTERS:
            if args.only and adapter.name not in args.only:
                continue
            if adapter.available:
                rows.append([adapter.name, "both", *["—"] * 6, adapter.available])
                continue
            for mode in MODES:
                if args.mode and mode != args.mode:
                    continue
                for workers in parser_workers:
                    if adapter.only_workers and workers not in adapter.only_workers:
                        continue
                    begun = time.monotonic()
                    res = run_config(adapter, mode, workers, rounds, budget, tmp)
                    results[(adapter.name, mode, workers)] = res
                    print(
                        f"  {adapter.name:<22} {mode:<18} {workers:>2} workers: "
                        f"{len(res['latencies'])} rounds, {res['missed']} missed, "
                        f"{time.monotonic() - begun:.1f} s {res['note']}",
                        flush=True,
                    )
    ours = {a.name for a in ADAPTERS if a.name.startswith("aioapollo")}
    best_peer: dict[int, float] = {}
    for (name, mode, workers), res in results.items():
        if name not in ours and mode == MODES[1] and res["latencies"] and not res["missed"]:
            p99 = c.percentile(res["latencies"], 99)
            best_peer[workers] = min(best_peer.get(workers, p99), p99)
    for (name, mode, workers), res in results.items():
        lat = res["latencies"]
        total = len(lat) + res["missed"]
        p99 = c.percentile(lat, 99) if lat else None
        rows.append(
            [
                name,
                mode,
                workers,
                f"{len(lat)}/{total}",
                c.fmt(c.median(lat) if lat else None),
                c.fmt(p99),
                c.ratio(p99, best_peer.get(workers)),
                c.fmt(res["cpu"], 2),
                res["note"],
            ]
        )
    notes = [
        "Slowest worker per round; p50/p99 over the rounds that reached every worker "
        "(`rounds` = rounds reaching all workers / rounds published). Ratio: this p99 over "
        "the best peer's p99 in its easiest mode (built in worker) at the same worker count.",
        "Worker CPU ms/update: CPU time (all threads) of one worker from ready to stop, "
        "divided by the rounds published: what each update costs a worker.",
        f"Up to {rounds} rounds per row, or {budget:.0f} s once {MIN_ROUNDS} rounds are in "
        f"({HARD_CAP:.0f} s at most); a round "
        f"waits {ROUND_TIMEOUT:.0f} s at most for every worker. Each publish comes "
        f"{QUIET * 1000:.0f} ms after every worker's poll is held again.",
    ]
    target = results.get(("aioapollo", MODES[0], 16))
    if target and target["latencies"] and 16 in best_peer:
        p99 = c.percentile(target["latencies"], 99)
        verdict = "met" if p99 <= best_peer[16] and not target["missed"] else "**missed**"
        notes.append(
            f"Target (aioapollo built before fork, 16 workers, p99 ≤ best peer built in worker, "
            f"every round reaching all 16): {p99:.1f} ms vs {best_peer[16]:.1f} ms, "
            f"{target['missed']} rounds missed: {verdict}."
        )
    c.emit(
        args,
        [
            {
                "section": "propagation",
                "title": "Propagation: publish -> listener fired in the slowest worker (ms)",
                "columns": [
                    "client",
                    "mode",
                    "workers",
                    "rounds",
                    "p50 ms",
                    "p99 ms",
                    "p99 / best peer",
                    "worker CPU ms/update",
                    "note",
                ],
                "rows": rows,
                "notes": notes,
            }
        ],
    )


if __name__ == "__main__":
    main()
