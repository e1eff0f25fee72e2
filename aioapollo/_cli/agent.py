"""``aioapollo agent``: lead the host's sharing group and serve config to processes in any
language: ``--write DIR`` keeps a file per namespace, ``--exec -- CMD ...`` runs a program with
config in its environment and restarts (or signals) it on change.

Files are replaced atomically (written to a private temporary file in the same directory,
flushed to disk, then renamed over the old one), so a reader sees the old file or the new one,
never a mix; they are 0600 in a 0700 directory the agent creates. Values go to the files and
to the child's environment because the user asked for that; nothing here logs a value.

As a supervisor the agent forwards SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH and SIGQUIT to the
child; SIGINT and SIGTERM are forwarded too, and the agent exits once the child has, with its
exit code (128 + the signal's number when a signal ended it). A child that exits on its own
ends the agent the same way, so the service manager above sees what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from .. import ApolloClient, ConfigChangeEvent, NamespaceSnapshot
from .._apollo.wire import namespace_format
from .._share import share_fingerprint
from .common import (
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CommandFailed,
    escape_properties,
    positive_seconds,
    signal_handlers,
)
from .configfiles import dump_mapping, export_text

__all__ = ["FORMATS", "add_arguments", "env_name", "render", "run", "write_atomic"]

logger = logging.getLogger("aioapollo")

#: ``--format`` values: ``export`` is the file ``config export`` writes for the namespace.
FORMATS = ("export", "env", "json", "properties")

#: Signals passed on to the child as they are.
FORWARDED = ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGQUIT")
#: Signals passed on to the child that also stop the agent once the child has exited.
STOPPING = ("SIGINT", "SIGTERM")

#: Variables of the agent's own environment a child does not inherit.
PRIVATE_ENV = ("APOLLO_ACCESS_KEY_SECRET", "APOLLO_OPENAPI_TOKEN")

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def add_arguments(agent: argparse.ArgumentParser) -> None:
    """The agent's ``--write`` and ``--exec`` flags."""
    out = agent.add_argument_group("serving other processes")
    out.add_argument(
        "--write",
        metavar="DIR",
        help="keep one file per namespace in DIR (created 0700), replaced atomically on each "
        "release, mode 0600",
    )
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="export",
        help="file format of properties namespaces: export (DIR/<namespace>, as `config "
        "export` writes it), env (DIR/<namespace>.env, NAME='value' lines), json "
        "(DIR/<namespace>.json), properties (DIR/<namespace>.properties); text namespaces "
        "(x.json, x.yaml, ...) are written as their text",
    )
    out.add_argument(
        "--exec",
        dest="exec_",
        action="store_true",
        help="run the command after `--` with config as environment variables; restart it "
        "when they change (or send --signal); exit with its exit code",
    )
    out.add_argument(
        "--signal",
        dest="reload_signal",
        metavar="SIG",
        help="with --exec: send this signal (HUP, USR1, ...) on every change instead of "
        "restarting (the program rereads the --write files)",
    )
    out.add_argument(
        "--env-prefix",
        default="",
        help="with --exec: prefix of the variable names (key db.url -> PREFIX + DB_URL)",
    )
    out.add_argument(
        "--stop-timeout",
        type=positive_seconds,
        default=10.0,
        help="with --exec: seconds a stopping child gets after SIGTERM before SIGKILL (10)",
    )
    agent.add_argument("exec_command", nargs="*", help=argparse.SUPPRESS)


# ------------------------------------------------------------------ files


def env_name(key: str, prefix: str = "") -> str:
    """The environment variable for a key: ``db.url`` -> ``DB_URL`` (``prefix`` first)."""
    name = prefix + _NOT_NAME.sub("_", key).upper()
    return "_" + name if name[:1].isdigit() else name


