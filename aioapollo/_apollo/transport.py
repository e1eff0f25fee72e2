"""The HTTP layer: one aiohttp session per client, signing, timeouts and error mapping.

URLs are built as final strings and sent unchanged (``yarl.URL(..., encoded=True)``) so the
bytes on the wire are exactly the bytes that were signed.

aiohttp is loaded lazily: :class:`Transport` imports its aiohttp half
(:mod:`aioapollo._apollo.session`) off the event loop at its first request, so a process
whose client only follows a sharing leader never imports aiohttp. What is left here (the
reply, status errors, diagnosis) needs no aiohttp.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from typing import TYPE_CHECKING

from .._config import ClientOptions, redact_url
from .._exceptions import (
    ApolloAuthError,
    ApolloHTTPStatusError,
    ApolloNotFoundError,
    ClientStateError,
)
from .auth import auth_headers
from .reply import Reply
from .wire import path_escape

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "Reply",
    "Transport",
    "closed_after_sending",
    "config_status_error",
    "load_session_module",
    "status_error",
]

#: |skew| at or above this many seconds makes the config service refuse signed requests.
_SKEW_LIMIT_S = 60.0
_SESSION_MODULE = f"{__package__}.session"


async def load_session_module() -> None:
    """Import aiohttp (and our half that uses it) off the event loop: it takes tens of
    milliseconds of CPU that the loop's other tasks must not wait for. Idempotent."""
    if _SESSION_MODULE not in sys.modules:
        await asyncio.to_thread(importlib.import_module, _SESSION_MODULE)


class Transport:
    """Owns the aiohttp session, opened at the first request in the loop that makes it.

    Nothing is opened before a request needs it: a follower that never polls Apollo never
    opens a session, nor imports aiohttp.
    """

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._session: Session | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether the session exists (a request was made)."""
        return self._session is not None

    async def open(self) -> Session:
        """The session, made now if there is none yet (inside the loop that will use it).

        Raises:
            ClientStateError: The transport was closed (or abandoned).
        """
        if self._session is None:
            if self._closed:
                raise ClientStateError("the client is not started")
            await load_session_module()
            if self._closed:  # closed while aiohttp was being imported
                raise ClientStateError("the client is not started")
            if self._session is None:
                from .session import Session

                self._session = Session(self._options)
        return self._session

    async def close(self) -> None:
        """Close the session, if one was opened; idempotent. No request is made after."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def abandon(self) -> None:
        """Forget the session without touching it (after fork: it belongs to the parent).

        Its sockets are the parent's; closing them here could disturb the parent's TLS state,
        and letting them be collected would warn about an unclosed session. So they are kept
        referenced, untouched, for the life of this process.
        """
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            session.abandon()

    async def get(
        self, base: str, target: str, *, long_poll: bool = False, sign: bool = True
    ) -> Reply:
        """GET ``base + target``; ``target`` is the already escaped path and query."""
        session = self._session or await self.open()
        headers = {}
        secret = self._options.secret
        if sign and secret is not None:
            prefix = session.raw_path(base).rstrip("/")
            headers = auth_headers(self._options.app_id, prefix + target, secret)
        where = redact_url(base) + target.partition("?")[0]
        return await session.get(base + target, headers, where, long_poll=long_poll)


def closed_after_sending(exc: BaseException) -> bool:
    """Whether a connection error means the peer closed or reset the connection after the
    request was sent (not: refused, unresolvable, TLS, or a timeout)."""
    session = sys.modules.get(_SESSION_MODULE)
    if session is None:  # no request was ever made from this process
        return False
    return bool(session.closed_after_sending(exc.__cause__))


def status_error(reply: Reply, where: str) -> ApolloHTTPStatusError:
    """Turn an unexpected status into the matching error, diagnosing 401s."""
    status = reply.status
    where = redact_url(where)
    if status == 404:
        return ApolloNotFoundError(
            f"{where}: not found (404); is this an Apollo config service?", status=404, url=where
        )
    if status == 401 and not reply.signed:
        return ApolloAuthError(
            f"{where}: 401, the app requires an access-key secret and none is configured "
            "(secret= or APOLLO_ACCESS_KEY_SECRET)",
            status=401,
            url=where,
            reason="signature",
        )
    if status == 401:
        skewed = b"RequestTimeTooSkewed" in reply.body or (
            reply.server_time is not None and abs(time.time() - reply.server_time) >= _SKEW_LIMIT_S
        )
        if skewed:
            return ApolloAuthError(
                f"{where}: 401, the local clock is 60 s or more off the server's; fix the clock",
                status=401,
                url=where,
                reason="clock_skew",
            )
        return ApolloAuthError(
            f"{where}: 401, the access-key secret is wrong or missing",
            status=401,
            url=where,
            reason="signature",
        )
    return ApolloHTTPStatusError(f"{where}: unexpected HTTP {status}", status=status, url=where)


def looks_like_apollo(reply: Reply) -> bool:
    """Whether an error reply has the shape of the config service's: an empty body, or a JSON
    object with a ``status`` (Spring Boot's error body, or Apollo's own exception handler).

    A web server that is not Apollo (a proxy's default site, another app) answers with an HTML
    or plain-text page, or JSON of another shape.
    """
    body = reply.body.strip()
    if not body:
        return True
    try:
        value = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return False
    return isinstance(value, dict) and "status" in value


def config_status_error(
    reply: Reply, base: str, options: ClientOptions, namespace: str
) -> ApolloHTTPStatusError:
    """:func:`status_error` for ``/configs``: a 404 names what was asked for and what to check."""
    path = "/".join(path_escape(s) for s in ("configs", options.app_id, options.cluster, namespace))
    where = redact_url(base) + "/" + path
    if reply.status != 404:
        return status_error(reply, where)
    data_center = options.data_center
    asked = f"app id {options.app_id!r}, cluster {options.cluster!r}" + (
        f", data center {data_center!r}" if data_center else ""
    )
    server = (
        "config_server= / APOLLO_CONFIG_SERVICE"
        if options.config_servers
        else "meta_server= / APOLLO_META"
    )
    if not looks_like_apollo(reply):
        message = (
            f"{where}: not found (404), and the reply does not look like Apollo's (Apollo "
            "answers a 404 with an empty body or a JSON error that has a status; this is "
            f"neither): check that {server} points at an Apollo config service, not another "
            "web server"
        )
    else:
        message = (
            f"{where}: not found (404): no release of namespace {namespace!r} for {asked}. "
            "Check that the app id and cluster are spelled right, that the namespace exists "
            f"and has been released, and that {server} points at the right environment's Apollo"
        )
    return ApolloNotFoundError(
        message,
        status=404,
        url=where,
        app_id=options.app_id,
        cluster=options.cluster,
        data_center=data_center,
        namespace=namespace,
    )
