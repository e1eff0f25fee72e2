"""``aioapollo serve``: the in-process Apollo test server, run standalone for local development."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .common import signal_handlers

if TYPE_CHECKING:
    from ..testing import ApolloTestServer

__all__ = ["CONTROL_TOKEN_ENV", "OPENAPI_TOKEN_ENV", "add_arguments", "port_number", "serve"]

logger = logging.getLogger("aioapollo.cli")

#: Environment variable holding the test server's control token (``serve`` and the CLI).
CONTROL_TOKEN_ENV = "AIOAPOLLO_CONTROL_TOKEN"
#: The portal OpenAPI token ``serve`` accepts (for every app), the one clients send too.
OPENAPI_TOKEN_ENV = "APOLLO_OPENAPI_TOKEN"


def port_number(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0 to 65535), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` command's flags."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8080, help="port, 0 for any free one (8080)"
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="seed releases from a JSON or YAML file (format: 'Seed file format' in "
        "docs/testing.md); with --state, only when the state file does not exist yet",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep releases, secrets and notification ids in FILE (JSON, mode 0600, replaced "
        "atomically on every change) and load them at start: a restart serves the same "
        "releases",
    )
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        help="once listening, write the server's URL to PATH (atomically; removed on exit), "
        "for scripts that wait for the server",
    )
    parser.add_argument(
        "--control-token",
        metavar="TOKEN",
        help=f"token the /__aioapollo__/ control API requires (env {CONTROL_TOKEN_ENV}, "
        "preferred: a flag shows in `ps`); off loopback one is always required, and one is "
        "generated and printed at start when none is given",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=None,
        help="how long /notifications/v2 holds a poll before its 304 (60, like Apollo)",
    )
    parser.add_argument(
        "--incremental-sync", action="store_true", help="answer /configs incrementally"
    )
    parser.add_argument(
        "--namespace-lock",
        action="store_true",
        help="portal OpenAPI: turn on Apollo's namespace lock (namespace.lock.switch): the "
        "first editor of a namespace holds it until it is published, and may not publish it",
    )
    parser.add_argument(
        "--value-length-limit",
        type=int,
        default=None,
        metavar="N",
        help="portal OpenAPI: the longest item value (item.value.length.limit; 20000)",
    )
    parser.add_argument(
        "--openapi-rate-limit",
        type=float,
        default=None,
        metavar="PER_SECOND",
        help="portal OpenAPI: requests per second the token may make; beyond it: 429",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="also log every request")


def _write_ready_file(path: Path, url: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(url + "\n")
        os.chmod(tmp, 0o644)  # the URL is not a secret; readers may be other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class _Setup:
    server: ApolloTestServer
    seeded: int
    token_given: bool
    ready: Path | None


def _prepare(args: argparse.Namespace) -> _Setup:
    """Build and seed the server (no event loop needed); raises ``ValueError`` to exit 2."""
    from ..testing import ApolloTestServer, ReleaseStore
    from ..testing._seed import apply_seed, load_seed

    token = args.control_token or os.environ.get(CONTROL_TOKEN_ENV) or None
    ready = Path(args.ready_file) if args.ready_file else None
    if ready is not None:
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()  # a stale file from an earlier run must not look ready
    restored = bool(args.state) and Path(args.state).exists()
    # Ids above the current time in ms: above any earlier run's, as Apollo's only grow.
    store = ReleaseStore(state_file=args.state, notification_id_base=int(time.time() * 1000))
    server = ApolloTestServer(
        host=args.host, port=args.port, max_requests=10_000, store=store, control_token=token
    )
    seed = load_seed(args.data) if args.data else {}
    count = apply_seed(server, seed, releases=not restored)
    if restored:
        logger.info(
            "loaded state from %s%s",
            args.state,
            "; the seed's apps were not applied (delete the state file to seed again)"
            if args.data
            else "",
        )
    openapi_token = os.environ.get(OPENAPI_TOKEN_ENV, "").strip()
    if openapi_token:  # the portal OpenAPI at /openapi/v1, for every app, env DEV
        server.add_openapi_token(
            openapi_token,
            apps=["*"],
            create_apps=True,
            rate_limit=getattr(args, "openapi_rate_limit", None),
        )
        logger.info("portal OpenAPI on: the token in %s is accepted", OPENAPI_TOKEN_ENV)
    if args.hold_seconds is not None:
        server.hold_seconds = args.hold_seconds
    if args.incremental_sync:
        server.incremental_sync = True
    server.namespace_lock = bool(getattr(args, "namespace_lock", False))
    limit = getattr(args, "value_length_limit", None)
    if limit is not None:
        if limit < 1:
            raise ValueError("--value-length-limit must be positive")
        server.value_length_limit = limit
    rate = getattr(args, "openapi_rate_limit", None)
    if rate is not None and not rate > 0:
        raise ValueError("--openapi-rate-limit must be positive")
    return _Setup(server, count, token is not None, ready)


async def _serve_until_stopped(setup: _Setup, args: argparse.Namespace) -> int:
    server, ready = setup.server, setup.ready
    try:
        await server.start()
    except OSError as exc:
        print(f"aioapollo serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    wrote_ready = False
    # The handlers go after the server has closed, while the loop is open: removing them with
    # the loop leaves a moment in which a second SIGTERM (`kill` twice) finds its wakeup fd
    # closed and prints a traceback. Not on Windows, nor off the main thread.
    with signal_handlers(
        (signum, lambda _sig: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)
    ):
        try:
            logger.info(
                "serving Apollo on %s (%d releases seeded, hold %gs), "
                "control API: %s/__aioapollo__/%s",
                server.url,
                setup.seeded,
                server.hold_seconds,
                server.url,
                " (control token required)" if server.control_token else "",
            )
            if server.control_token is not None and not setup.token_given:
                print(
                    f"control token for {server.url}/__aioapollo__/ "
                    f"(export {CONTROL_TOKEN_ENV}=... for the aioapollo CLI): "
                    f"{server.control_token}",
                    flush=True,
                )
            print(f"aioapollo test server ready on {server.url}", flush=True)
            if ready is not None:
                try:
                    _write_ready_file(ready, server.url)
                    wrote_ready = True
                except OSError as exc:
                    print(f"aioapollo serve: cannot write {ready}: {exc}", file=sys.stderr)
                    return 2
            await stop.wait()
            logger.info("stopping")
        finally:
            if wrote_ready and ready is not None:
                with contextlib.suppress(OSError):
                    ready.unlink()
            await server.close()
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run the test server until SIGINT/SIGTERM; returns the exit code (0 on a clean stop)."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    from ..testing._seed import SeedError

    try:
        setup = _prepare(args)
    except (SeedError, TypeError, ValueError) as exc:
        print(f"aioapollo serve: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_until_stopped(setup, args))
    except KeyboardInterrupt:  # no signal handlers (Windows)
        return 0
