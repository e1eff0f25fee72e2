"""Shared helpers for the benchmark scripts: a test server in a thread, CPU clocks, output.

Every script in ``bench/`` is run by ``bench/run.py`` in a fresh interpreter and writes its
raw measurements as JSON (``--out FILE``): ``{"section": name, "data": {...}}``. Nothing is
formatted here: ``bench/report.py`` turns a results file into tables and prose, so every
figure in the documents comes from one committed file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aioapollo.testing import ApolloTestServer

T = TypeVar("T")

APP = "bench-app"
NS = "application"

# ------------------------------------------------------------------------------ test server


class ServerThread:
    """An :class:`ApolloTestServer` running in its own thread and event loop.

    The main thread stays free to fork workers and to time things synchronously;
    ``server.publish``, ``server.held_polls`` and ``server.requests`` are safe to use from it.
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
            stopped: asyncio.Future[None] = loop.create_future()

            def stop() -> None:
                if not stopped.done():
                    stopped.set_result(None)

            loop.add_reader(stop_r, stop)
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


def best_ns(timers: Mapping[str, timeit.Timer], number: int, repeat: int) -> dict[str, float]:
    """ns per call of each timer, best of ``repeat`` rounds of ``number`` calls; the timers
    take turns in every round so that load from other processes hits them alike."""
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number * 1e9)
    return best


def payload(keys: int, round_no: int = 0) -> dict[str, str]:
    """A properties release of ``keys`` keys plus a ``round`` key."""
    data = {f"key.{i:06d}": f"value-{i}-{'x' * 16}" for i in range(keys)}
    data["round"] = str(round_no)
    return data


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return statistics.median(values)


def rotate(items: Sequence[T], by: int) -> list[T]:
    """``items`` starting at index ``by`` (modulo its length): who goes first takes turns."""
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


# ------------------------------------------------------------------------------ CPU clocks

TICK = 1 / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by every live thread of ``pid`` (Linux).

    Read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds) when the kernel has schedstats,
    else from ``/proc/<pid>/stat`` (clock ticks). A process that is gone counts 0.
    """
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as stats:
                total += int(stats.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended
        except OSError:
            return stat_cpu(pid)
    return total / 1e9


def stat_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads, ended ones too), in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


def minor_faults(pid: int) -> int:
    """Minor page faults of ``pid`` so far (copy-on-write faults of a forked child among them)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text.rsplit(")", 1)[1].split()[7])


def host_busy() -> tuple[float, float]:
    """CPU seconds this machine's CPUs have spent busy since boot, and the part of it that
    was *steal*: time a hypervisor gave to other guests while this one had work (``/proc/stat``).
    """
    try:
        with open("/proc/stat", "rb") as stats:
            fields = stats.readline().split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:8]) - idle) * TICK, steal * TICK


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# ------------------------------------------------------------------------------ peers


def peer_available(module: str) -> bool:
    """Whether a peer client's module imports here."""
    try:
        __import__(module)
    except Exception:
        return False
    return True


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


def rounded(values: Sequence[float | None], digits: int = 3) -> list[float | None]:
    """Values rounded for the results file (None stays None)."""
    return [None if v is None else round(v, digits) for v in values]


def emit(args: argparse.Namespace, section: str, data: dict[str, Any]) -> None:
    """Write one section's raw data to ``--out`` and print it as markdown."""
    data = {"load": load_average(), **data}
    if args.out is not None:
        args.out.write_text(json.dumps({"section": section, "data": data}, indent=1) + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import report

    print(report.section_markdown(section, data), flush=True)


Measure = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]]


def run_section(
    section: str,
    doc: str,
    measure: Measure,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """A section script's main(): parse flags, measure in a private HOME, print and write."""
    import tempfile

    args = cli(doc, extra)
    quiet_peer_logging()
    with tempfile.TemporaryDirectory() as tmp:
        private_home(Path(tmp))
        data = asyncio.run(measure(args, Path(tmp)))
    emit(args, section, data)
