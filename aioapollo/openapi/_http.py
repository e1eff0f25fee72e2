"""The portal client's HTTP layer: one aiohttp session, the token header, timeouts, retries
(reads and idempotent updates only) and the mapping of error replies to exceptions."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import random
import re
import ssl as _ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from .._exceptions import ApolloConnectionError, ApolloResponseError, ApolloTimeoutError
from ._errors import (
    NamespaceLockedError,
    OpenApiAuthError,
    OpenApiBadRequestError,
    OpenApiConflictError,
    OpenApiError,
    OpenApiForbiddenError,
    OpenApiNotFoundError,
    OpenApiRateLimitedError,
    OpenApiServerError,
    OpenApiUnsupportedError,
    PublishNotAllowedError,
)
from ._spec import Operation

__all__ = [
    "USER_TOKEN_PREFIX",
    "HttpSettings",
    "PortalHttp",
    "encode_key",
    "plain_key",
    "redact_url",
    "resolve_token_kind",
]

#: How Apollo 3.0's user access tokens begin.
USER_TOKEN_PREFIX = "apollo_pat_"
_TOKEN_KINDS = ("auto", "consumer", "user")


def resolve_token_kind(token: str, kind: str) -> str:
    """``"user"`` (sent as ``Bearer <token>``) or ``"consumer"`` (sent as it is); ``"auto"``
    picks by the token's form: user access tokens start with ``apollo_pat_``."""
    if kind not in _TOKEN_KINDS:
        raise ValueError(f"token_kind must be one of {', '.join(_TOKEN_KINDS)}")
    if kind == "auto":
        return "user" if token.startswith(USER_TOKEN_PREFIX) else "consumer"
    return kind


logger = logging.getLogger("aioapollo.openapi")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")
_LOCKED = re.compile(r"namespace:(?P<ns>.*) is modified by (?P<who>.+)")
_ROUTE_MISSING = ("NoResourceFoundException", "NoHandlerFoundException")
_METHOD_MISSING = "HttpRequestMethodNotSupportedException"


def redact_url(url: str) -> str:
    """``url`` without ``user:password@``, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def plain_key(key: str) -> bool:
    """Whether an item key can go into a path segment as it is (else: the encoded-key path)."""
    return _PLAIN_KEY.fullmatch(key) is not None


def encode_key(key: str) -> str:
    """The key as the ``encodedItems`` paths take it: URL-safe Base64 of its UTF-8 bytes."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts, retries and TLS of a portal client (see ``ApolloOpenApiClient``)."""

    timeout: float = 10.0
    connect_timeout: float = 5.0
    retries: int = 3
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    ssl: _ssl.SSLContext | bool | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    #: The longest ``Retry-After`` of a 429 that is waited out; a longer one is raised.
    retry_after_max: float = 30.0


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    retry_after: float | None


