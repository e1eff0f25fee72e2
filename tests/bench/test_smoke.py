"""The benchmark scripts still run against this tree (a smoke run, not a timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=25,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(BENCH.parent)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.timeout(30)
def test_read_cost_quick_run_reports_our_getters_against_their_baselines(tmp_path: Path) -> None:
    result = _run("read_cost", tmp_path)
    assert result["section"] == "read_cost"
    variants = {v["name"]: v for v in result["data"]["variants"]}
    for getter in ("aioapollo `get_nowait`", "aioapollo `await get`"):
        assert min(variants[getter]["net_ns"]) >= 0
        assert variants[getter]["baseline"] is not None
        assert variants[getter]["target"] == 1.3
    assert len(variants["aioapollo `SyncApolloClient.get`"]["net_ns"]) == 60


@pytest.mark.timeout(30)
def test_propagation_quick_run_times_every_round_and_a_failover(tmp_path: Path) -> None:
    result = _run(
        "propagation",
        tmp_path,
        *("--only", "aioapollo", "--only", "aioapollo, share_poll=True"),
        *("--workers", "2", "--rounds", "3", "--kills", "1"),
    )
    rows = {(r["client"], r["mode"]): r for r in result["data"]["rows"]}
    assert len(rows) == 4
    for row in rows.values():
        assert len(row["ms"]) == 3 and None not in row["ms"], row
        assert row["warnings"] == 0, row["first_warning"]
    shared = rows[("aioapollo, share_poll=True", "built before fork")]
    assert shared["held"] == [1, 1, 1]  # one long poll for the two workers
    [failover] = result["data"]["failover"]
    assert failover["ms"][0] is not None
    assert failover["after_publish_reached"] == failover["after_publish_workers"] == 2


@pytest.mark.timeout(30)
def test_follower_quick_run_reports_cpu_per_release_fanout_and_rss(tmp_path: Path) -> None:
    result = _run("follower", tmp_path, "--followers", "2", "--rounds", "5")
    assert result["section"] == "follower"
    data = result["data"]
    assert len(data["follower_cpu_ms"]) == 2
    assert all(ms > 0 for ms in data["follower_cpu_raw_ms"])
    assert data["fanout_per_follower_ms"] >= 0
    assert data["baseline_rss_kib"] > 0
    assert min(data["follower_rss_kib_started"]) > data["baseline_rss_kib"]
    assert data["followers_with_aiohttp_at_start"] == data["followers_with_aiohttp_after"] == 0


def test_a_listener_built_before_fork_reports_from_workers_only() -> None:
    """The parent closes its copy of the report pipe after forking, and the number is reused by
    the next socket its test server accepts: a report from the parent's own client (papollo, a
    SyncApolloClient started there) would land in a worker's HTTP response."""
    sys.path.insert(0, str(BENCH))
    try:
        from _workers import Reporter
    finally:
        sys.path.remove(str(BENCH))
    read, write = os.pipe()
    with os.fdopen(read, "rb") as lines:
        with os.fdopen(write, "wb") as keep:
            reporter = Reporter(keep.fileno())
            reporter.round("1")  # the parent: dropped
            pid = os.fork()
            if pid == 0:
                try:
                    reporter.round("2")
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        reports = lines.read().decode().splitlines()
    assert [line.split()[:3] for line in reports] == [["ev", str(pid), "2"]]


@pytest.mark.timeout(30)
def test_openfeature_read_quick_run_writes_every_read_cost(tmp_path: Path) -> None:
    result = _run("openfeature_read", tmp_path)
    assert result["section"] == "openfeature" and result["quick"]
    reads = result["data"]["reads_ns"]
    assert len(reads) == 6
    assert all(ns > 0 for ns in reads.values())


@pytest.mark.timeout(30)
def test_decrypt_quick_run_reports_read_and_release_costs(tmp_path: Path) -> None:
    result = _run("decrypt", tmp_path)
    assert result["section"] == "decrypt"
    assert len(result["data"]["reads_ns"]) == 2
    rows = result["data"]["releases"]
    assert [r["values"] for r in rows] == [1000, 1000, 1000]
    assert all(r["release_ms"] > 0 for r in rows)
