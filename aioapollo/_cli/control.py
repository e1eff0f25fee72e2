"""``aioapollo publish`` and ``aioapollo delete``: drive an ``aioapollo serve`` test server.

TEST SERVER ONLY. These commands call the test server's control API under ``/__aioapollo__/``;
a real Apollo has no such API (its releases are made in the Apollo portal), and pointed at one
they fail with exit code 2 without changing anything.

They keep trying to connect for ``--timeout`` seconds, so ``aioapollo serve ... &`` followed at
once by ``aioapollo publish ...`` works. Values are sent, never printed or logged; the control
token is sent in a header and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
from yarl import URL

from .._apollo.wire import FORMATS, namespace_format
from .common import (
    EXIT_AUTH,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandFailed,
    at_least_one,
    positive_seconds,
)
from .serve import CONTROL_TOKEN_ENV

__all__ = ["CONTROL_COMMANDS", "add_commands", "run"]

CONTROL_COMMANDS = ("publish", "delete")
DEFAULT_SERVER = "http://127.0.0.1:8080"
_ONLY = "TEST SERVER ONLY"
_FILE_FORMATS = ", ".join(sorted(FORMATS - {"properties"}))


def add_commands(sub: Any) -> None:
    """Add ``publish`` and ``delete`` to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        f"the test server ({_ONLY}: `aioapollo serve`, never a real Apollo)"
    )
    group.add_argument(
        "--server",
        metavar="URL",
        help="the test server's URL (default: the first URL of APOLLO_CONFIG_SERVICE, "
        f"else {DEFAULT_SERVER})",
    )
    group.add_argument("--app-id", help="the appId (env APP_ID)")
    group.add_argument("-n", "--namespace", default="application", help="(application)")
    group.add_argument("--cluster", help="cluster (APOLLO_CLUSTER, else default)")
    group.add_argument(
        "--control-token",
        metavar="TOKEN",
        help=f"the server's control token, needed off loopback (env {CONTROL_TOKEN_ENV}, "
        "preferred: a flag shows in `ps`)",
    )
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=15.0,
        help="seconds to keep trying to reach the server (15)",
    )
    epilog = (
        f"{_ONLY}: this drives the control API of `aioapollo serve` (/__aioapollo__/). "
        "A real Apollo has no such API; its releases are made in the Apollo portal."
    )
    publish = sub.add_parser(
        "publish",
        parents=[common],
        help=f"[{_ONLY}] release a namespace on an `aioapollo serve` test server",
        description=f"{_ONLY}. Release a namespace on an `aioapollo serve` test server and "
        "print the new releaseKey. A release is whole: keys you leave out are gone from it.",
        epilog=epilog,
    )
    publish.add_argument(
        "pairs", nargs="*", metavar="KEY=VALUE", help="the keys of a properties namespace"
    )
    source = publish.add_mutually_exclusive_group()
    source.add_argument(
        "--file",
        metavar="PATH",
        help=f"the text of a {_FILE_FORMATS} namespace, read from PATH (- for stdin)",
    )
    source.add_argument("--content", metavar="TEXT", help="the text, given here")
    publish.add_argument(
        "--gray-ip",
        action="append",
        metavar="IP",
        help="make it a gray release for clients with this IP ('*': all); repeatable",
    )
    publish.add_argument(
        "--gray-label",
        action="append",
        metavar="LABEL",
        help="make it a gray release for clients with this label; repeatable",
    )
    publish.add_argument(
        "--public", action="store_true", help="make the namespace public, owned by this app"
    )
    publish.add_argument(
        "--wait-polls",
        type=at_least_one,
        metavar="N",
        help="first wait (up to --timeout) until N clients are long-polling the server, e.g. "
        "an `aioapollo watch` started just before",
    )
    delete = sub.add_parser(
        "delete",
        parents=[common],
        help=f"[{_ONLY}] withdraw a namespace's release on an `aioapollo serve` test server",
        description=f"{_ONLY}. Withdraw a namespace's release on an `aioapollo serve` test server "
        "(clients then get 404 for it), or with --gray its gray release. Exit code 1 when "
        "there is nothing to delete.",
        epilog=epilog,
    )
    delete.add_argument(
        "--gray", action="store_true", help="delete the gray release, not the main one"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``publish`` or ``delete``; raises :class:`CommandFailed`."""
    base = _server_url(args.server)
    app_id = args.app_id or os.environ.get("APP_ID")
    if not app_id:
        raise CommandFailed(EXIT_USAGE, "no appId: set APP_ID or pass --app-id")
    cluster = args.cluster or os.environ.get("APOLLO_CLUSTER") or "default"
    token = args.control_token or os.environ.get(CONTROL_TOKEN_ENV) or None
    call = _Control(base, token, args.timeout, args.command)
    if args.command == "publish":
        body = _publish_body(args, app_id, cluster)
        key: str = asyncio.run(call.publish(body, args.wait_polls))
        sys.stdout.write(key + "\n")
        sys.stdout.flush()
        return EXIT_OK
    kind = "gray" if args.gray else "releases"
    parts = [kind, app_id, cluster, args.namespace]
    asyncio.run(call.delete(parts))
    return EXIT_OK


def _server_url(flag: str | None) -> URL:
    text = flag or (os.environ.get("APOLLO_CONFIG_SERVICE") or "").split(",")[0].strip()
    try:
        url = URL(text or DEFAULT_SERVER)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        where = "--server" if flag else "APOLLO_CONFIG_SERVICE"
        raise CommandFailed(EXIT_USAGE, f"{where} must be an http:// or https:// URL")
    return url.with_user(None).with_query(None).with_fragment(None)


def _publish_body(args: argparse.Namespace, app_id: str, cluster: str) -> dict[str, Any]:
    namespace: str = args.namespace
    body: dict[str, Any] = {"appId": app_id, "namespace": namespace, "cluster": cluster}
    is_file = namespace_format(namespace) != "properties"
    text = args.content
    if args.file is not None:
        text = _read(args.file)
    if is_file:
        if args.pairs:
            raise CommandFailed(
                EXIT_USAGE,
                f"{namespace!r} is a {namespace_format(namespace)} namespace: its release is "
                "one text, not keys; give it with --file PATH or --content TEXT",
            )
        if text is None:
            raise CommandFailed(EXIT_USAGE, f"give the text of {namespace!r} with --file/--content")
        body["content"] = text
    else:
        if text is not None:
            raise CommandFailed(
                EXIT_USAGE,
                f"{namespace!r} is a properties namespace: give KEY=VALUE pairs (--file and "
                f"--content are for {_FILE_FORMATS} namespaces)",
            )
        if not args.pairs:
            raise CommandFailed(EXIT_USAGE, "nothing to publish: give KEY=VALUE pairs")
        body["items"] = _pairs(args.pairs)
    if args.public:
        body["public"] = True
    if args.gray_ip:
        body["grayIps"] = args.gray_ip
    if args.gray_label:
        body["grayLabels"] = args.gray_label
    return body


def _pairs(pairs: list[str]) -> dict[str, str]:
    items: dict[str, str] = {}
    for index, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        if not sep or not key:  # the message never repeats the argument: it may be a value
            what = "has no '='" if not sep else "has an empty key"
            raise CommandFailed(EXIT_USAGE, f"KEY=VALUE argument {index} {what}")
        items[key] = value
    return items


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CommandFailed(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandFailed(EXIT_USAGE, f"{path} is not UTF-8 text") from None


class _Control:
    """Requests to one test server's control API, retrying the connection until a deadline."""

    def __init__(self, base: URL, token: str | None, timeout: float, command: str) -> None:
        # Imported here: `get` and `watch` need not load the test server's modules.
        from ..testing._routes.control import CONTROL_PREFIX, CONTROL_TOKEN_HEADER

        self.base = base
        self.command = command
        self.prefix = CONTROL_PREFIX
        self.headers = {CONTROL_TOKEN_HEADER: token} if token else {}
        self.timeout = timeout
        self.deadline = 0.0

    async def publish(self, body: dict[str, Any], wait_polls: int | None) -> str:
        async with self._session() as session:
            if wait_polls:
                await self._wait_polls(session, wait_polls)
            reply = await self._call(session, "POST", ["publish"], body)
        key = reply.get("releaseKey") if isinstance(reply, dict) else None
        if not isinstance(key, str):
            raise CommandFailed(EXIT_UNAVAILABLE, f"{self.base} did not answer with a releaseKey")
        return key

    async def delete(self, parts: list[str]) -> None:
        async with self._session() as session:
            await self._call(session, "DELETE", parts)

    def _session(self) -> aiohttp.ClientSession:
        self.deadline = asyncio.get_running_loop().time() + self.timeout
        timeout = aiohttp.ClientTimeout(total=max(self.timeout, 10.0), sock_connect=5.0)
        return aiohttp.ClientSession(timeout=timeout, headers=self.headers)

    async def _wait_polls(self, session: aiohttp.ClientSession, wanted: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            health = await self._call(session, "GET", ["health"])
            held = health.get("heldPolls", 0) if isinstance(health, dict) else 0
            if isinstance(held, int) and held >= wanted:
                return
            if loop.time() >= self.deadline:
                raise CommandFailed(
                    EXIT_UNAVAILABLE,
                    f"{held} of {wanted} clients were long-polling {self.base} after "
                    f"{self.timeout:g}s",
                )
            await asyncio.sleep(0.05)

    async def _call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        parts: list[str],
        body: dict[str, Any] | None = None,
    ) -> Any:
        url = self.base.with_path(self.prefix).joinpath(*parts)
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with session.request(method, url, json=body) as resp:
                    status, raw = resp.status, await resp.read()
                break
            except aiohttp.ClientConnectorDNSError:
                raise CommandFailed(
                    EXIT_UNAVAILABLE, f"cannot resolve the host of {self.base}"
                ) from None
            except aiohttp.ClientConnectorError as exc:
                if loop.time() >= self.deadline:
                    reason = exc.os_error.strerror or exc.os_error
                    raise CommandFailed(
                        EXIT_UNAVAILABLE,
                        f"cannot reach the test server at {self.base} ({reason}) after "
                        f"{self.timeout:g}s; is `aioapollo serve` running there?",
                    ) from None
                await asyncio.sleep(0.1)  # not listening yet: `serve &` may still be starting
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
                raise CommandFailed(EXIT_UNAVAILABLE, f"{self.base}: {reason}") from None
        return self._reply(status, raw)

    def _reply(self, status: int, raw: bytes) -> Any:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        # The control API's errors are exactly {"error": "..."}; anything else is not ours.
        ours = isinstance(body, dict) and set(body) == {"error"}
        error = str(body["error"]) if ours and isinstance(body, dict) else ""
        if status == 200 and body is not None:
            return body
        if ours and status == 401:
            hint = (
                "was refused"
                if self.headers
                else f"is needed: set {CONTROL_TOKEN_ENV} (or pass --control-token)"
            )
            raise CommandFailed(EXIT_AUTH, f"the test server's control token {hint}")
        if ours and status == 400:
            raise CommandFailed(EXIT_USAGE, error)
        if ours and status == 404 and not error.startswith("no control endpoint"):
            raise CommandFailed(EXIT_MISSING, f"nothing to delete: {error}")
        if status in (404, 405) or (status == 200 and body is None):
            raise CommandFailed(
                EXIT_USAGE,
                f"{self.base} is not an aioapollo test server (it has no {self.prefix}/ "
                f"API): `aioapollo {self.command}` works only with `aioapollo serve`; a real "
                "Apollo's releases are made in its portal",
            )
        raise CommandFailed(EXIT_UNAVAILABLE, f"{self.base} answered HTTP {status}")
