"""The ASGI demo: one publish reaches every worker of a preloaded gunicorn + uvicorn app.

Starts the embedded Apollo test server, runs ``examples/asgi_workers_app.py`` under gunicorn
with 4 uvicorn workers and ``--preload`` (``examples/gunicorn.conf.py``), publishes a new
greeting, and prints for each worker pid how long after the publish it saw the new value.

    python examples/demo_asgi.py        # exit status 0 only if every worker updated
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioapollo.testing import ApolloTestServer

EXAMPLES = Path(__file__).resolve().parent
APP_ID = "demo-app"
WORKERS = 4


class _ApolloThread:
    """The test server on its own event loop in a daemon thread (``publish`` is thread-safe)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: ApolloTestServer | None = None
        self._thread = threading.Thread(target=self._main, name="apollo-test-server", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ApolloTestServer(hold_seconds=30) as server:
            self.server = server
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ApolloTestServer:
        self._thread.start()
        if not self._ready.wait(30) or self.server is None:
            raise RuntimeError(f"the Apollo test server did not start: {self._error!r}")
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def _read_report(path: Path, event: str) -> dict[int, dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().split("\n")[:-1]]  # whole lines only
    return {row["pid"]: row for row in rows if row["event"] == event}


def _wait(
    what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            print(f"FAILED: gunicorn exited ({proc.returncode}) while waiting for {what}")
            return False
        if time.monotonic() > deadline:
            print(f"FAILED: timed out after {timeout:.0f} s waiting for {what}")
            return False
        time.sleep(0.02)
    return True


def run(timeout: float = 10.0) -> bool:
    """Run the demo; True only if every worker saw the published value within ``timeout`` s."""
    with _ApolloThread() as apollo, tempfile.TemporaryDirectory(prefix="aioapollo-demo-") as tmp:
        apollo.publish(APP_ID, "application", {"greeting": "hello from Apollo"})
        report, log_path = Path(tmp) / "report.jsonl", Path(tmp) / "gunicorn.log"
        env = {
            **os.environ,
            "APP_ID": APP_ID,
            "APOLLO_CONFIG_SERVICE": apollo.url,
            "APOLLO_CACHE_FILE_ENABLE": "false",
            "AIOAPOLLO_REPORT": str(report),
            "WEB_CONCURRENCY": str(WORKERS),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])
            ),
        }
        argv = [
            sys.executable, "-m", "gunicorn",
            "--config", str(EXAMPLES / "gunicorn.conf.py"),
            "--bind", "127.0.0.1:0",
            "--no-control-socket",
            "asgi_workers_app:app",
        ]  # fmt: skip
        print(f"Apollo test server: {apollo.url}")
        print(f"$ gunicorn --preload -w {WORKERS} -k uvicorn_worker.UvicornWorker ...")
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            ok = _demo(proc, apollo, report, timeout)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not ok:
            print(log_path.read_text(errors="replace")[-3000:])
    print("OK: every worker updated" if ok else "FAILED: not every worker updated")
    return ok


def _demo(
    proc: subprocess.Popen[bytes], apollo: ApolloTestServer, report: Path, timeout: float
) -> bool:
    def all_started() -> bool:
        return len(_read_report(report, "started")) >= WORKERS

    if not _wait(f"{WORKERS} workers to start", all_started, proc, 60):
        return False
    started = _read_report(report, "started")
    imported_in = ", ".join(sorted({str(row["imported_in"]) for row in started.values()}))
    print(f"gunicorn arbiter {proc.pid}: app imported once, in pid {imported_in}")
    for pid, row in sorted(started.items()):
        print(f"  worker {pid}: started, greeting={row['value']!r}")
    if not _wait("one long poll per worker", lambda: apollo.held_polls == WORKERS, proc, 30):
        return False
    print(f"Apollo holds {WORKERS} long polls: one per worker, none in the arbiter")

    def everyone() -> bool:
        return _read_report(report, "changed").keys() >= started.keys()

    published = time.time()
    apollo.publish(APP_ID, "application", {"greeting": "hot reloaded!"})
    print("published greeting='hot reloaded!'")
    all_seen = _wait("every worker to see the change", everyone, proc, timeout)
    changed = _read_report(report, "changed")
    for pid in sorted(started):
        seen = changed.get(pid)
        if seen is None:
            print(f"  worker {pid}: did NOT see the change")
        else:
            ms = (seen["time"] - published) * 1000
            print(f"  worker {pid}: saw greeting={seen['value']!r} {ms:.0f} ms after publish")
    return all_seen and all(changed[pid]["value"] == "hot reloaded!" for pid in started)


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