class PortalHttp:
    """Sends OpenAPI requests for one portal. Open and close it inside the loop that uses it."""

    def __init__(
        self, base_url: str, token: str, settings: HttpSettings, token_kind: str = "auto"
    ) -> None:
        self._base = base_url.rstrip("/")
        self._where = redact_url(self._base)
        self.token_kind = resolve_token_kind(token, token_kind)
        self._authorization = f"Bearer {token}" if self.token_kind == "user" else token
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout, sock_connect=settings.connect_timeout
        )

    @property
    def where(self) -> str:
        """The portal's URL, redacted."""
        return self._where

    @property
    def is_open(self) -> bool:
        return self._session is not None

    async def open(self) -> None:
        """Create the session (inside the running loop)."""
        if self._session is None:
            ssl_option = True if self._settings.ssl is None else self._settings.ssl
            connector = aiohttp.TCPConnector(limit=16, ssl=ssl_option)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            await asyncio.sleep(0)  # lets the transports close, so no ResourceWarning follows

    async def call(
        self,
        op: Operation,
        params: Mapping[str, str | int],
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send ``op`` and return its decoded JSON body (``None`` for an empty one).

        Args:
            op: The operation.
            params: Its path parameters.
            query: Query parameters; ``None`` values are left out.
            body: The JSON body, if the operation takes one.
            missing_ok: Return ``None`` for a 404 that says the thing does not exist (not for
                a missing route), and for a 404 to a retried request (a delete whose first
                attempt succeeded).

        Raises:
            OpenApiError: The portal refused (a subclass per status).
            ApolloConnectionError: Unreachable (``ApolloTimeoutError``: too slow) after retries.
            ApolloResponseError: A 200 whose body is not JSON.
        """
        path = op.path
        for name, value in params.items():
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        query_text = "&".join(
            f"{quote(name, safe='')}={quote(_query_value(value), safe='')}"
            for name, value in (query or {}).items()
            if value is not None
        )
        target = path + (f"?{query_text}" if query_text else "")
        where = f"{self._where}{path}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        attempt = 0
        while True:
            try:
                reply = await self._send(op.method, target, data, where)
            except ApolloConnectionError as exc:
                if not op.retry or attempt >= self._settings.retries:
                    raise
                why: str = type(exc).__name__
                retry_after = None
                error = None
            else:
                if reply.status < 300:
                    return _decode(reply.body, where)
                error = _error(op, reply, where)
                gone = isinstance(error, OpenApiNotFoundError) and bool(error.exception)
                if gone and (missing_ok or (attempt > 0 and op.method == "DELETE")):
                    return None  # not there (or deleted by the attempt whose reply was lost)
                if not op.retry or reply.status not in _RETRY_STATUSES:
                    raise error
                if attempt >= self._settings.retries:
                    raise error
                why = f"HTTP {reply.status}"
                retry_after = reply.retry_after
            cap = min(self._settings.backoff_max, self._settings.backoff_initial * 2**attempt)
            delay = random.uniform(cap / 2, cap)  # jittered, never zero
            if retry_after is not None:
                if retry_after > self._settings.retry_after_max and error is not None:
                    raise error  # the portal asks for a longer wait than the client allows
                delay = max(delay, retry_after)
            attempt += 1
            logger.warning(
                "%s %s: %s; retrying in %.2fs (retry %d of %d)",
                op.method,
                where,
                why,
                delay,
                attempt,
                self._settings.retries,
            )
            await asyncio.sleep(delay)

    async def _send(self, method: str, target: str, data: bytes | None, where: str) -> _Reply:
        session = self._session
        if session is None:
            raise RuntimeError("the portal session is not open")
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        url = URL(self._base + target, encoded=True)
        # aiohttp warns about a large body given as bytes (it would be copied in one go).
        payload = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
        try:
            async with session.request(
                method, url, data=payload, headers=headers, allow_redirects=False
            ) as resp:
                body = await _read(resp, where, self._settings.max_body_bytes)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s %s -> %d", method, where, resp.status)
                return _Reply(resp.status, body, _retry_after(resp.headers.get("Retry-After")))
        except TimeoutError as exc:
            raise ApolloTimeoutError(
                f"{method} {where}: the portal did not answer within {self._settings.timeout:g}s"
            ) from exc
        except aiohttp.ClientSSLError as exc:
            raise ApolloConnectionError(
                f"{method} {where}: TLS failed ({type(exc).__name__}); is the portal's "
                "certificate trusted? Pass ssl=ssl.SSLContext(...) that trusts its CA"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ApolloConnectionError(
                f"{method} {where}: {_failure(exc)} ({type(exc).__name__})"
            ) from exc


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _read(resp: aiohttp.ClientResponse, where: str, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:
            raise ApolloResponseError(f"{where}: reply exceeds {cap} bytes; cut off")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


def _failure(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host name not found (DNS)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the portal closed the connection without a reply"
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return "connection failed"


def _decode(body: bytes, where: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise ApolloResponseError(f"{where}: the portal's reply is not JSON") from None


def _error(op: Operation, reply: _Reply, where: str) -> OpenApiError:
    """The exception for an error reply, with the portal's message (never the token)."""
    status = reply.status
    try:
        data = json.loads(reply.body) if reply.body.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = data.get("message") if isinstance(data.get("message"), str) else None
    exception = data.get("exception") if isinstance(data.get("exception"), str) else None
    said = f": {message}" if message else ""
    kwargs: dict[str, Any] = {
        "status": status,
        "url": where,
        "operation": op.id,
        "server_message": message,
        "exception": exception,
    }
    route_missing = (status == 404 and not exception) or any(
        name in (exception or "") for name in _ROUTE_MISSING
    )
    if route_missing or status == 405 or _METHOD_MISSING in (exception or ""):
        if op.original:
            return OpenApiNotFoundError(
                f"{op.method} {where}: the portal has no such endpoint (HTTP {status}); is the "
                "portal URL right, with its path prefix if it is served under one?",
                **kwargs,
            )
        return OpenApiUnsupportedError(
            f"this portal does not support '{op.summary}' ({op.id}, HTTP {status} from "
            f"{where}): the operation came with a later Apollo portal; upgrade the portal or "
            "do without it",
            **kwargs,
        )
    text = f"{op.summary} ({op.method} {where}) failed with HTTP {status}{said}"
    if status == 400:
        locked = _LOCKED.search(message or "")
        if locked:
            return NamespaceLockedError(
                f"{text}. Another editor holds the namespace lock until the namespace is published",
                locked_by=locked.group("who").strip(),
                **kwargs,
            )
        if "published by yourself" in (message or ""):
            return PublishNotAllowedError(
                f"{text}. The namespace lock is on and this operator edited the namespace, so "
                "another operator must publish it (or use an emergency publish, if the portal "
                "allows it)",
                **kwargs,
            )
        return OpenApiBadRequestError(text, **kwargs)
    if status == 401:
        return OpenApiAuthError(
            f"{text}. The portal does not accept the token: check APOLLO_OPENAPI_TOKEN (or "
            "token=); tokens are made in the portal under Open Platform Authorization",
            **kwargs,
        )
    if status == 403:
        return OpenApiForbiddenError(
            f"{text}. The token has no grant for this: a portal admin can grant its consumer "
            "the app or namespace (and release rights, to publish)",
            **kwargs,
        )
    if status == 404:
        return OpenApiNotFoundError(text, **kwargs)
    if status == 409:
        return OpenApiConflictError(text, **kwargs)
    if status == 429:
        wait = f"; the portal asks to wait {reply.retry_after:g}s" if reply.retry_after else ""
        return OpenApiRateLimitedError(
            f"{text}. The token's rate limit was hit{wait}",
            retry_after=reply.retry_after,
            **kwargs,
        )
    if status >= 500:
        return OpenApiServerError(text, **kwargs)
    return OpenApiError(text, **kwargs)
