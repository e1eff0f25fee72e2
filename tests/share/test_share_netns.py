"""Real hosts on one machine: network namespaces, each a "host" running 4 sharing workers.

Three network namespaces, each joined to this one by a veth pair with its own address, run
4 worker processes each (tests/apps/share_worker.py) against one test server listening on the
host side. The server must see one held long poll per host address, and a gray release by ip
must reach exactly the 4 workers of that one host. Needs root and iproute2; the namespaces
are removed even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo.testing import ApolloTestServer

from .._support import wait_until

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

HOSTS = 3
WORKERS = 4
APP_ID = "netns-app"
WORKER = Path(__file__).parent.parent / "apps" / "share_worker.py"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[list[tuple[str, str, str]]]:
    """``[(netns, host-side address, namespace address)]``, removed afterwards."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 (ip netns) to make test hosts")
    tag = uuid.uuid4().hex[:6]
    made: list[tuple[str, str, str]] = []
    try:
        for n in range(1, HOSTS + 1):
            name, outer, inner = f"aioapollo-{tag}-{n}", f"aa{tag}{n}h", f"aa{tag}{n}n"
            try:
                ip("netns", "add", name)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"ip netns add refused here: {exc.stderr.decode().strip()}")
            made.append((name, f"10.231.{n}.1", f"10.231.{n}.2"))
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", name)
            ip("addr", "add", f"10.231.{n}.1/24", "dev", outer)
            ip("link", "set", outer, "up")
            ip("-n", name, "addr", "add", f"10.231.{n}.2/24", "dev", inner)
            ip("-n", name, "link", "set", inner, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield made
    finally:
        for name, _, _ in made:  # deleting a namespace deletes its end of the veth pair too
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def lines(path: Path, event: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().split("\n")[:-1]]
    return [row for row in rows if row["event"] == event]


def start_worker(netns: str, url: str, share_dir: Path, report: Path) -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", netns, sys.executable, str(WORKER), url]
    return subprocess.Popen([*argv, str(share_dir), str(report)], stdin=subprocess.DEVNULL)


async def test_one_poll_per_host_and_gray_by_ip_reaches_one_host(
    namespaces: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    # Short share dirs: a Unix socket path must fit in ~107 bytes (pytest's tmp_path is long).
    short = Path(tempfile.mkdtemp(prefix="aa"))
    async with ApolloTestServer(host="0.0.0.0", hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        procs: list[subprocess.Popen[bytes]] = []
        reports: dict[str, Path] = {}
        try:
            for name, outer, _ in namespaces:
                reports[name] = tmp_path / f"{name}.jsonl"
                url = f"http://{outer}:{apollo.port}"
                share_dir = short / name[-1]
                procs.extend(
                    start_worker(name, url, share_dir, reports[name]) for _ in range(WORKERS)
                )
            await wait_until(
                lambda: all(len(lines(r, "started")) == WORKERS for r in reports.values()),
                timeout=60,
            )
            for report in reports.values():
                roles = sorted(row["role"] for row in lines(report, "started"))
                assert roles == ["follower"] * (WORKERS - 1) + ["leader"]
            await wait_until(lambda: apollo.held_polls == HOSTS, timeout=60)
            pollers = {r.remote for r in apollo.requests if r.path == "/notifications/v2"}
            assert pollers == {inner for _, _, inner in namespaces}  # one address per host

            gray_host, _, gray_ip = namespaces[1]
            apollo.publish(APP_ID, "application", {"greeting": "gray"}, gray_ips=[gray_ip])
            await wait_until(
                lambda: len(lines(reports[gray_host], "changed")) == WORKERS,
                timeout=60,
            )
            apollo.publish(APP_ID, "application", {"greeting": "everyone"})
            others = [r for name, r in reports.items() if name != gray_host]
            await wait_until(
                lambda: all(len(lines(r, "changed")) == WORKERS for r in others),
                timeout=60,
            )
            # The gray host keeps its gray release until the branch goes; then it converges.
            apollo.clear_gray(APP_ID, "application")
            await wait_until(
                lambda: len(lines(reports[gray_host], "changed")) == 2 * WORKERS,
                timeout=60,
            )
            for name, report in reports.items():
                values = [row["value"] for row in lines(report, "changed")]
                expected = ["gray", "everyone"] if name == gray_host else ["everyone"]
                assert sorted(values) == sorted(expected * WORKERS), (name, values)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(short, ignore_errors=True)
