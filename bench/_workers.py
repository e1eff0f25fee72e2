"""Forked worker processes for the propagation, failover and idle benchmarks, one adapter per
client.

A worker reports over a pipe shared by all workers of its pool (lines shorter than
``PIPE_BUF`` are written atomically):

* ``ready <pid>`` once its client is loaded;
* ``ev <pid> <round> <monotonic>`` each time its change listener fires;
* ``warn <pid> <text>`` for each warning its client logs (a failed poll, a failover...);
* ``role <pid> <role>`` when an aioapollo client with ``share_poll=True`` changes role;
* ``gc <pid> <monotonic> <ms>`` after each full (generation 2) garbage collection;
* ``err <pid> <text>`` if the worker failed.

It runs until the parent closes the stop pipe. ``time.monotonic()`` is CLOCK_MONOTONIC, one
clock for every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as c

import aioapollo

#: apollo-client-python sleeps this long after every long-poll reply (its ``_cycle_time``,
#: 2 s by default). The benchmarks set it to aioapollo's ``poll_min_interval`` default so
#: that every client re-polls at the same pace; a publish always meets held polls, so the
#: pause never enters a round's latency, only how many rounds fit in the time budget.
PEER_POLL_PAUSE = 0.5


def report(fd: int, text: str) -> None:
    """Write one line to the report pipe."""
    os.write(fd, f"{text}\n".encode()[:4000])


class Reporter:
    """Where a client's change listener reports rounds: the write end of the pool's pipe.

    A client built before fork is built, with its listener, in the parent. Peers that poll
    from the parent too (papollo, a ``SyncApolloClient`` started there) fire that listener in
    the parent as well. Its reports are dropped there: they are not a worker's, and before
    this check they went to a descriptor the parent had closed, whose number the test server
    had meanwhile given to a worker's connection (the report landed in an HTTP response).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.parent = os.getpid()

    def round(self, value: str | None) -> None:
        """The listener saw round ``value``: stamp it now (in a worker only)."""
        if value is not None and os.getpid() != self.parent:
            os.write(self.fd, f"ev {os.getpid()} {value} {time.monotonic():.9f}\n".encode())


class _WarningLines(logging.Handler):
    """Sends each warning a worker's client logs to the parent as a ``warn`` line."""

    def __init__(self, fd: int) -> None:
        super().__init__(logging.WARNING)
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a peer's malformed log call (arguments without placeholders)
            text = str(record.msg)
        report(self.fd, f"warn {os.getpid()} {' '.join(text.split())[:300]}")


def _report_warnings(fd: int) -> None:
    """In a worker: every logged warning (ours and the peers') becomes a ``warn`` line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_WarningLines(fd))
    root.setLevel(logging.WARNING)
    for name in ("aioapollo", "papollo", "apollocfg", "apollo_config"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _report_full_collections(fd: int) -> None:
    """In a worker: every full (generation 2) garbage collection becomes a ``gc`` line.

    Workers forked together allocate alike, so their collections can fall due in the same
    round; a full one walks every object the worker holds, inherited ones included.
    """
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            took = (time.perf_counter() - started[0]) * 1000
            report(fd, f"gc {os.getpid()} {time.monotonic():.6f} {took:.3f}")

    gc.callbacks.append(callback)


class _RoleLines(aioapollo.Hooks):
    """Sends a sharing client's role changes to the parent as ``role`` lines."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def on_role(self, event: aioapollo.RoleEvent) -> None:
        if os.getpid() != self.reporter.parent:
            report(self.reporter.fd, f"role {os.getpid()} {event.role}")


Build = Callable[[str, Reporter, Path], Any]
Serve = Callable[[Any, str, Reporter, Path, int], None]


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
    build: Build
    serve: Serve
    parent_start: Callable[[Any], None] = lambda client: None
    close_in_parent: Callable[[Any], None] = lambda client: None
    available: str = ""
    #: Measured only at the largest worker count: variants shown where they matter.
    largest_only: bool = False
    #: The workers of a pool hold one long poll between them (``share_poll=True``).
    shared: bool = False
    #: Built before fork, the client polls from the parent too (one more held poll).
    polls_in_parent: bool = False


