"""Real ASGI servers, real worker processes: one publish reaches every worker, shutdown is clean.

Each case runs ``examples/asgi_workers_app.py`` under a real server with N workers against the
test server on loopback. Workers append ``started`` / ``changed`` / ``stopped`` lines to a
report file (see the app), which the test waits on with deadlines. The test server's count of
held long polls proves there are exactly N live pollers (none left over in an arbiter).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aioapollo.testing import ApolloTestServer

pytestmark = [pytest.mark.servers, pytest.mark.timeout(150)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APP_ID = "asgi-app"
APP = "asgi_workers_app:app"
#: Generous: two cores are shared with other test runs, and every worker imports FastAPI.
DEADLINE = 60.0
LOCAL = "127.0.0.1:0"


@dataclass(frozen=True)
class Case:
    argv: list[str]
    workers: int
    preload: bool = False
    #: Log lines the server itself is known to print on a clean run (regexes; PORT = app port).
    known: tuple[str, ...] = ()
    #: Every worker runs its lifespan shutdown on SIGTERM. Not hypercorn's: once its first
    #: worker has exited, its main process SIGTERMs the others (hypercorn/run.py), and a
    #: worker keeps SIGTERM's default action (it watches a shutdown event instead), so a
    #: worker still shutting down then is killed before its lifespan ends.
    every_worker_shuts_down: bool = True


def py(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter (its venv has every server)."""
    return [sys.executable, "-m", module, *args]


UVICORN = "uvicorn_worker.UvicornWorker"
GUNICORN = ("--bind", LOCAL, "--no-control-socket", "--graceful-timeout", "20")
CASES = {
    "gunicorn-uvicorn-preload": Case(
        py("gunicorn", *GUNICORN, "--preload", "-w", "4", "-k", UVICORN, APP), 4, preload=True
    ),
    "gunicorn-uvicorn": Case(py("gunicorn", *GUNICORN, "-w", "3", "-k", UVICORN, APP), 3),
    "uvicorn-workers": Case(
        py("uvicorn", "--host", "127.0.0.1", "--port", "0", "--workers", "4", APP),
        4,
        # uvicorn's supervisor binds the listening socket and never closes it (uvicorn/main.py):
        # its own leak, at its own exit, not a worker's.
        known=(r"ResourceWarning: unclosed <socket\.socket .*laddr=\('127\.0\.0\.1', PORT\)>",),
    ),
    "gunicorn-asgi": Case(py("gunicorn", *GUNICORN, "-w", "3", "-k", "asgi", APP), 3),
    "gunicorn-asgi-preload": Case(
        py("gunicorn", *GUNICORN, "--preload", "-w", "2", "-k", "asgi", APP), 2, preload=True
    ),
    "hypercorn": Case(
        py("hypercorn", "--bind", LOCAL, "--workers", "2", APP), 2, every_worker_shuts_down=False
    ),
}

#: Lines no clean run may log (a worker or the arbiter).
BAD = re.compile(r"Traceback|Warning|\bERROR\b|\bCRITICAL\b|unclosed|did not stop|frozen", re.I)


@pytest.fixture
async def apollo() -> AsyncIterator[ApolloTestServer]:
    # A long hold, like real Apollo: every worker's poll stays held, so they can be counted.
    async with ApolloTestServer(hold_seconds=30) as srv:
        srv.publish(APP_ID, "application", {"greeting": "hello"})
        yield srv


class Run:
    """One server process (its own session, so its whole tree can be checked and reaped)."""

    def __init__(
        self,
        case: Case,
        apollo: ApolloTestServer,
        tmp_path: Path,
        app_id: str = APP_ID,
        **extra_env: str,
    ) -> None:
        self.case = case
        self.report = tmp_path / "report.jsonl"
        self.log = tmp_path / "server.log"
        env = {
            **os.environ,
            "APP_ID": app_id,
            "APOLLO_CONFIG_SERVICE": apollo.url,
            "APOLLO_CACHE_FILE_ENABLE": "false",
            "AIOAPOLLO_REPORT": str(self.report),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONWARNINGS": "default",  # show every warning once, so the log check sees it
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                case.argv,
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        # Only whole lines: a worker may be mid-write.
        rows = [json.loads(line) for line in self.report.read_text().split("\n")[:-1]]
        return [row for row in rows if event is None or row["event"] == event]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(
        self, what: str, predicate: Callable[[], bool], *, running: bool = True
    ) -> None:
        """Wait (bounded) for ``predicate``; fail with the server's log if it never holds, or
        if the server exits meanwhile (unless not ``running`` is expected)."""
        deadline = time.monotonic() + DEADLINE
        while not predicate():
            if running and self.proc.poll() is not None:
                pytest.fail(
                    f"server exited ({self.proc.returncode}) waiting for {what}:\n"
                    f"{self.log_text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out waiting for {what}:\n{self.lines()}\n{self.log_text()[-4000:]}"
                )
            await asyncio.sleep(0.05)

    def port(self) -> int:
        ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", self.log_text())]
        return next(p for p in ports if p)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, DEADLINE)

    def kill(self) -> None:
        if self.group_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)


