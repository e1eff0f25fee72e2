"""Forked worker processes for the propagation and idle benchmarks, one adapter per client.

A worker reports over a pipe shared by all workers (lines shorter than ``PIPE_BUF`` are written
atomically): ``ready <pid>`` once its client is loaded, ``ev <pid> <round> <monotonic>`` each
time its change listener fires, ``err <pid> <text>`` if it failed. It runs until the parent
closes the stop pipe. ``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every process.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as c

import aioapollo


def report(fd: int, text: str) -> None:
    """Write one line to the report pipe."""
    os.write(fd, f"{text}\n".encode())


class Reporter:
    """Where a client's change listener reports rounds: the write end of the pool's pipe.

    A client built before fork is built, with its listener, in the parent. Peers that poll
    from the parent too (papollo, a ``SyncApolloClient`` started there) fire that listener in
    the parent, which closed its copy of the pipe after forking: the descriptor's number is
    then reused by the next socket the test server accepts, and the report would be written
    into a worker's HTTP response. Reports made in the parent are therefore dropped.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.parent = os.getpid()

    def round(self, value: str | None) -> None:
        """The listener saw round ``value``: stamp it now (in a worker only)."""
        if value is not None and os.getpid() != self.parent:
            os.write(self.fd, f"ev {os.getpid()} {value} {time.monotonic():.9f}\n".encode())


@dataclass
class Adapter:
    """How to build, start and listen with one client.

    ``build(url, reporter, tmp)`` makes a client whose listener reports to ``reporter``;
    ``serve(client, url, reporter, tmp, stop_fd)`` runs in the worker: builds the client if
    ``client`` is None, starts it, reports ready and blocks until ``stop_fd`` is readable.
    ``parent_start`` does what an app does at import time in the parent for the
    built-before-fork mode.
    """

    name: str
    build: Callable[[str, Reporter, Path], Any]
    serve: Callable[[Any, str, Reporter, Path, int], None]
    parent_start: Callable[[Any], None] = lambda client: None
    close_in_parent: Callable[[Any], None] = lambda client: None
    available: str = ""
    #: Worker counts to measure (None: all), for variants shown only where they matter.
    only_workers: tuple[int, ...] | None = None


_cpu_at_ready = 0.0


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def ready(fd: int) -> None:
    """Report the worker ready; its CPU time is counted from here."""
    global _cpu_at_ready
    _cpu_at_ready = _cpu()
    report(fd, f"ready {os.getpid()}")


def finished(fd: int) -> None:
    """Report the CPU seconds (all threads) this worker used since it was ready."""
    report(fd, f"cpu {os.getpid()} {_cpu() - _cpu_at_ready:.6f}")


def _block(stop_fd: int, fd: int) -> None:
    select.select([stop_fd], [], [])
    finished(fd)


# ------------------------------------------------------------------------------ aioapollo


def _aio_build(
    url: str, reporter: Reporter, tmp: Path, cache: bool = True
) -> aioapollo.ApolloClient:
    client = aioapollo.ApolloClient(
        c.APP,
        config_server=url,
        cache_dir=tmp / "aioapollo-cache" if cache else None,
        **c.AIOAPOLLO_OPTIONS,
    )

    async def on_change(event: aioapollo.ConfigChangeEvent) -> None:
        change = event.changes.get("round")
        reporter.round(change.new_value if change else None)

    client.add_listener(on_change)
    return client


def _aio_build_nocache(url: str, reporter: Reporter, tmp: Path) -> aioapollo.ApolloClient:
    return _aio_build(url, reporter, tmp, cache=False)


def _aio_serve(
    client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int, build: Any = _aio_build
) -> None:
    async def main() -> None:
        cfg = client if client is not None else build(url, reporter, tmp)
        await cfg.start()
        ready(reporter.fd)
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()
        loop.add_reader(stop_fd, lambda: stopped.done() or stopped.set_result(None))
        await stopped
        loop.remove_reader(stop_fd)
        finished(reporter.fd)
        await cfg.aclose()

    asyncio.run(main())


