"""Shared helpers for the benchmark scripts: statistics, a test server in a thread, output.

Every script in ``bench/`` is run by ``bench/run.py`` in a fresh interpreter and writes its
results as JSON (``--out FILE``): ``{"section": ..., "title": ..., "columns": [...],
"rows": [[...], ...], "notes": [...]}``. ``run.py`` turns them into markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aioapollo.testing import ApolloTestServer

T = TypeVar("T")

APP = "bench-app"
NS = "application"

#: Settings every aioapollo client in the benchmarks uses; only the poll pacing differs from
#: the defaults (see docs/benchmarks.md: it adds nothing to a publish that meets a held poll).
AIOAPOLLO_OPTIONS: dict[str, Any] = {"poll_min_interval": 0.0}


# ------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return statistics.median(values)


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` formatted as ``1.23x``, or ``n/a``."""
    if value is None or base is None or base <= 0:
        return "n/a"
    return f"{value / base:.2f}x"


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or an em dash for None."""
    return "—" if value is None else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------ test server


class ServerThread:
    """An :class:`ApolloTestServer` running in its own thread and event loop.

    The main thread stays free to fork workers and to time things synchronously;
    ``server.publish`` and ``server.held_polls`` are safe to use from it.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-apollo-server", daemon=True)
        self.server: ApolloTestServer | None = None

    def __enter__(self) -> ApolloTestServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test server did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the test server failed to start") from self._error
        assert self.server is not None
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.server = await ApolloTestServer(**self._kwargs).start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.close()

        asyncio.run(main())


class ServerProcess:
    """An :class:`ApolloTestServer` in a forked child process, with releases published.

    For memory measurements: nothing the server allocates shows up in this process.
    """

    def __init__(self, releases: dict[str, dict[str, str]], **kwargs: Any) -> None:
        self._releases = releases
        self._kwargs = kwargs
        self._pid = 0
        self._stop_w = -1
        self.url = ""

    def __enter__(self) -> str:
        port_r, port_w = os.pipe()
        stop_r, self._stop_w = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            code = 1
            try:
                os.close(port_r)
                os.close(self._stop_w)
                asyncio.run(self._serve(port_w, stop_r))
                code = 0
            finally:
                os._exit(code)
        os.close(port_w)
        os.close(stop_r)
        with os.fdopen(port_r) as reader:
            self.url = reader.readline().strip()
        if not self.url:
            raise RuntimeError("the server process did not start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        os.close(self._stop_w)
        os.waitpid(self._pid, 0)

    async def _serve(self, port_w: int, stop_r: int) -> None:
        async with ApolloTestServer(**self._kwargs) as server:
            for namespace, data in self._releases.items():
                server.publish(APP, namespace, data)
            os.write(port_w, f"{server.url}\n".encode())
            os.close(port_w)
            loop = asyncio.get_running_loop()
            stopped = loop.create_future()
            loop.add_reader(stop_r, lambda: stopped.done() or stopped.set_result(None))
            await stopped


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` (bounded) until it holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def payload(keys: int, round_no: int = 0) -> dict[str, str]:
    """A properties release of ``keys`` keys plus a ``round`` key."""
    data = {f"key.{i:06d}": f"value-{i}-{'x' * 16}" for i in range(keys)}
    data["round"] = str(round_no)
    return data


# ------------------------------------------------------------------------------ peers


def peer_available(module: str) -> bool:
    """Whether a peer client's module imports here."""
    try:
        __import__(module)
    except Exception:
        return False
    return True


PEERS = {
    "papollo": "papollo",
    "apollo-client-python": "apollo.apollo_client",
    "apollocfg": "apollocfg",
    "apollo-config-client": "apollo_config",
    "pyapollo-zenkilan": "pyapollo.client",
}


def quiet_peer_logging() -> None:
    """Keep peers' own log output (loguru, basicConfig) off the benchmark's stdout."""
    import logging

    logging.getLogger().setLevel(logging.CRITICAL)
    for name in ("papollo", "apollocfg", "apollo_config", "aioapollo", "aioapollo.testing"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        from loguru import logger

        logger.disable("pyapollo")
    except ImportError:
        pass


def private_home(tmp: Path) -> None:
    """Point HOME and the cache dirs at ``tmp``: peers write cache files under ``~``."""
    os.environ["HOME"] = str(tmp)
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")


# ------------------------------------------------------------------------------ output


def machine() -> dict[str, str]:
    """``nproc``, the CPU model and the Python version."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def cli(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every section script takes (plus its own, added by ``extra``)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def emit(args: argparse.Namespace, sections: list[dict[str, Any]]) -> None:
    """Print the sections as markdown and write them as JSON to ``--out``."""
    for section in sections:
        print(f"\n### {section['title']}\n")
        print(table(section["columns"], section["rows"]))
        for note in section.get("notes", ()):
            print(f"\n- {note}")
    sys.stdout.flush()
    if args.out is not None:
        args.out.write_text(json.dumps(sections, indent=1))


Sections = list[dict[str, Any]]


def run_section(
    doc: str, measure: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Sections]]
) -> None:
    """A section script's main(): parse flags, measure in a private HOME, print and write."""
    import tempfile

    args = cli(doc)
    quiet_peer_logging()
    with tempfile.TemporaryDirectory() as tmp:
        private_home(Path(tmp))
        sections = asyncio.run(measure(args, Path(tmp)))
    emit(args, sections)
