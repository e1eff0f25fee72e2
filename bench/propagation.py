"""Propagation: publish -> change listener fired in every forked worker (slowest worker per round).

Every client gets a test server of its own, running in a thread of this (parent) process with
the real 60 s hold. Workers are real ``os.fork()`` children. Two modes:

* ``built before fork``: the client is built in the parent, as an app does at import time
  under ``gunicorn --preload`` or uWSGI without lazy-apps (peers that start work on
  construction or first read do so in the parent too), and started in each worker.
* ``built in worker``: each worker builds and starts its own client (the easy case).

All clients and modes of one worker count run side by side and take turns, round by round
(the first to go rotates), so a burst of load from elsewhere on the machine hits them alike.
A round waits until every poll of that client is held, stamps ``t0 = time.monotonic()``,
publishes, and waits (bounded) until every worker's listener has reported that round. The
round's figure is the slowest worker's ``t - t0``; a round that does not reach every worker
within the bound is counted as missed. Then it waits until every poll is held again, and a
short settle, before the next client's turn. Around each round it reads:

* the CPU time of the client's workers (all threads, ``/proc``): the host's cost of an update;
* the machine's busy CPU time minus that and this process's own: other load during the round;
* the server's request log: requests per publish (fetches and polls).

At the largest worker count, the ``share_poll=True`` pool built before fork is then used for
the failover measurement: its leader is killed (SIGKILL) repeatedly, and the time until a new
long poll is held at the test server is taken each time.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as c
from _workers import ADAPTERS, PEER_POLL_PAUSE, SHARED, Adapter, Pool, Zygote

from aioapollo.testing import ApolloTestServer

MODES = ("built before fork", "built in worker")
ROUND_TIMEOUT = 3.0  # seconds for a publish to reach every worker
HELD_TIMEOUT = 5.0  # seconds for every poll of a client to be held again
SETTLE = 0.03  # seconds after every poll is held again: the round's tail (cache writes)
FAILOVER_TIMEOUT = 10.0  # seconds for a new long poll to be held after a leader is killed
GC_EVERY = 10  # turns of every row between two garbage collections of the harness


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", help="measure only this client (repeatable)")
    parser.add_argument("--mode", choices=MODES, help="measure only this mode")
    parser.add_argument("--workers", type=int, nargs="+", help="default 1 4 16 (quick: 1 4)")
    parser.add_argument("--rounds", type=int, help="rounds per row (default 100, quick 5)")
    parser.add_argument("--kills", type=int, help="leader kills (default 20, quick 3)")


@dataclass
class Row:
    """One client, one mode, one worker count: a server, a pool and what its rounds saw."""

    adapter: Adapter
    mode: str
    workers: int
    context: c.ServerThread
    server: ApolloTestServer
    pool: Pool | None = None
    expected_held: int = 0
    note: str = ""
    done: bool = False
    seen_requests: int = 0
    warnings_at_start: int = 0
    warnings_at_end: int | None = None
    ms: list[float | None] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    cpu_max_ms: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    steal_ms: list[float] = field(default_factory=list)
    configs: list[int] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    other_cpus: list[float] = field(default_factory=list)
    gc_workers: list[int] = field(default_factory=list)
    gc_ms: list[float] = field(default_factory=list)
    harness_ms: list[float] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        warned = (
            self.pool.warnings[self.warnings_at_start : self.warnings_at_end] if self.pool else []
        )
        return {
            "client": self.adapter.name,
            "mode": self.mode,
            "workers": self.workers,
            "note": self.note,
            "ms": c.rounded(self.ms),
            "cpu_ms": c.rounded(self.cpu_ms),
            "cpu_max_ms": c.rounded(self.cpu_max_ms),
            "faults": self.faults,
            "steal_ms": c.rounded(self.steal_ms, 0),
            "configs": self.configs,
            "polls": self.polls,
            "held": self.held,
            "other_cpus": c.rounded(self.other_cpus, 2),
            "gc_workers": self.gc_workers,
            "gc_ms": c.rounded(self.gc_ms, 2),
            "harness_ms": c.rounded(self.harness_ms, 2),
            "warnings": len(warned),
            "first_warning": _scrub(warned[0][1]) if warned else "",
        }


def _scrub(text: str) -> str:
    """A warning for the results file: no ports, no paths of this machine."""
    text = re.sub(r"https?://[\w.\-\[\]:]+", "<server>", text)
    return re.sub(r"(/[\w.\-]+){2,}", "<path>", text)[:200]


VALUES = c.payload(10)


def open_row(adapter: Adapter, mode: str, workers: int, tmp: Path, zygote: Zygote) -> Row:
    """Start the row's server and fork its workers (built in the parent first if asked)."""
    context = c.ServerThread(hold_seconds=60)
    server = context.__enter__()
    server.publish(c.APP, c.NS, VALUES)
    row = Row(adapter, mode, workers, context, server)
    prebuilt = mode == MODES[0]
    pool = Pool(adapter, server.url, tmp, workers, prebuilt=prebuilt, zygote=zygote)
    row.pool = pool
    if prebuilt and adapter.polls_in_parent:  # the master's own poll
        c.wait_until(lambda: server.held_polls >= 1, HELD_TIMEOUT)
    base = server.held_polls
    row.expected_held = base + (1 if adapter.shared else workers)
    pool.fork()
    ready, errors = pool.wait_ready(60)
    if errors or ready < workers:
        row.note = f"{ready}/{workers} workers ready; {'; '.join(errors[:2])}"
        row.done = True
        return row
    if not c.wait_until(lambda: server.held_polls >= row.expected_held, HELD_TIMEOUT):
        row.expected_held = server.held_polls  # checked again by the first round
    row.seen_requests = len(server.requests)
    row.warnings_at_start = len(pool.warnings)
    return row


