"""The benchmark scripts still run against this tree (a smoke run, not a timing)."""

from __future__ import annotations

import json
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
