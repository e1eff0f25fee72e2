"""The HTTP layer: one aiohttp session per client, signing, timeouts and error mapping.

URLs are built as final strings and sent unchanged (``yarl.URL(..., encoded=True)``) so the
bytes on the wire are exactly the bytes that were signed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .._config import ClientOptions, redact_url
from .._exceptions import (
    ApolloAuthError,
    ApolloConnectionError,
    ApolloHTTPStatusError,
    ApolloNotFoundError,
    ApolloResponseError,
    ApolloTimeoutError,
    ClientStateError,
)
from .auth import auth_headers
from .wire import path_escape

__all__ = ["Reply", "Transport", "closed_after_sending", "config_status_error", "status_error"]

#: |skew| at or above this many seconds makes the config service refuse signed requests.
_SKEW_LIMIT_S = 60.0
_ABANDONED: list[aiohttp.ClientSession] = []


@dataclass(frozen=True, slots=True)
class Reply:
    """Status, body and the server's ``Date`` (for clock-skew diagnosis) of one response."""

    status: int
    body: bytes
    server_time: float | None
    #: Whether the request carried access-key headers (tells a 401's cause apart).
    signed: bool = False


class Transport:
    """Owns the aiohttp session. Create and close it inside the loop that uses it."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self._fetch_timeout = aiohttp.ClientTimeout(
            total=options.read_timeout + options.connect_timeout,
            sock_connect=options.connect_timeout,
            sock_read=options.read_timeout,
        )
        self._poll_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=options.connect_timeout, sock_read=options.poll_timeout
        )

    async def open(self) -> None:
        """Create the session (must run inside the event loop that will use it)."""
        ssl_option = True if self._options.ssl is None else self._options.ssl
        connector = aiohttp.TCPConnector(limit=32, limit_per_host=8, ssl=ssl_option)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._fetch_timeout, auto_decompress=True
        )

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Lets the transports' connection_lost run, so no ResourceWarning follows.
            await asyncio.sleep(0)

    def abandon(self) -> None:
        """Forget the session without touching it (after fork: it belongs to the parent).

        Its sockets are the parent's; closing them here could disturb the parent's TLS state,
        and letting them be collected would warn about an unclosed session. So they are kept
        referenced, untouched, for the life of this process.
        """
        if self._session is not None:
            _ABANDONED.append(self._session)
            self._session = None

    async def get(
        self, base: str, target: str, *, long_poll: bool = False, sign: bool = True
    ) -> Reply:
        """GET ``base + target``; ``target`` is the already escaped path and query."""
        session = self._session
        if session is None:
            raise ClientStateError("the client is not started")
        headers = {}
        secret = self._options.secret
        if sign and secret is not None:
            prefix = URL(base).raw_path.rstrip("/")
            headers = auth_headers(self._options.app_id, prefix + target, secret)
        url = URL(base + target, encoded=True)
        where = redact_url(base) + target.partition("?")[0]
        timeout = self._poll_timeout if long_poll else self._fetch_timeout
        try:
            async with session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                body = await self._read_body(resp, where)
                return Reply(
                    resp.status, body, _server_time(resp.headers.get("Date")), bool(headers)
                )
        except TimeoutError as exc:
            raise ApolloTimeoutError(f"timed out waiting for {where}") from exc
        except aiohttp.ClientSSLError as exc:
            raise ApolloConnectionError(
                f"{where}: TLS failed ({type(exc).__name__}): is the server's certificate "
                "trusted? Pass ssl=ssl.SSLContext(...) that trusts its CA"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ApolloConnectionError(f"{where}: {_failure(exc)} ({type(exc).__name__})") from exc

    async def _read_body(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        cap = self._options.max_body_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise ApolloResponseError(
                f"{where}: reply of {resp.content_length} bytes exceeds max_body_bytes={cap}"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise ApolloResponseError(f"{where}: reply exceeds max_body_bytes={cap}; cut off")
            chunks.append(chunk)
        return b"".join(chunks)


def _failure(exc: BaseException) -> str:
    """Why a request failed, in words, from the error's type and errno only (an aiohttp
    error's own text may quote the whole URL)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host name not found (DNS)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a reply"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the reply was cut off"
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno).lower()  # "connection refused", "no route to host"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "connection failed"
    return "request failed"


def closed_after_sending(exc: BaseException) -> bool:
    """Whether a connection error means the peer closed or reset the connection after the
    request was sent (not: refused, unresolvable, TLS, or a timeout)."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError | ConnectionRefusedError | TimeoutError):
        return False
    return isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | ConnectionError,
    )


def _server_time(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


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
        return ApolloNotFoundError(
            f"{where}: not found (404), and the reply does not look like Apollo's (Apollo "
            "answers a 404 with an empty body or a JSON error that has a status; this is "
            f"neither): check that {server} points at an Apollo config service, not another "
            "web server",
            status=404,
            url=where,
            app_id=options.app_id,
            cluster=options.cluster,
            data_center=data_center,
            namespace=namespace,
        )
    return ApolloNotFoundError(
        f"{where}: not found (404): no release of namespace {namespace!r} for {asked}. Check "
        "that the app id and cluster are spelled right, that the namespace exists and has "
        f"been released, and that {server} points at the right environment's Apollo",
        status=404,
        url=where,
        app_id=options.app_id,
        cluster=options.cluster,
        data_center=data_center,
        namespace=namespace,
    )
