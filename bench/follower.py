"""Follower cost: CPU per applied release in a process that only follows, the leader's CPU
per release per follower (its fan-out), and the memory of a process that only follows.

Every process here is a fresh interpreter (as ``multiprocessing``'s spawn, ``uvicorn
--workers`` and ``hypercorn --workers`` start theirs), all with ``share_poll=True`` and one
test server (real 60 s hold) in a thread of this process:

1. a *leader* starts first and leads; it publishes to nobody while it is timed alone;
2. then *followers* start, load from it, and only follow.

Rounds: publish (a changed key in a release of 10 keys), wait until every process's change
listener has reported it and the leader's long poll is held again. CPU is each process's CPU
time (all its threads, ``/proc``), never wall time, read before and after a run of rounds;
the same processes' CPU over an idle window as long as the rounds took (heartbeats only) is
subtracted. So:

* *follower CPU per applied release*: a follower's net CPU over the rounds / rounds (the
  mean over followers, and the largest);
* *leader fan-out per follower*: (the leader's net CPU per round with the followers - its
  CPU per round alone) / followers.

Memory: each process reports its own ``VmRSS`` once started and after the rounds; the
baseline is a fresh ``python -c "import asyncio"`` process measured the same way.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

HELD_TIMEOUT = 5.0  # seconds for the leader's long poll to be held again
ROUND_TIMEOUT = 5.0  # seconds for a release to reach every process
READY_TIMEOUT = 30.0

#: The child: ``python -c CHILD <mode> <url> <share_dir> <cache_dir> <report fd>``. ``mode``:
#: ``baseline`` (only ``import asyncio``) or ``share`` (a share_poll=True client). It reports
#: lines on the report pipe and runs until its stdin closes (watched by the loop: no thread).
CHILD = r"""
import asyncio, os, sys

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

mode, url, share_dir, cache_dir, fd = *sys.argv[1:5], int(sys.argv[5])

def say(*words):
    os.write(fd, (" ".join(str(w) for w in (*words, os.getpid())) + "\n").encode())

async def until_stdin_closes():
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(0, closed.set)
    await closed.wait()

async def main():
    if mode == "baseline":
        say("ready", "baseline", rss_kib(), 0)
        await until_stdin_closes()
        return
    import aioapollo

    async with aioapollo.ApolloClient(
        "bench-app",
        config_server=url,
        share_poll=True,
        share_dir=share_dir,
        cache_dir=cache_dir,
        poll_min_interval=0.0,
    ) as client:
        async def on_change(event):
            say("ev", client.get_nowait("round"))
            if client.get_nowait("round") == "rss":
                say("rss", rss_kib(), int("aiohttp" in sys.modules))

        client.on_change(on_change)
        say("ready", client.stats().role, rss_kib(), int("aiohttp" in sys.modules))
        await until_stdin_closes()

asyncio.run(main())
"""


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--followers", type=int, help="followers (default 8, quick 2)")
    parser.add_argument("--rounds", type=int, help="rounds per phase (default 200, quick 10)")


class Reports:
    """Lines from every child on one pipe (each line is one atomic write)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._buf = b""

    def lines(self, timeout: float) -> list[list[str]]:
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return []
        self._buf += os.read(self.read_fd, 1 << 16)
        *whole, self._buf = self._buf.split(b"\n")
        return [line.decode().split() for line in whole]

    def wait(self, predicate: Any, timeout: float) -> list[list[str]]:
        """Lines until ``predicate(all lines so far)`` holds; raises on timeout."""
        deadline = time.monotonic() + timeout
        got: list[list[str]] = []
        while not predicate(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"children did not report in {timeout:g} s: {got[-3:]}")
            got.extend(self.lines(left))
        return got


def spawn(mode: str, url: str, tmp: Path, reports: Reports) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            mode,
            url,
            str(tmp / "share"),
            str(tmp / "cache"),
            str(reports.write_fd),
        ],
        stdin=subprocess.PIPE,
        pass_fds=(reports.write_fd,),
        env=env,
    )


def ready(reports: Reports, count: int) -> list[list[str]]:
    return [
        line
        for line in reports.wait(
            lambda got: sum(w[0] == "ready" for w in got) >= count, READY_TIMEOUT
        )
        if line[0] == "ready"
    ]


def cpu(pids: list[int]) -> dict[int, float]:
    return {pid: c.process_cpu(pid) for pid in pids}


