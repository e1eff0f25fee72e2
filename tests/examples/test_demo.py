"""The README's first command: the demo exits 0 only if every worker of both servers updated."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.servers
@pytest.mark.timeout(180)
def test_the_demo_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("saw") == 8  # 4 gunicorn workers + 4 uWSGI workers
    assert "OK: every worker of both servers updated" in done.stdout