def _aio_serve_nocache(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    _aio_serve(client, url, reporter, tmp, stop_fd, build=_aio_build_nocache)


# ------------------------------------------------------------------------------ SyncApolloClient


def _sync_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    cls = aioapollo.SyncApolloClient  # type: ignore[attr-defined]
    client = cls(c.APP, config_server=url, cache_dir=tmp / "sync-cache", **c.AIOAPOLLO_OPTIONS)

    def on_change(event: aioapollo.ConfigChangeEvent) -> None:
        change = event.changes.get("round")
        reporter.round(change.new_value if change else None)

    client.add_listener(on_change)
    return client


def _sync_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _sync_build(url, reporter, tmp)
    start = getattr(cfg, "start", None)
    if callable(start):
        try:
            start()
        except aioapollo.ClientStateError:
            pass  # started in the parent and restarted by its own fork hook
    cfg.get("round")
    ready(reporter.fd)
    _block(stop_fd, reporter.fd)
    close = getattr(cfg, "close", None)
    if callable(close):
        close()


# ------------------------------------------------------------------------------ peers


def _papollo_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    import papollo

    client = papollo.Apollo(url, c.APP, watch=True)
    client.add_listener(lambda ns, old, new: reporter.round(new.get("round")))
    return client


def _papollo_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _papollo_build(url, reporter, tmp)
    cfg.namespace(c.NS)  # loads it and starts the watch thread (again, in a forked child)
    ready(reporter.fd)
    _block(stop_fd, reporter.fd)
    cfg.close()


def _acp_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    from apollo.apollo_client import ApolloClient

    def on_change(event: dict[str, Any]) -> None:
        if event.get("key") == "round":
            reporter.round(event.get("value"))

    return ApolloClient(
        url,
        c.APP,
        [c.NS],
        enable_dotenv=False,
        enable_long_pool_updates=True,
        auto_update_enabled=True,
        value_change_listeners=[on_change],
    )


def _acp_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _acp_build(url, reporter, tmp)
    cfg.get_value("round")
    ready(reporter.fd)
    _block(stop_fd, reporter.fd)
    cfg.stop()


def _apollocfg_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    import apollocfg

    client = apollocfg.ApolloClient(c.APP, config_url=url, namespaces=[c.NS])

    def on_change(ns: str, changes: dict[str, dict[str, Any]]) -> None:
        change = changes.get("round")
        reporter.round(change.get("new") if change else None)

    client.register_callback(on_change)
    return client


def _apollocfg_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _apollocfg_build(url, reporter, tmp)
    cfg.start()  # a no-op in a forked child of a started client
    ready(reporter.fd)
    _block(stop_fd, reporter.fd)


def _zen_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    from pyapollo.client import ApolloClient

    host, port = url.rsplit(":", 1)
    return ApolloClient(
        app_id=c.APP,
        config_server_host=host,
        config_server_port=int(port),
        cache_file_dir_path=str(tmp / f"zen-{os.getpid()}"),
    )


def _zen_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _zen_build(url, reporter, tmp)
    cfg.get_value("round")
    ready(reporter.fd)
    _block(stop_fd, reporter.fd)


#: A peer with no change listener that re-fetches on a timer: measured for idle cost only.
TIMER_PEER = Adapter(
    "pyapollo-zenkilan (30 s timer)",
    _zen_build,
    _zen_serve,
    available="" if c.peer_available("pyapollo.client") else "not installed",
)

ADAPTERS = [
    Adapter("aioapollo", _aio_build, _aio_serve),
    Adapter(
        "aioapollo, cache_dir=None", _aio_build_nocache, _aio_serve_nocache, only_workers=(16,)
    ),
    Adapter(
        "aioapollo SyncApolloClient",
        _sync_build,
        _sync_serve,
        parent_start=lambda client: client.start(),
        close_in_parent=lambda client: client.close(),
        available="" if hasattr(aioapollo, "SyncApolloClient") else "not available in this build",
    ),
    Adapter(
        "papollo",
        _papollo_build,
        _papollo_serve,
        parent_start=lambda client: client.namespace(c.NS),
        close_in_parent=lambda client: client.close(),
        available="" if c.peer_available("papollo") else "not installed",
    ),
    Adapter(
        "apollo-client-python",
        _acp_build,
        _acp_serve,
        close_in_parent=lambda client: client.stop(),
        available="" if c.peer_available("apollo.apollo_client") else "not installed",
    ),
    Adapter(
        "apollocfg",
        _apollocfg_build,
        _apollocfg_serve,
        parent_start=lambda client: client.start(),
        close_in_parent=lambda client: client.stop(timeout=0.1),
        available="" if c.peer_available("apollocfg") else "not installed",
    ),
]


# ------------------------------------------------------------------------------ the pool


class Pool:
    """Forks ``count`` workers that serve ``client`` (None: each builds its own)."""

    def __init__(self, adapter: Adapter, url: str, tmp: Path, count: int, prebuilt: bool) -> None:
        self.adapter = adapter
        self.url = url
        self.tmp = tmp
        self.count = count
        self.report_r, self.report_w = os.pipe()
        self.stop_r, self.stop_w = os.pipe()
        self.reporter = Reporter(self.report_w)
        self.client = adapter.build(url, self.reporter, tmp) if prebuilt else None
        if self.client is not None:
            adapter.parent_start(self.client)
        self.pids: list[int] = []
        self._buffer = b""

    def fork(self) -> None:
        """Fork the workers (the parent keeps only the pipe ends it needs)."""
        for _ in range(self.count):
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                code = 1
                try:
                    os.close(self.report_r)
                    os.close(self.stop_w)
                    serve = (self.adapter.serve, self.client, self.url, self.reporter, self.tmp)
                    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
                    if profile_dir:  # bench/profile_worker.py: where a worker's time goes
                        import cProfile

                        prof = cProfile.Profile()
                        prof.runcall(serve[0], *serve[1:], self.stop_r)
                        prof.dump_stats(f"{profile_dir}/worker-{os.getpid()}.prof")
                    else:
                        serve[0](*serve[1:], self.stop_r)
                    code = 0
                except BaseException:
                    text = traceback.format_exc().strip().splitlines()[-1]
                    report(self.report_w, f"err {os.getpid()} {text[:200]}")
                finally:
                    os._exit(code)
            self.pids.append(pid)
        os.close(self.report_w)
        os.close(self.stop_r)

    def lines(self, deadline: float) -> list[list[str]]:
        """Report lines that arrive before ``deadline`` (waits at most until then)."""
        timeout = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.report_r], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(self.report_r, 65536)
        if not chunk:
            time.sleep(min(0.01, timeout))  # every worker is gone
            return []
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        return [line.decode().split(" ", 3) for line in complete if line]

    def wait_ready(self, timeout: float) -> tuple[int, list[str]]:
        """How many workers reported ready within ``timeout``, and their errors."""
        deadline = time.monotonic() + timeout
        ready: set[str] = set()
        errors: list[str] = []
        while len(ready) + len(errors) < self.count and time.monotonic() < deadline:
            for parts in self.lines(deadline):
                if parts[0] == "ready":
                    ready.add(parts[1])
                elif parts[0] == "err":
                    errors.append(" ".join(parts[2:]))
        return len(ready), errors

    def close(self) -> list[float]:
        """Stop the workers (bounded), then the parent's own client; their CPU seconds."""
        os.close(self.stop_w)
        cpu: list[float] = []
        deadline = time.monotonic() + 10
        while len(cpu) < len(self.pids) and time.monotonic() < deadline:
            cpu.extend(float(p[2]) for p in self.lines(deadline) if p[0] == "cpu")
        deadline = time.monotonic() + 15
        pending = set(self.pids)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    pending.discard(pid)
            if pending:
                time.sleep(0.01)
        for pid in pending:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(self.report_r)
        if self.client is not None:
            self.adapter.close_in_parent(self.client)
        return cpu