def run_round(row: Row, round_no: int) -> None:
    """Publish once to ``row``'s server; record the slowest worker, CPU and requests."""
    server, pool = row.server, row.pool
    assert pool is not None
    held = c.wait_until(lambda: server.held_polls >= row.expected_held, HELD_TIMEOUT)
    row.held.append(server.held_polls)
    pids = list(pool.pids)
    wanted = {str(pid) for pid in pids}
    cpu0 = {pid: c.process_cpu(pid) for pid in pids}
    faults0 = sum(c.minor_faults(pid) for pid in pids)
    own0 = c.process_cpu(os.getpid())
    busy0, steal0 = c.host_busy()
    t0 = time.monotonic()
    server.publish(c.APP, c.NS, {**VALUES, "round": str(round_no)})
    seen: dict[str, float] = {}
    deadline = t0 + ROUND_TIMEOUT
    while len(seen) < len(pids) and time.monotonic() < deadline:
        for parts in pool.lines(deadline):
            if parts[0] == "ev" and parts[2] == str(round_no) and parts[1] in wanted:
                seen.setdefault(parts[1], float(parts[3]))
    reached = len(seen) == len(pids)
    row.ms.append((max(seen.values()) - t0) * 1000 if reached else None)
    # The round's tail: every poll held again, then a settle (cache writes, listener threads).
    c.wait_until(lambda: server.held_polls >= row.expected_held, HELD_TIMEOUT if reached else 0)
    time.sleep(SETTLE)
    t1 = time.monotonic()
    per_worker = [c.process_cpu(pid) - cpu0[pid] for pid in pids]
    row.faults.append(sum(c.minor_faults(pid) for pid in pids) - faults0)
    cpu = sum(per_worker)
    own = c.process_cpu(os.getpid()) - own0
    busy1, steal1 = c.host_busy()
    busy, steal = busy1 - busy0, steal1 - steal0
    row.cpu_ms.append(cpu * 1000)
    row.cpu_max_ms.append(max(per_worker, default=0.0) * 1000)
    row.other_cpus.append(max(0.0, busy - steal - cpu - own) / (t1 - t0))
    row.steal_ms.append(steal * 1000)
    pool.drain()
    full = [(pid, ms) for pid, at, ms in pool.collections if t0 <= at <= t1 and pid in pids]
    row.gc_workers.append(len({pid for pid, _ in full}))
    row.gc_ms.append(sum(ms for _, ms in full))
    row.harness_ms.append(own * 1000)
    requests = server.requests
    fresh, row.seen_requests = requests[row.seen_requests :], len(requests)
    row.configs.append(sum(1 for r in fresh if r.path.startswith("/configs/")))
    row.polls.append(sum(1 for r in fresh if r.path.startswith("/notifications/v2")))
    if reached:
        return
    if not seen and not held:
        row.note = (
            f"never updates: no worker's listener fired within {ROUND_TIMEOUT:g} s of a "
            "publish (no long poll held in the workers)"
        )
        row.done = True
    elif not seen and len(row.ms) >= 2 and not any(ms is not None for ms in row.ms):
        row.note = f"never updates: no worker's listener fired within {ROUND_TIMEOUT:g} s"
        row.done = True


def close_row(row: Row) -> None:
    if row.pool is not None:
        row.pool.close()
    row.context.__exit__(None, None, None)


def _wait_new_poll_held(server: ApolloTestServer, since: int, timeout: float) -> float | None:
    """When the first long poll logged after index ``since`` that is still held arrived.

    A poll counts once it has been held (no answer) for 20 ms: a poll answered at once is not
    one that would hear the next publish.
    """
    found: list[float] = []

    def held() -> bool:
        now = time.time()
        for r in server.requests[since:]:
            if r.path.startswith("/notifications/v2") and r.status is None and now - r.time > 0.02:
                found.append(r.time)
                return True
        return False

    return found[0] if c.wait_until(held, timeout) else None