def render(snap: NamespaceSnapshot, fmt: str) -> tuple[str, str]:
    """The file name and text of one namespace in ``fmt`` (one of :data:`FORMATS`)."""
    name = snap.name
    content = snap.content
    if content is not None:  # a text namespace: its text
        return name, export_text(content) if fmt == "export" else content
    items = snap.items
    if fmt == "export":
        return name, dump_mapping(items)
    if fmt == "json":
        text = json.dumps(dict(sorted(items.items())), indent=2, ensure_ascii=False) + "\n"
        return f"{name}.json", text
    if fmt == "properties":
        lines = (
            f"{escape_properties(k, True)}={escape_properties(v, False)}\n"
            for k, v in sorted(items.items())
        )
        return f"{name}.properties", "".join(lines)
    names = _env_items(items, "", name)
    return f"{name}.env", "".join(f"{k}={shlex.quote(v)}\n" for k, v in names.items())


def _env_items(items: Mapping[str, str], prefix: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(items.items()):
        var = env_name(key, prefix)
        if var in out:
            logger.warning("%s: key %r maps to %s like another key; skipped", where, key, var)
            continue
        out[var] = value
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by a 0600 file holding ``text``: readers see the old or the new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            fd = -1
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself reaches the disk
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


class _Files:
    """``--write``: one file per namespace under ``root``."""

    def __init__(self, root: Path, fmt: str) -> None:
        self.root = root
        self.fmt = fmt

    def prepare(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandFailed(EXIT_USAGE, f"--write {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise CommandFailed(EXIT_USAGE, f"--write {self.root}: not writable")

    def write(self, snap: NamespaceSnapshot) -> None:
        name, text = render(snap, self.fmt)
        try:
            write_atomic(self.root / name, text)
        except OSError as exc:  # keep serving; the next release tries again
            logger.error("could not write %s: %s", self.root / name, exc.strerror)


# ------------------------------------------------------------------ the child


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class _Child:
    """``--exec``: the program the agent runs, in a session of its own (a terminal's Ctrl-C
    reaches it once, through the agent)."""

    def __init__(self, command: Sequence[str], stop_timeout: float, env_prefix: str) -> None:
        self.command = list(command)
        self.stop_timeout = stop_timeout
        self.env_prefix = env_prefix
        self.proc: asyncio.subprocess.Process | None = None
        self.env: dict[str, str] = {}

    async def start(self, env: dict[str, str]) -> None:
        base = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, env={**base, **env}, start_new_session=True
            )
        except OSError as exc:
            raise CommandFailed(EXIT_USAGE, f"--exec {self.command[0]}: {exc.strerror}") from None
        self.env = env
        _say(f"started {self.command[0]} (pid {self.proc.pid})")

    def send(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``; SIGKILL after ``stop_timeout``; the exit status."""
        proc = self.proc
        assert proc is not None
        self.send(sig)
        try:
            async with asyncio.timeout(self.stop_timeout):
                return await proc.wait()
        except TimeoutError:
            _say(f"pid {proc.pid} did not exit {self.stop_timeout:g} s after a signal: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return await proc.wait()


def _say(text: str) -> None:
    """Agent news go to stderr when a child shares stdout, else to stdout."""
    print(f"{PROG} agent: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the command


def _check(args: argparse.Namespace) -> int | None:
    """The reload signal's number; usage errors for flags that do not go together."""
    if args.exec_command and not args.exec_:
        raise CommandFailed(EXIT_USAGE, "a command after `--` needs --exec")
    if args.exec_ and not args.exec_command:
        raise CommandFailed(EXIT_USAGE, "--exec needs a command: --exec -- CMD [ARG ...]")
    if args.reload_signal is None:
        return None
    if not args.exec_:
        raise CommandFailed(EXIT_USAGE, "--signal goes with --exec")
    name = args.reload_signal.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    number = getattr(signal, name, None)
    if not isinstance(number, signal.Signals) or name in ("SIGKILL", "SIGSTOP"):
        raise CommandFailed(EXIT_USAGE, f"--signal {args.reload_signal}: not a signal to send")
    return int(number)


async def run(
    client: ApolloClient,
    args: argparse.Namespace,
    start: Callable[[ApolloClient], Awaitable[None]],
) -> int:
    """Lead (or stand by to lead) the host's sharing group until stopped; with ``--write``
    and ``--exec``, serve config to other processes meanwhile."""
    reload_signal = _check(args)
    files = _Files(Path(args.write), args.format) if args.write else None
    if files is not None:
        files.prepare()
    child = _Child(args.exec_command, args.stop_timeout, args.env_prefix) if args.exec_ else None
    out = sys.stderr if child is not None else sys.stdout
    group = share_fingerprint(client.options)
    print(
        f"{PROG} agent: app {client.app_id!r}, cluster {client.options.cluster!r}, "
        f"namespaces {', '.join(client.namespaces)}; group {group}",
        file=out,
        flush=True,
    )
    changed = asyncio.Event()

    async def on_change(event: ConfigChangeEvent) -> None:
        if files is not None:
            files.write(client.snapshot(event.namespace))  # the newest, whatever the event
        changed.set()

    client.add_listener(on_change)
    stopped: list[int] = []
    stop = asyncio.Event()
    with _signals(stop, stopped, child):
        await start(client)
        try:
            stats = client.stats()
            if stats.role == "solo":
                raise CommandFailed(
                    EXIT_USAGE, "sharing is not possible here (see the warning above)"
                )
            print(f"{PROG} agent: {_role_line(client)}", file=out, flush=True)
            if files is not None:
                for name in client.namespaces:
                    files.write(client.snapshot(name))
            if child is not None:
                await child.start(_child_env(client, args.env_prefix))
            return await _serve(client, child, reload_signal, changed, stop, stopped, out)
        finally:
            if child is not None and child.proc is not None and child.proc.returncode is None:
                await child.stop()
            await client.aclose()


async def _serve(
    client: ApolloClient,
    child: _Child | None,
    reload_signal: int | None,
    changed: asyncio.Event,
    stop: asyncio.Event,
    stopped: list[int],
    out: TextIO,
) -> int:
    role = client.stats().role
    waits: dict[str, Callable[[], Awaitable[object]]] = {
        "stop": stop.wait,
        "changed": changed.wait,
    }
    while True:
        tasks = {asyncio.ensure_future(fn()): what for what, fn in waits.items()}
        if child is not None:
            tasks[asyncio.ensure_future(child.wait())] = "exited"
        try:
            done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        what = {tasks[t] for t in done}
        if client.stats().role != role:
            role = client.stats().role
            print(f"{PROG} agent: {_role_line(client)}", file=out, flush=True)
        if child is None:
            if "stop" in what:
                return EXIT_OK
            changed.clear()
            continue
        if "exited" in what:
            code = _exit_code(await child.wait())
            _say(f"{child.command[0]} exited with {code}; stopping")
            return code
        if "stop" in what:
            sig = stopped[-1] if stopped else int(signal.SIGTERM)
            return _exit_code(await child.stop(sig))
        if "changed" in what:
            changed.clear()
            if reload_signal is not None:
                child.send(reload_signal)
                continue
            env = _child_env(client, child.env_prefix)
            if env != child.env:
                _say(f"config changed: restarting {child.command[0]}")
                await child.stop()
                await child.start(env)


def _child_env(client: ApolloClient, prefix: str) -> dict[str, str]:
    """The child's config variables: every properties namespace's keys, mapped to names (the
    first namespace listed wins a name)."""
    env: dict[str, str] = {}
    for name in client.namespaces:
        if namespace_format(name) != "properties":
            continue  # text namespaces: use --write
        for var, value in _env_items(client.snapshot(name).items, prefix, name).items():
            env.setdefault(var, value)
    return env


def _signals(
    stop: asyncio.Event, stopped: list[int], child: _Child | None
) -> contextlib.AbstractContextManager[None]:
    """SIGINT/SIGTERM stop the agent (and are passed to the child); with a child, the other
    usual signals are passed to it. Main thread only."""

    def stopping(sig: int) -> None:
        stopped.append(sig)
        stop.set()

    handlers: list[tuple[int, Callable[[int], None]]] = [
        (int(getattr(signal, s)), stopping) for s in STOPPING
    ]
    if child is not None:
        handlers += [(int(getattr(signal, s)), child.send) for s in FORWARDED if hasattr(signal, s)]
    return signal_handlers(handlers)


def _role_line(client: ApolloClient) -> str:
    stats = client.stats()
    if stats.role == "leader":
        return f"leading (pid {os.getpid()}): this process polls Apollo for the group"
    return f"following pid {stats.leader_pid}: standing by, leads when that process goes away"