def ready(fd: int) -> None:
    """Report the worker ready."""
    report(fd, f"ready {os.getpid()}")


def _block(stop_fd: int) -> None:
    select.select([stop_fd], [], [])


# ------------------------------------------------------------------------------ aioapollo


def _aio_client(url: str, reporter: Reporter, tmp: Path, **options: Any) -> aioapollo.ApolloClient:
    """aioapollo with its default settings, plus ``options``."""
    client = aioapollo.ApolloClient(c.APP, config_server=url, **options)

    async def on_change(event: aioapollo.ConfigChangeEvent) -> None:
        change = event.changes.get("round")
        reporter.round(change.new_value if change else None)

    client.add_listener(on_change)
    return client


def _aio_build(url: str, reporter: Reporter, tmp: Path) -> aioapollo.ApolloClient:
    return _aio_client(url, reporter, tmp, cache_dir=tmp / "cache")


def _aio_build_nocache(url: str, reporter: Reporter, tmp: Path) -> aioapollo.ApolloClient:
    return _aio_client(url, reporter, tmp, cache_dir=None)


def _aio_build_shared(url: str, reporter: Reporter, tmp: Path) -> aioapollo.ApolloClient:
    return _aio_client(
        url,
        reporter,
        tmp,
        cache_dir=tmp / "cache",
        share_poll=True,
        share_dir=tmp / "share",
        hooks=[_RoleLines(reporter)],
    )


def _aio_server(build: Build) -> Serve:
    def serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
        async def main() -> None:
            cfg = client if client is not None else build(url, reporter, tmp)
            await cfg.start()
            ready(reporter.fd)
            loop = asyncio.get_running_loop()
            stopped: asyncio.Future[None] = loop.create_future()

            def stop() -> None:
                if not stopped.done():
                    stopped.set_result(None)

            loop.add_reader(stop_fd, stop)
            await stopped
            loop.remove_reader(stop_fd)
            await cfg.aclose()

        asyncio.run(main())

    return serve


# ------------------------------------------------------------------------------ SyncApolloClient


def _sync_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    client = aioapollo.SyncApolloClient(c.APP, config_server=url, cache_dir=tmp / "cache")

    def on_change(event: aioapollo.ConfigChangeEvent) -> None:
        change = event.changes.get("round")
        reporter.round(change.new_value if change else None)

    client.add_listener(on_change)
    return client


def _sync_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _sync_build(url, reporter, tmp)
    try:
        cfg.start()
    except aioapollo.ClientStateError:
        pass  # started in the parent and restarted by its own fork hook
    cfg.get("round")
    ready(reporter.fd)
    _block(stop_fd)
    cfg.close()


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
    _block(stop_fd)
    cfg.close()


def _acp_build(url: str, reporter: Reporter, tmp: Path) -> Any:
    from apollo.apollo_client import ApolloClient

    def on_change(event: dict[str, Any]) -> None:
        if event.get("key") == "round":
            reporter.round(event.get("value"))

    client = ApolloClient(
        url,
        c.APP,
        [c.NS],
        enable_dotenv=False,
        enable_long_pool_updates=True,
        auto_update_enabled=True,
        value_change_listeners=[on_change],
    )
    # Read before each pause by its polling thread (an int attribute in its source).
    client._cycle_time = PEER_POLL_PAUSE  # type: ignore[assignment]
    return client


def _acp_serve(client: Any, url: str, reporter: Reporter, tmp: Path, stop_fd: int) -> None:
    cfg = client if client is not None else _acp_build(url, reporter, tmp)
    cfg.get_value("round")
    ready(reporter.fd)
    _block(stop_fd)
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
    _block(stop_fd)


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
    _block(stop_fd)


def _installed(module: str) -> str:
    return "" if c.peer_available(module) else "not installed"