@pytest.mark.parametrize("name", list(CASES))
async def test_every_worker_follows_a_publish_and_shuts_down_clean(
    name: str, apollo: ApolloTestServer, tmp_path: Path
) -> None:
    case = CASES[name]
    run = Run(case, apollo, tmp_path)
    try:
        await run.wait_for(
            f"{case.workers} workers to start",
            lambda: len({row["pid"] for row in run.lines("started")}) >= case.workers,
        )
        # Exactly N live pollers: one per worker, none left in an arbiter.
        await run.wait_for(f"{case.workers} held polls", lambda: apollo.held_polls == case.workers)
        started = {row["pid"]: row for row in run.lines("started")}
        assert len(started) == case.workers
        assert all(
            row["value"] == "hello" and row["source"] == "remote" for row in started.values()
        )
        imported_in = {pid: row["imported_in"] for pid, row in started.items()}
        if case.preload:  # imported once, in the arbiter, and still polling in every worker
            assert set(imported_in.values()) == {run.proc.pid}
        else:
            assert imported_in == {pid: pid for pid in started}

        apollo.publish(APP_ID, "application", {"greeting": "updated"})
        await run.wait_for(
            "every worker's listener",
            lambda: {row["pid"] for row in run.lines("changed")} >= started.keys(),
        )
        changed = run.lines("changed")
        assert {row["pid"] for row in changed} == started.keys()
        assert all(row["value"] == "updated" and row["changes"] == 1 for row in changed)
        # Every poller polls on after the change (none died handling it).
        await run.wait_for("polls to resume", lambda: apollo.held_polls == case.workers)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{run.port()}") as http:
            body = (await http.get("/greeting", timeout=DEADLINE)).json()
        assert body["greeting"] == "updated" and body["pid"] in started
        assert body["state"] == "running" and body["changes"] == 1

        assert await run.stop() == 0
        # The server's own process may exit before its workers are gone (hypercorn's, see
        # Case), so every worker's last line is read once the whole group is gone.
        await run.wait_for(
            "the process group to be gone", lambda: not run.group_alive(), running=False
        )
        stopped = {row["pid"]: row for row in run.lines("stopped")}
        if case.every_worker_shuts_down:
            assert stopped.keys() == started.keys(), run.log_text()
        else:  # the first worker out is sure of its lifespan shutdown; the rest may be killed
            assert stopped and stopped.keys() <= started.keys(), run.log_text()
        assert all(row["state"] == "closed" for row in stopped.values())
        known = [re.compile(k.replace("PORT", str(run.port()))) for k in case.known]
        bad = [
            line
            for line in run.log_text().splitlines()
            if BAD.search(line)
            and not any(k.search(line) for k in known)
            and "Enable tracemalloc" not in line
        ]
        assert not bad, run.log_text()
    finally:
        run.kill()


@pytest.mark.parametrize("name", list(CASES))
async def test_startup_failure_stops_the_server_with_the_reason(
    name: str, apollo: ApolloTestServer, tmp_path: Path
) -> None:
    """Nothing published for the app and no cache: no worker may serve without config."""
    case = CASES[name]
    if name == "uvicorn-workers":  # its supervisor pings a dead worker for 5 s before noticing
        case = Case([*case.argv[:-1], "--timeout-worker-healthcheck", "1", APP], case.workers)
    run = Run(case, apollo, tmp_path, app_id="never-published")
    try:
        returncode = await asyncio.to_thread(run.proc.wait, DEADLINE)
        log = run.log_text()
        assert "NamespaceUnavailableError: could not load namespace(s) 'application'" in log
        assert run.lines("started") == []
        if name.startswith("gunicorn"):  # uvicorn and hypercorn exit 0 here: their choice
            # 3, or 1 when a second worker's failure lands while the arbiter is halting.
            assert returncode != 0 and "Worker failed to boot" in log
        await run.wait_for(
            "the process group to be gone", lambda: not run.group_alive(), running=False
        )
    finally:
        run.kill()


async def test_replacement_worker_forked_later_polls_too(tmp_path: Path) -> None:
    """A worker killed under --preload is re-forked from the arbiter and starts its own poller."""
    case = CASES["gunicorn-uvicorn-preload"]
    # A short hold: the server notices the killed worker's held poll only when its hold ends.
    async with ApolloTestServer(hold_seconds=2) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello"})
        run = Run(case, apollo, tmp_path)
        try:
            await run.wait_for("the workers", lambda: len(run.lines("started")) >= case.workers)
            await run.wait_for("their polls", lambda: apollo.held_polls == case.workers)
            victim = run.lines("started")[0]["pid"]
            os.kill(victim, signal.SIGKILL)
            await run.wait_for("a replacement", lambda: len(run.lines("started")) > case.workers)
            live = {row["pid"] for row in run.lines("started")} - {victim}
            assert len(live) == case.workers
            await run.wait_for("N polls again", lambda: apollo.held_polls == case.workers)

            apollo.publish(APP_ID, "application", {"greeting": "updated"})
            await run.wait_for(
                "every live worker's listener",
                lambda: {row["pid"] for row in run.lines("changed")} >= live,
            )
            assert {row["pid"] for row in run.lines("changed")} == live
            assert await run.stop() == 0
            await run.wait_for(  # its workers may outlive it (see the test above)
                "the process group to be gone", lambda: not run.group_alive(), running=False
            )
            assert {row["pid"] for row in run.lines("stopped")} == live
        finally:
            run.kill()
