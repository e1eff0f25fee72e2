"""The aiohttp half of the transport: imported only once this process talks to Apollo.

:class:`~aioapollo._apollo.transport.Transport` imports this module (and with it aiohttp)
off the event loop at its first request, so a process whose client only follows a sharing
leader never loads aiohttp at all. Every ``isinstance`` check against an aiohttp exception
lives here, where aiohttp is loaded.
"""

from __future__ import annotations

import asyncio
import ctypes
import os

import aiohttp
from yarl import URL

from .._config import ClientOptions
from .._exceptions import ApolloConnectionError, ApolloResponseError, ApolloTimeoutError
from .reply import Reply

__all__ = ["Session", "closed_after_sending"]


class Session:
    """One aiohttp session with the client's limits and timeouts (made inside its loop)."""

    __slots__ = ("_cap", "_fetch_timeout", "_poll_timeout", "_session")

    def __init__(self, options: ClientOptions) -> None:
        self._cap = options.max_body_bytes
        self._fetch_timeout = aiohttp.ClientTimeout(
            total=options.read_timeout + options.connect_timeout,
            sock_connect=options.connect_timeout,
            sock_read=options.read_timeout,
        )
        self._poll_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=options.connect_timeout, sock_read=options.poll_timeout
        )
        ssl_option = True if options.ssl is None else options.ssl
        connector = aiohttp.TCPConnector(limit=32, limit_per_host=8, ssl=ssl_option)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._fetch_timeout, auto_decompress=True
        )

    @staticmethod
    def raw_path(base: str) -> str:
        """The path of ``base`` as sent on the wire (what a signature covers)."""
        return URL(base).raw_path

    async def close(self) -> None:
        await self._session.close()
        # Lets the transports' connection_lost run, so no ResourceWarning follows.
        await asyncio.sleep(0)

    def abandon(self) -> None:
        """Keep the session referenced, untouched, for the life of this process (see
        ``Transport.abandon``).

        The reference is one nobody owns, so the session outlives the interpreter's own
        teardown too: finalizing it would close sockets that are not this process's to close
        (after fork) and warn about an unclosed session."""
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._session))

    async def get(self, url: str, headers: dict[str, str], where: str, *, long_poll: bool) -> Reply:
        """GET the already escaped ``url``, sent exactly as given; errors become ours."""
        timeout = self._poll_timeout if long_poll else self._fetch_timeout
        try:
            async with self._session.get(
                URL(url, encoded=True), headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                body = await self._read_body(resp, where)
                return Reply(resp.status, body, resp.headers.get("Date"), bool(headers))
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
        cap = self._cap
        length = resp.content_length
        if length is not None and length > cap:
            raise ApolloResponseError(
                f"{where}: reply of {length} bytes exceeds max_body_bytes={cap}"
            )
        if length is not None and resp.headers.get("Content-Encoding") is None:
            # A declared length within the cap, and no decompression that could grow it: the
            # body is at most that long, read in one call.
            return await resp.read()
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


def closed_after_sending(cause: BaseException | None) -> bool:
    """Whether a request's failure (the ``__cause__`` of our connection error) means the peer
    closed or reset the connection after the request was sent (not: refused, unresolvable,
    TLS, or a timeout)."""
    if isinstance(cause, aiohttp.ClientConnectorError | ConnectionRefusedError | TimeoutError):
        return False
    return isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | ConnectionError,
    )
