"""The benchmark scripts still run against this tree (a smoke run, not a timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.timeout(120)
def test_read_cost_quick_run_reports_our_getters_against_their_baselines(tmp_path: Path) -> None:
    out = tmp_path / "read.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "read_cost.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [section] = json.loads(out.read_text())
    rows = {row[0]: row for row in section["rows"]}
    for getter in ("aioapollo `get_nowait`", "aioapollo `await get`"):
        assert float(rows[getter][1]) > 0
        assert rows[getter][5].endswith("x")
        assert rows[getter][6].startswith("≤ 1.3x")
    assert "aioapollo `SyncApolloClient.get`" in rows


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
