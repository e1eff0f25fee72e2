"""The ``aioapollo`` command line: ``get``, ``dump``, ``watch``; ``encrypt`` and ``decrypt`` (in
``_cli.crypto``); ``serve`` (the test server) and,
for the test server only, ``publish`` and ``delete`` (in ``_cli.control``); ``config
export|diff|apply`` through the portal OpenAPI (in ``_cli.config``).

Settings come from the same environment variables as :meth:`ApolloClient.from_env`; flags win.
Values are printed on stdout because the user asked for them; nothing here logs a value.
Exit codes (stable, for scripts): 0 ok, 1 key not found, 2 usage or configuration error,
3 Apollo (or the portal) unreachable or the namespace not loadable, 4 access denied (401, or
403 from the portal), 5 ``config diff --exit-code`` found changes, 6 ``config apply`` refused
(others' unpublished changes, a namespace lock, the editor may not publish), 7 the portal
rejected a request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from .. import (
    ApolloAuthError,
    ApolloClient,
    ApolloError,
    ChangeType,
    ConfigChangeEvent,
    NamespaceUnavailableError,
    __version__,
)
from . import agent as _cli_agent
from . import config as _cli_config
from . import control as _cli_control
from . import crypto as _cli_crypto
from . import serve as _serve
from .common import (
    EXIT_AUTH,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    CommandFailed,
    at_least_one,
    escape_properties,
    positive_seconds,
    signal_handlers,
)

__all__ = ["EXIT_AUTH", "EXIT_MISSING", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("Apollo settings (default: the APP_ID, APOLLO_* env vars)")
    group.add_argument("--app-id", help="the appId (env APP_ID)")
    group.add_argument("--config-server", help="config service URL(s), comma separated")
    group.add_argument("--meta-server", help="meta server URL(s), for discovery (APOLLO_META)")
    group.add_argument("--cluster", help="cluster (APOLLO_CLUSTER, else IDC, else default)")
    group.add_argument("--data-center", help="the IDC (env IDC)")
    group.add_argument("--label", help="gray-release label (APOLLO_LABEL)")
    group.add_argument("--ip", help="client IP reported for gray releases")
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds to wait for the first load (10)",
    )
    group.add_argument(
        "--use-cache",
        action="store_true",
        help="fall back to the local file cache when Apollo is unreachable (off: a CLI should "
        "not print stale values silently)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv)")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read and watch Apollo configuration. The access-key secret is read from "
        "APOLLO_ACCESS_KEY_SECRET only (never a flag: flags show in `ps`). `serve` runs a "
        "local Apollo test server; `publish` and `delete` drive that test server only.",
        epilog="exit codes: 0 ok, 1 key not found, 2 usage/configuration error, "
        "3 Apollo unreachable or namespace not loadable, 4 access denied, 5 config diff found "
        "changes (--exit-code), 6 config apply refused, 7 the portal rejected a request",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = sub.add_parser("get", parents=[common], help="print one value")
    get.add_argument("key")
    get.add_argument("-n", "--namespace", default="application", help="(application)")
    get.add_argument("--default", help="print this instead of failing when the key is missing")

    dump = sub.add_parser("dump", parents=[common], help="print a whole namespace")
    dump.add_argument("namespace", nargs="?", default=None, help="(--namespace, application)")
    dump.add_argument("-n", "--namespace", dest="namespace_flag", default=None)
    dump.add_argument(
        "--format",
        choices=("properties", "json", "raw"),
        default=None,
        help="properties (default for properties namespaces), json ({key: value}), "
        "raw (file text; default for json/yaml/xml/txt namespaces)",
    )

    watch = sub.add_parser("watch", parents=[common], help="print every change until Ctrl-C")
    watch.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        help="namespace to watch; repeat for more (APOLLO_NAMESPACES, else application)",
    )
    watch.add_argument("--json", action="store_true", help="one JSON object per changed key")
    watch.add_argument(
        "--count", type=at_least_one, default=None, help="exit 0 after this many changed namespaces"
    )

    agent = sub.add_parser(
        "agent",
        parents=[common],
        help="poll Apollo for every process of this host that shares (share_poll=True)",
        description="Join this host's sharing group for these options and lead it whenever "
        "it can: the one process that polls Apollo and pushes releases to the app's workers "
        "(run it as a sidecar or a systemd unit, as the app's user). Its options must equal "
        "the app's, or it forms a group of its own: compare the printed group with the app's "
        "stats().group. Runs until Ctrl-C or SIGTERM; writes the local cache as the leader.",
    )
    agent.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        help="namespace to poll; repeat for more (APOLLO_NAMESPACES, else application)",
    )
    agent.add_argument(
        "--share-dir", help="the group's rendezvous directory (APOLLO_SHARE_DIR; private)"
    )
    _cli_agent.add_arguments(agent)

    serve = sub.add_parser(
        "serve",
        help="run a local Apollo test server (config + meta service)",
        description="Run aioapollo's Apollo test server (config and meta service) until "
        "Ctrl-C or SIGTERM. It prints 'aioapollo test server ready on URL' once listening. "
        "With APOLLO_OPENAPI_TOKEN set it also serves the portal OpenAPI (/openapi/v1, env "
        "DEV) and accepts that token for every app.",
    )
    _serve.add_arguments(serve)
    _cli_control.add_commands(sub)
    _cli_config.add_command(sub)
    _cli_crypto.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "serve":  # a long-running server: it configures logging itself
        return _serve.serve(args)
    if args.command == "config":
        with _logging_to_stderr(_log_level(args)):
            return _reporting_failure(_cli_config.run, args)
    if args.command in _cli_crypto.CRYPTO_COMMANDS:
        return _reporting_failure(_cli_crypto.run, args)
    if args.command in _cli_control.CONTROL_COMMANDS:
        return _reporting_failure(_cli_control.run, args)
    with _logging_to_stderr(_log_level(args)):
        return _main(args)


def _log_level(args: argparse.Namespace) -> int:
    """``-v`` shows warnings, ``-vv`` info, ``-vvv`` debug; errors are always shown."""
    return (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 3)]


def _reporting_failure(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``; a :class:`CommandFailed` is printed as ``aioapollo: error: ...``."""
    try:
        return run(args)
    except CommandFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code