#: A peer with no change listener that re-fetches on a timer: measured for idle cost only.
TIMER_PEER = Adapter(
    "pyapollo-zenkilan (30 s timer)",
    _zen_build,
    _zen_serve,
    available=_installed("pyapollo.client"),
)

SHARED = "aioapollo, share_poll=True"

ADAPTERS = [
    Adapter("aioapollo", _aio_build, _aio_server(_aio_build)),
    Adapter(
        "aioapollo, cache_dir=None",
        _aio_build_nocache,
        _aio_server(_aio_build_nocache),
        largest_only=True,
    ),
    Adapter(
        SHARED,
        _aio_build_shared,
        _aio_server(_aio_build_shared),
        largest_only=True,
        shared=True,
    ),
    Adapter(
        "aioapollo SyncApolloClient",
        _sync_build,
        _sync_serve,
        parent_start=lambda client: client.start(),
        close_in_parent=lambda client: client.close(),
        polls_in_parent=True,
    ),
    Adapter(
        "papollo",
        _papollo_build,
        _papollo_serve,
        parent_start=lambda client: client.namespace(c.NS),
        close_in_parent=lambda client: client.close(),
        available=_installed("papollo"),
        polls_in_parent=True,
    ),
    Adapter(
        "apollo-client-python",
        _acp_build,
        _acp_serve,
        close_in_parent=lambda client: client.stop(),
        available=_installed("apollo.apollo_client"),
        polls_in_parent=True,
    ),
    Adapter(
        "apollocfg",
        _apollocfg_build,
        _apollocfg_serve,
        parent_start=lambda client: client.start(),
        close_in_parent=lambda client: client.stop(timeout=0.1),
        available=_installed("apollocfg"),
        polls_in_parent=True,
    ),
]


def adapter(name: str) -> Adapter:
    """The adapter called ``name``."""
    for found in [*ADAPTERS, TIMER_PEER]:
        if found.name == name:
            return found
    raise KeyError(name)


# ------------------------------------------------------------------------------ the pool


class Zygote:
    """A clean process that forks the pools' masters.

    Forked before the harness starts any test server, it holds what an app's master holds
    (the imported modules), not the harness's servers and request logs: a master forked from
    the harness itself would hand all of that to its workers, to be paid for in copy-on-write
    page faults whenever a worker touched it. Masters are asked for over a Unix socket that
    carries each pool's two pipe ends (``SCM_RIGHTS``).
    """

    def __init__(self) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:  # the zygote: never returns
            code = 1
            try:
                self.sock.close()
                _zygote(child)
                code = 0
            finally:
                os._exit(code)
        child.close()

    def start(self, pool: Pool, report_w: int, command_r: int) -> None:
        """Fork a master for ``pool`` that reports to ``report_w`` and obeys ``command_r``."""
        params = {
            "adapter": pool.adapter.name,
            "url": pool.url,
            "tmp": str(pool.tmp),
            "count": pool.count,
            "prebuilt": pool.prebuilt,
        }
        socket.send_fds(self.sock, [json.dumps(params).encode()], [report_w, command_r])

    def close(self) -> None:
        self.sock.close()
        os.waitpid(self.pid, 0)


def _zygote(sock: socket.socket) -> None:
    masters: set[int] = set()
    sock.settimeout(0.2)
    while True:
        for pid in list(masters):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    masters.discard(pid)
        try:
            message, fds, _, _ = socket.recv_fds(sock, 65536, 2)
        except TimeoutError:
            continue
        if not message:  # the harness is done
            break
        params = json.loads(message)
        pid = os.fork()
        if pid == 0:  # the master: never returns
            code = 1
            try:
                sock.close()
                found = adapter(params["adapter"])
                master = _Master(
                    found,
                    params["url"],
                    Path(params["tmp"]),
                    params["count"],
                    params["prebuilt"],
                    fds[0],
                    fds[1],
                )
                master.run()
                code = 0
            except BaseException:
                text = traceback.format_exc().strip().splitlines()[-1]
                report(fds[0], f"err {os.getpid()} master: {text[:200]}")
            finally:
                os._exit(code)
        masters.add(pid)
        for fd in fds:
            os.close(fd)
    deadline = time.monotonic() + 15
    while masters and time.monotonic() < deadline:
        for pid in list(masters):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    masters.discard(pid)
        time.sleep(0.01)


