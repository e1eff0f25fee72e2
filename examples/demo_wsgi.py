"""The WSGI half of the demo: a Flask app under uWSGI prefork, 4 workers, one publish.

Starts the embedded Apollo test server, serves ``examples/flask_app.py`` with uWSGI as
``examples/uwsgi.ini`` configures it (master, 4 processes, enable-threads, no lazy-apps: the
app and its SyncApolloClient are created in the master), publishes a new greeting and prints,
for each worker pid, when it saw the new value. ``run()`` returns True only if every worker
updated.

    python examples/demo_wsgi.py
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aioapollo.testing import ApolloTestServer

APP_ID = "demo-app"
WORKERS = 4
HERE = Path(__file__).resolve().parent
NEW_GREETING = "hot reloaded!"
TIMEOUT_S = 60.0


def run() -> bool:
    """Run the demo; True only if every uWSGI worker saw the published change."""
    uwsgi = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
    if uwsgi is None:
        print("FAILED: uWSGI is not installed (pip install uwsgi needs gcc and Python headers)")
        return False
    return asyncio.run(_demo(uwsgi))


async def _demo(uwsgi: str) -> bool:
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello from Apollo"})
        with tempfile.TemporaryDirectory(prefix="aioapollo-demo-") as tmp:
            log_path = Path(tmp) / "uwsgi.log"
            proc = _spawn(uwsgi, _environment(apollo.url, tmp), log_path)
            try:
                return await _watch(apollo, proc, log_path)
            finally:
                await _stop(proc)


async def _watch(apollo: ApolloTestServer, proc: subprocess.Popen[bytes], log: Path) -> bool:
    print(f"Apollo test server: {apollo.url}")
    started = r"(\d+) aioapollo ApolloClient\('demo-app'\) started"
    text = await _wait_for(log, proc, r"spawned uWSGI worker \d+ \(pid: (\d+)", WORKERS)
    pids = {int(pid) for pid in re.findall(r"spawned uWSGI worker \d+ \(pid: (\d+)", text)}
    print(f"uWSGI master {proc.pid}: {WORKERS} workers {sorted(pids)} (prefork, no lazy-apps)")
    deadline = time.monotonic() + TIMEOUT_S
    while not pids <= {int(p) for p in re.findall(started, text)}:  # every poller loaded
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("uWSGI workers did not start their pollers")
        await asyncio.sleep(0.05)
        text = _read(log)
    async with asyncio.timeout(TIMEOUT_S):
        await apollo.wait_for_polls(WORKERS)
    published = time.time()
    apollo.publish(APP_ID, "application", {"greeting": NEW_GREETING})
    print(f"published greeting={NEW_GREETING!r}")
    seen = rf"^(\S+ \S+) (\d+) flask_app worker \d+ sees greeting={NEW_GREETING!r}"
    deadline = time.monotonic() + 10
    when: dict[int, float] = {}
    while set(when) < pids and time.monotonic() < deadline and proc.poll() is None:
        for stamp, pid in re.findall(seen, _read(log), re.M):
            when[int(pid)] = _parse_asctime(stamp)
        await asyncio.sleep(0.02)
    for pid in sorted(pids):
        if pid in when:
            print(f"  worker {pid} saw it after {max(0.0, when[pid] - published) * 1000:.0f} ms")
        else:
            print(f"  worker {pid} did NOT see it")
    ok = set(when) == pids
    print("OK: every uWSGI worker updated" if ok else "FAILED: not every worker updated")
    return ok


async def _wait_for(log: Path, proc: subprocess.Popen[bytes], pattern: str, count: int) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        text = _read(log)
        if len(re.findall(pattern, text)) >= count:
            return text
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(text.splitlines()[-30:])
            raise RuntimeError(f"uWSGI did not log {pattern!r}:\n{tail}")
        await asyncio.sleep(0.05)


def _spawn(uwsgi: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [uwsgi, "--ini", str(HERE / "uwsgi.ini"), "--http-socket", _address()],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: nothing can outlive the demo
        )


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # die-on-term: workers first, then the master
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _environment(apollo_url: str, tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # uWSGI embeds this interpreter: give it this process's import path.
        PYTHONPATH=os.pathsep.join([str(HERE), *(p for p in sys.path if p)]),
        PYTHONUNBUFFERED="1",
        APP_ID=APP_ID,
        APOLLO_CONFIG_SERVICE=apollo_url,
        APOLLO_CACHE_FILE_ENABLE="false",
        TMPDIR=tmp,
    )
    return env


def _parse_asctime(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
