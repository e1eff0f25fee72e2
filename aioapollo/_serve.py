"""``aioapollo serve``: the in-process Apollo test server, run standalone for local development."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from contextlib import suppress

__all__ = ["add_arguments", "serve"]

logger = logging.getLogger("aioapollo.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` command's flags."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for any free one (8080)")
    parser.add_argument(
        "--data", metavar="FILE", help="seed releases from a JSON or YAML file (see the README)"
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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="also log every request")


async def _serve_until_stopped(args: argparse.Namespace) -> int:
    from .testing import ApolloTestServer
    from .testing._seed import SeedError, apply_seed, load_seed

    server = ApolloTestServer(host=args.host, port=args.port, max_requests=10_000)
    try:
        count = apply_seed(server, load_seed(args.data)) if args.data else 0
    except (SeedError, TypeError, ValueError) as exc:
        print(f"aioapollo serve: {exc}", file=sys.stderr)
        return 2
    if args.hold_seconds is not None:
        server.hold_seconds = args.hold_seconds
    if args.incremental_sync:
        server.incremental_sync = True
    try:
        await server.start()
    except OSError as exc:
        print(f"aioapollo serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError, ValueError):  # Windows, not main thread
            loop.add_signal_handler(signum, stop.set)
    try:
        logger.info(
            "serving Apollo on %s (%d releases seeded, hold %gs), control API: %s/__aioapollo__/",
            server.url,
            count,
            server.hold_seconds,
            server.url,
        )
        print(f"aioapollo test server on {server.url}", flush=True)
        await stop.wait()
        logger.info("stopping")
    finally:
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
    try:
        return asyncio.run(_serve_until_stopped(args))
    except KeyboardInterrupt:  # no signal handlers (Windows)
        return 0