class Pool:
    """A preforking server in miniature: a master process and the workers it forks.

    The master does what a server's master (a gunicorn arbiter, a uWSGI master) does: in the
    built-before-fork mode it builds the client (and starts it, if the app would at import
    time), then forks ``count`` workers, each serving ``client`` (None: each builds its own).
    Every pool has a master of its own, so no pool's workers inherit another pool's client
    (a ``SyncApolloClient`` started in a process starts a poller in every child that process
    forks later). The master is forked by ``zygote`` when given, else by this process.

    This process talks to the master over a command pipe (``spawn``: fork one more worker,
    ``stop``) and hears the master and the workers on the report pipe: ``master <pid>`` and
    ``worker <pid>`` from the master, then the workers' own lines.
    """

    def __init__(
        self,
        adapter: Adapter,
        url: str,
        tmp: Path,
        count: int,
        prebuilt: bool,
        zygote: Zygote | None = None,
    ) -> None:
        self.adapter = adapter
        self.url = url
        self.tmp = tmp
        self.count = count
        self.prebuilt = prebuilt
        tmp.mkdir(parents=True, exist_ok=True)
        self.pids: list[int] = []
        self.roles: dict[int, str] = {}
        self.warnings: list[tuple[int, str]] = []
        #: Full garbage collections in the workers: (pid, monotonic end, milliseconds).
        self.collections: list[tuple[int, float, float]] = []
        self.errors: list[str] = []
        self.master = 0
        self._buffer = b""
        self._closed = False
        self._reaped = False
        self._ours = zygote is None
        self.report_r, report_w = os.pipe()
        command_r, self.command_w = os.pipe()
        if zygote is not None:
            zygote.start(self, report_w, command_r)
        else:
            self.master = os.fork()
            if self.master == 0:  # the master: never returns
                code = 1
                try:
                    os.close(self.report_r)
                    os.close(self.command_w)
                    _Master(adapter, url, tmp, count, prebuilt, report_w, command_r).run()
                    code = 0
                except BaseException:
                    text = traceback.format_exc().strip().splitlines()[-1]
                    report(report_w, f"err {os.getpid()} master: {text[:200]}")
                finally:
                    os._exit(code)
        os.close(report_w)
        os.close(command_r)

    def fork(self) -> None:
        """Have the master fork the pool's workers."""
        os.write(self.command_w, f"spawn {self.count}\n".encode())

    def spawn(self) -> None:
        """Have the master fork one more worker (its pid arrives as a ``worker`` line)."""
        os.write(self.command_w, b"spawn 1\n")

    def lines(self, deadline: float) -> list[list[str]]:
        """Report lines that arrive before ``deadline`` (waits at most until then).

        ``worker``, ``role``, ``warn`` and ``err`` lines are also kept on the pool as they pass.
        """
        timeout = max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([self.report_r], [], [], timeout)
        if not readable:
            return []
        chunk = os.read(self.report_r, 65536)
        if not chunk:  # the master and every worker are gone
            time.sleep(min(timeout, 0.01))
            return []
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        parsed = [line.decode(errors="replace").split(" ", 3) for line in complete if line]
        for parts in parsed:
            if parts[0] == "worker":
                self.pids.append(int(parts[1]))
            elif parts[0] == "master":
                self.master = int(parts[1])
            elif parts[0] == "role" and len(parts) == 3:
                self.roles[int(parts[1])] = parts[2]
            elif parts[0] == "warn":
                self.warnings.append((int(parts[1]), " ".join(parts[2:])))
            elif parts[0] == "gc" and len(parts) == 4:
                self.collections.append((int(parts[1]), float(parts[2]), float(parts[3])))
            elif parts[0] == "err":
                self.errors.append(" ".join(parts[2:]))
        return parsed

    def drain(self) -> None:
        """Take in every line already written (roles, warnings) without waiting."""
        while self.lines(time.monotonic()):
            pass

    def wait_ready(self, timeout: float, count: int | None = None) -> tuple[int, list[str]]:
        """How many workers reported ready within ``timeout``, and the errors reported."""
        want = self.count if count is None else count
        deadline = time.monotonic() + timeout
        ready_pids: set[str] = set()
        errors = len(self.errors)
        while len(ready_pids) + len(self.errors) - errors < want and time.monotonic() < deadline:
            for parts in self.lines(deadline):
                if parts[0] == "ready":
                    ready_pids.add(parts[1])
        return len(ready_pids), self.errors[errors:]

    def kill(self, pid: int) -> None:
        """SIGKILL one worker (its master reaps it)."""
        os.kill(pid, signal.SIGKILL)
        self.pids.remove(pid)
        self.roles.pop(pid, None)

    def close(self) -> None:
        """Stop the master and its workers (bounded)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self.command_w, b"stop\n")
        os.close(self.command_w)
        deadline = time.monotonic() + 10
        while not self._gone() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._gone():
            for pid in [self.master, *self.pids]:
                with contextlib.suppress(OSError):
                    if pid:
                        os.kill(pid, signal.SIGKILL)
            if self._ours:
                os.waitpid(self.master, 0)
                self._reaped = True
        os.close(self.report_r)

    def _gone(self) -> bool:
        """Whether the master exited (and, from a zygote, its workers closed the pipe too)."""
        if not self._reaped:
            if self._ours:
                self._reaped = os.waitpid(self.master, os.WNOHANG)[0] != 0
            else:
                readable, _, _ = select.select([self.report_r], [], [], 0)
                self._reaped = bool(readable) and not os.read(self.report_r, 65536)
        return self._reaped


#: How long a stopping master gives its workers to close their clients before SIGKILL.
STOP_GRACE = 3.0


class _Master:
    """The master process of a :class:`Pool` (runs in the forked child)."""

    def __init__(
        self,
        adapter: Adapter,
        url: str,
        tmp: Path,
        count: int,
        prebuilt: bool,
        report_w: int,
        command_r: int,
    ) -> None:
        self.adapter = adapter
        self.url = url
        self.tmp = tmp
        self.report_w = report_w
        self.command_r = command_r
        self.stop_r, self.stop_w = os.pipe()
        self.reporter = Reporter(report_w)
        self.children: set[int] = set()
        report(report_w, f"master {os.getpid()}")
        self.client = adapter.build(url, self.reporter, tmp) if prebuilt else None
        if self.client is not None:
            adapter.parent_start(self.client)

    def run(self) -> None:
        buffer = b""
        while True:
            readable, _, _ = select.select([self.command_r], [], [], 0.1)
            self._reap()
            if not readable:
                continue
            chunk = os.read(self.command_r, 4096)
            buffer += chunk
            *commands, buffer = buffer.split(b"\n")
            for command in commands:
                parts = command.decode().split()
                if parts and parts[0] == "spawn":
                    for _ in range(int(parts[1])):
                        self._spawn()
            if not chunk or any(cmd.strip() == b"stop" for cmd in commands):
                self._stop()
                return

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                os.close(self.command_r)
                os.close(self.stop_w)
                _report_warnings(self.report_w)
                _report_full_collections(self.report_w)
                serve = (self.adapter.serve, self.client, self.url, self.reporter, self.tmp)
                profile_dir = os.environ.get("BENCH_PROFILE_DIR")
                if profile_dir:  # bench/profile_worker.py: where a worker's time goes
                    import cProfile

                    prof = cProfile.Profile(time.thread_time)  # CPU, not waiting
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
        self.children.add(pid)
        report(self.report_w, f"worker {pid}")

    def _reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.children.discard(pid)

    def _stop(self) -> None:
        os.close(self.stop_w)  # every worker's stop pipe reads EOF
        deadline = time.monotonic() + STOP_GRACE
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.client is not None:
            self.adapter.close_in_parent(self.client)