def _main(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
        command: Callable[[ApolloClient, argparse.Namespace], Any] = {
            "get": _get,
            "dump": _dump,
            "watch": _watch,
            "agent": _agent,
        }[args.command]
        return _run(command(client, args))
    except CommandFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return EXIT_OK if args.command in ("watch", "serve") else 130
    except BrokenPipeError:  # e.g. `aioapollo dump | head -1`: the reader has gone
        _silence_stdout()
        return EXIT_OK


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Show aioapollo's log records at ``level`` on stderr for the command's duration only."""
    logger = logging.getLogger("aioapollo")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    previous = logger.level
    logger.addHandler(handler)
    if level < logging.WARNING:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _run(coro: Any) -> int:
    result: int = asyncio.run(coro)
    return result


def _client(args: argparse.Namespace) -> ApolloClient:
    flags = {
        "app_id": args.app_id,
        "config_server": args.config_server,
        "meta_server": args.meta_server,
        "cluster": args.cluster,
        "data_center": args.data_center,
        "label": args.label,
        "ip": args.ip,
    }
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if args.command == "get":
        overrides["namespaces"] = [args.namespace]
    elif args.command == "dump":
        overrides["namespaces"] = [args.namespace_flag or args.namespace or "application"]
    elif args.namespaces:
        overrides["namespaces"] = args.namespaces
    if args.command == "agent":
        overrides["share_poll"] = True
        if args.share_dir:
            overrides["share_dir"] = args.share_dir
    if not args.use_cache and args.command != "agent":  # the agent writes the host's cache
        overrides["cache_dir"] = None
    overrides.setdefault("fetch_retry_delay", 0.2)
    try:
        client = ApolloClient.from_env(start_timeout=args.timeout, **overrides)
    except (TypeError, ValueError) as exc:  # no app id, APOLLO_SHARE_POLL=enabled, a bad URL
        message = str(exc)
        if message.startswith("set APP_ID"):
            message = "no appId: set APP_ID or pass --app-id"
        elif message.startswith("no Apollo server given"):
            message = (
                "no Apollo address: set APOLLO_CONFIG_SERVICE (or APOLLO_META) "
                "or pass --config-server (or --meta-server)"
            )
        raise CommandFailed(EXIT_USAGE, message) from None
    return client


async def _start(client: ApolloClient) -> None:
    try:
        async with asyncio.timeout((client.options.start_timeout or 10.0) + 5.0):
            await client.start()
    except NamespaceUnavailableError as exc:
        if any(isinstance(c, ApolloAuthError) for c in exc.causes.values()):
            raise CommandFailed(EXIT_AUTH, str(exc)) from None
        raise CommandFailed(EXIT_UNAVAILABLE, str(exc)) from None
    except ApolloAuthError as exc:
        raise CommandFailed(EXIT_AUTH, str(exc)) from None
    except (ApolloError, TimeoutError) as exc:
        raise CommandFailed(EXIT_UNAVAILABLE, str(exc) or "timed out loading from Apollo") from None


async def _get(client: ApolloClient, args: argparse.Namespace) -> int:
    await _start(client)
    try:
        value = client.get_nowait(args.key, namespace=args.namespace)
    finally:
        await client.aclose()
    if value is None:
        kind = client.snapshot(args.namespace).format
        if kind != "properties":
            raise CommandFailed(
                EXIT_USAGE,
                f"namespace {args.namespace!r} is a {kind} file: it has no keys, only its "
                f"whole text; print it with `{PROG} dump {args.namespace}`",
            )
        if args.default is not None:
            value = args.default
        else:
            raise CommandFailed(
                EXIT_MISSING, f"key {args.key!r} not found in namespace {args.namespace!r}"
            )
    _write(sys.stdout, value + "\n")
    return EXIT_OK


async def _dump(client: ApolloClient, args: argparse.Namespace) -> int:
    await _start(client)
    try:
        snap = client.snapshot(client.namespaces[0])
    finally:
        await client.aclose()
    fmt = args.format or ("properties" if snap.format == "properties" else "raw")
    if fmt == "json":
        text = json.dumps(dict(snap.items), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif fmt == "raw" and snap.format != "properties":
        content = snap.content or ""
        text = content if content.endswith("\n") or not content else content + "\n"
    else:
        text = "".join(
            f"{escape_properties(key, True)}={escape_properties(value, False)}\n"
            for key, value in sorted(snap.items.items())
        )
    _write(sys.stdout, text)
    return EXIT_OK


async def _agent(client: ApolloClient, args: argparse.Namespace) -> int:
    return await _cli_agent.run(client, args, _start)


async def _watch(client: ApolloClient, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    seen = 0
    arrow = "→" if _encodable(sys.stdout, "→") else "->"

    async def show(event: ConfigChangeEvent) -> None:
        try:
            _print_event(event)
        except BrokenPipeError:  # `aioapollo watch | head -1`: the reader has gone
            _silence_stdout()
            stop.set()

    def _print_event(event: ConfigChangeEvent) -> None:
        nonlocal seen
        for key in sorted(event.changes):
            change = event.changes[key]
            if args.json:
                line = json.dumps(
                    {
                        "namespace": event.namespace,
                        "key": key,
                        "change": change.change_type.value,
                        "old": change.old_value,
                        "new": change.new_value,
                        "release_key": event.snapshot.release_key,
                    },
                    ensure_ascii=False,
                )
            else:
                old = _show(change.old_value, change.change_type is ChangeType.ADDED)
                new = _show(change.new_value, change.change_type is ChangeType.DELETED)
                line = f"[{event.namespace}] {key}: {old} {arrow} {new}"
            _write(sys.stdout, line + "\n")
        seen += 1
        if args.count is not None and seen >= args.count:
            stop.set()

    client.on_change(show)
    with _signals_set(stop):
        await _start(client)
        try:
            _write(
                sys.stderr,
                f"watching {client.app_id}/{client.options.cluster}: "
                f"{', '.join(client.namespaces)} (Ctrl-C to stop)\n",
            )
            await stop.wait()
        finally:
            await client.aclose()
    return EXIT_OK


def _show(value: str | None, absent: bool) -> str:
    if absent or value is None:
        return "(absent)"
    return json.dumps(value, ensure_ascii=False)


def _signals_set(event: asyncio.Event) -> contextlib.AbstractContextManager[None]:
    """SIGINT/SIGTERM set ``event`` (for a clean exit 0) while inside; main thread only."""
    return signal_handlers(
        (sig, lambda _sig: event.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _encodable(stream: TextIO, text: str) -> bool:
    try:
        text.encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _write(stream: TextIO, text: str) -> None:
    if not _encodable(stream, text):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    stream.write(text)
    stream.flush()