def rounds(server: Any, reports: Reports, pids: list[int], count: int, tag: str) -> float:
    """Publish ``count`` releases, each heard by every process; returns the seconds taken."""
    began = time.monotonic()
    for n in range(count):
        if not c.wait_until(lambda: server.held_polls >= 1, HELD_TIMEOUT):
            raise TimeoutError("the leader's long poll was not held again")
        value = f"{tag}-{n}"
        server.publish(c.APP, c.NS, {**c.payload(10), "round": value})
        heard = reports.wait(
            lambda got, v=value: {int(w[-1]) for w in got if w[:2] == ["ev", v]} >= set(pids),
            ROUND_TIMEOUT,
        )
        assert heard
    if not c.wait_until(lambda: server.held_polls >= 1, HELD_TIMEOUT):
        raise TimeoutError("the leader's long poll was not held again")
    return time.monotonic() - began


def net_cpu_ms(pids: list[int], count: int, run: Any) -> tuple[dict[int, float], dict[int, float]]:
    """Each process's CPU (ms) per round over ``run()``, raw and net of an idle window."""
    before = cpu(pids)
    took = run()
    after = cpu(pids)
    idle0 = cpu(pids)
    time.sleep(took)
    idle1 = cpu(pids)
    raw = {p: (after[p] - before[p]) * 1000 / count for p in pids}
    net = {p: max(raw[p] - (idle1[p] - idle0[p]) * 1000 / count, 0.0) for p in pids}
    return raw, net


def main() -> None:
    args = c.cli(__doc__ or "", extra=_options)
    followers = args.followers or (2 if args.quick else 8)
    count = args.rounds or (10 if args.quick else 200)
    reports = Reports()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name, c.ServerThread(hold_seconds=60) as server:
        tmp = Path(tmp_name)
        c.private_home(tmp)
        server.publish(c.APP, c.NS, {**c.payload(10), "round": "start"})
        try:
            baseline = spawn("baseline", server.url, tmp, reports)
            procs.append(baseline)
            [base_line] = ready(reports, 1)
            baseline_kib = int(base_line[2])

            leader = spawn("share", server.url, tmp, reports)
            procs.append(leader)
            [lead_line] = ready(reports, 1)
            assert lead_line[1] == "leader", lead_line
            alone_raw, alone_net = net_cpu_ms(
                [leader.pid], count, lambda: rounds(server, reports, [leader.pid], count, "alone")
            )

            kids = [spawn("share", server.url, tmp, reports) for _ in range(followers)]
            procs.extend(kids)
            lines = ready(reports, followers)
            roles = {w[1] for w in lines}
            assert roles == {"follower"}, roles
            started_kib = [int(w[2]) for w in lines]
            aiohttp_at_start = sum(int(w[3]) for w in lines)
            pids = [leader.pid, *(k.pid for k in kids)]
            raw, net = net_cpu_ms(
                pids, count, lambda: rounds(server, reports, pids, count, "shared")
            )
            server.publish(c.APP, c.NS, {**c.payload(10), "round": "rss"})
            got = reports.wait(lambda g: sum(w[0] == "rss" for w in g) >= len(pids), ROUND_TIMEOUT)
            after = {int(w[-1]): (int(w[1]), int(w[2])) for w in got if w[0] == "rss"}
        finally:
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.close()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    follower_pids = [k.pid for k in kids]
    data = {
        "params": {"followers": followers, "rounds": count, "keys": 11},
        "follower_cpu_ms": c.rounded([net[p] for p in follower_pids], 4),
        "follower_cpu_raw_ms": c.rounded([raw[p] for p in follower_pids], 4),
        "leader_alone_cpu_ms": round(alone_net[leader.pid], 4),
        "leader_alone_cpu_raw_ms": round(alone_raw[leader.pid], 4),
        "leader_shared_cpu_ms": round(net[leader.pid], 4),
        "leader_shared_cpu_raw_ms": round(raw[leader.pid], 4),
        "fanout_per_follower_ms": round(
            max(net[leader.pid] - alone_net[leader.pid], 0.0) / followers, 4
        ),
        "baseline_rss_kib": baseline_kib,
        "follower_rss_kib_started": started_kib,
        "follower_rss_kib_after": [after[p][0] for p in follower_pids],
        "followers_with_aiohttp_at_start": aiohttp_at_start,
        "followers_with_aiohttp_after": sum(after[p][1] for p in follower_pids),
    }
    c.emit(args, "follower", data)


if __name__ == "__main__":
    main()