def failover(row: Row, kills: int) -> dict[str, Any]:
    """Kill the leader ``kills`` times; each time, how long until a new poll is held."""
    server, pool = row.server, row.pool
    assert pool is not None
    times: list[float | None] = []
    notes: list[str] = []

    def live_held() -> int:
        async def count() -> int:
            return server.hub.live_held

        return row.context.run(count())

    def one_leader() -> int | None:
        pool.drain()
        leaders = [pid for pid in pool.pids if pool.roles.get(pid) == "leader"]
        if len(leaders) == 1 and live_held() == 1:
            return leaders[0]
        return None

    for _ in range(kills):
        if not c.wait_until(lambda: one_leader() is not None, 10.0):
            notes.append("no single leader with one held poll within 10 s")
            break
        leader = one_leader()
        assert leader is not None
        since = len(server.requests)
        killed_at = time.time()
        pool.kill(leader)
        arrived = _wait_new_poll_held(server, since, FAILOVER_TIMEOUT)
        times.append(None if arrived is None else (arrived - killed_at) * 1000)
        pool.spawn()  # the server starts a worker in the dead one's place: it follows
        ready, errors = pool.wait_ready(30, count=1)
        if not ready:
            notes.append(f"a replacement worker did not start: {'; '.join(errors[:1])}")
            break
    # One more publish: does it reach every worker (survivors and replacements)?
    c.wait_until(lambda: one_leader() is not None, 10.0)
    wanted = {str(pid) for pid in pool.pids}
    server.publish(c.APP, c.NS, {**VALUES, "round": "after-failover"})
    seen: set[str] = set()
    deadline = time.monotonic() + ROUND_TIMEOUT
    while seen < wanted and time.monotonic() < deadline:
        for parts in pool.lines(deadline):
            if parts[0] == "ev" and parts[2] == "after-failover":
                seen.add(parts[1])
    return {
        "client": row.adapter.name,
        "mode": row.mode,
        "workers": row.workers,
        "kills": kills,
        "ms": c.rounded(times),
        "after_publish_reached": len(seen & wanted),
        "after_publish_workers": len(wanted),
        "note": "; ".join(notes),
    }


def main() -> None:
    args = c.cli(__doc__ or "", extra=_options)
    worker_counts: list[int] = args.workers or ([1, 4] if args.quick else [1, 4, 16])
    rounds: int = args.rounds or (5 if args.quick else 100)
    kills: int = args.kills if args.kills is not None else (3 if args.quick else 20)
    largest = max(worker_counts)
    c.quiet_peer_logging()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with threads (3.12+)
    rows: list[dict[str, Any]] = []
    failovers: list[dict[str, Any]] = []
    began = time.monotonic()
    zygote = Zygote()  # before any test server starts: masters inherit none of the harness
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        c.private_home(tmp)
        chosen = [a for a in ADAPTERS if not args.only or a.name in args.only]
        missing = [{"client": a.name, "why": a.available} for a in chosen if a.available]
        chosen = [a for a in chosen if not a.available]
        for workers in worker_counts:
            open_rows: list[Row] = []
            try:
                for adapter in chosen:
                    if adapter.largest_only and workers != largest:
                        continue
                    for mode in MODES:
                        if args.mode and mode != args.mode:
                            continue
                        where = tmp / f"w{workers}-{len(open_rows)}"
                        open_rows.append(open_row(adapter, mode, workers, where, zygote))
                started = time.monotonic()
                # The harness (the test servers and their request logs) collects its garbage
                # between turns, never during one: an automatic full collection of its heap
                # stalled the test servers for up to about 120 ms every 30 s or so.
                gc.collect()
                gc.disable()
                for round_no in range(1, rounds + 1):
                    if round_no % GC_EVERY == 0:
                        gc.collect()
                    for row in open_rows:
                        if row.pool is not None:
                            row.pool.drain()  # keep every pipe empty: no worker blocks on it
                    for row in c.rotate(open_rows, round_no):
                        if not row.done:
                            run_round(row, round_no)
                print(
                    f"  {workers:>2} workers: {len(open_rows)} rows x {rounds} rounds in "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
                for row in open_rows:
                    if row.pool is not None:
                        row.pool.drain()
                        row.warnings_at_end = len(row.pool.warnings)
                failovers += [
                    failover(row, kills)
                    for row in open_rows
                    if row.adapter.name == SHARED
                    and row.mode == MODES[0]
                    and not row.done
                    and kills
                ]
            finally:
                gc.enable()
                for row in open_rows:
                    close_row(row)
            rows += [row.data() for row in open_rows]
    zygote.close()
    c.emit(
        args,
        "propagation",
        {
            "params": {
                "rounds": rounds,
                "workers": worker_counts,
                "round_timeout_s": ROUND_TIMEOUT,
                "held_timeout_s": HELD_TIMEOUT,
                "settle_s": SETTLE,
                "failover_timeout_s": FAILOVER_TIMEOUT,
                "harness_gc_every": GC_EVERY,
                "peer_poll_pause_s": PEER_POLL_PAUSE,
            },
            "seconds": round(time.monotonic() - began, 1),
            "rows": rows,
            "missing": missing,
            "failover": failovers,
        },
    )


if __name__ == "__main__":
    main()
