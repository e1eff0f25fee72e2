"""Real server processes for tests: start one in its own session, watch its log, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

UWSGI_HINT = "pip install uwsgi builds it from source: it needs a C compiler and Python headers"

#: Lines that must never show up in a server log.
BAD_LOG_LINES = re.compile(
    r"Traceback|Unclosed|ResourceWarning|Exception ignored|Task was destroyed|"
    r"DeprecationWarning|Fatal Python error|Segmentation fault"
)


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool from this environment, or skip the test."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: {hint}")
    return found


def server_env(apollo_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a server process: this interpreter's import path, the examples,
    the Apollo test server, and a private temp dir."""
    paths = [str(EXAMPLES), *(p for p in sys.path if p)]
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        PYTHONUNBUFFERED="1",
        APP_ID="demo-app",
        APOLLO_CONFIG_SERVICE=apollo_url,
        APOLLO_CACHE_FILE_ENABLE="false",
        TMPDIR=str(tmp_path),
    )
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


class ServerProcess:
    """One server (master plus workers) started in its own session; its output goes to a log."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def wait_log(self, pattern: str, count: int = 1, timeout: float = 60.0) -> list[str]:
        """Wait (bounded) until ``pattern`` matched ``count`` times; returns the first groups."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [m.group(1) if m.groups() else m.group(0) for m in regex.finditer(self.log())]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{count}x {pattern!r} not logged in {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def wait_pids(self, pattern: str, pids: set[int], timeout: float = 60.0) -> None:
        """Wait (bounded) until ``pattern`` (one group: a pid) matched for every pid."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not pids <= {int(m.group(1)) for m in regex.finditer(self.log())}:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{pattern!r} not logged by all of {pids} in {timeout}s:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Ask the master to shut down and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        """Last resort: kill the whole session this server started (its own process group)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    async def wait_gone(self, pids: set[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while left := {pid for pid in pids if alive(pid)}:
            if time.monotonic() > deadline:
                pytest.fail(f"processes {sorted(left)} outlived their server")
            await asyncio.sleep(0.05)
