"""TLS: certificates are verified by default; an ``ssl.SSLContext`` can trust a private CA.

The test server speaks plain HTTP, so each test puts a TLS-terminating relay in front of it
(a real TLS listener on loopback, with a certificate made at test time by ``trustme``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest

from aioapollo import ApolloClient, ApolloConnectionError, NamespaceUnavailableError, Source
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST, Events

trustme = pytest.importorskip("trustme")


@contextlib.asynccontextmanager
async def tls_relay(upstream_port: int, context: ssl.SSLContext) -> AsyncIterator[str]:
    """An https:// URL whose connections are decrypted and piped to ``upstream_port``."""
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    listener = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        listener.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await listener.wait_closed()


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_certificates_are_verified_by_default(server: ApolloTestServer) -> None:
    ca = trustme.CA()
    async with tls_relay(server.port, _server_context(ca, "127.0.0.1")) as url:
        client = ApolloClient(APP, config_server=url, cache_dir=None, **FAST)
        with pytest.raises(NamespaceUnavailableError) as info:
            await client.start()
        cause = info.value.causes["application"]
        assert isinstance(cause, ApolloConnectionError)
        assert "TLS" in str(cause) and "ssl=" in str(cause)
        assert not [r for r in server.requests if r.path.startswith("/configs/")]


async def test_an_ssl_context_trusting_the_ca_works_end_to_end(server: ApolloTestServer) -> None:
    ca = trustme.CA()
    async with tls_relay(server.port, _server_context(ca, "127.0.0.1")) as url:
        events = Events()
        client = ApolloClient(APP, config_server=url, cache_dir=None, ssl=_trusting(ca), **FAST)
        client.on_change(events)
        async with client:
            assert client.sources["application"] is Source.REMOTE
            server.publish(APP, "application", {"greeting": "over tls"})
            assert (await events.next()).changes["greeting"].new_value == "over tls"
        assert any(r.path == "/notifications/v2" for r in server.requests)


async def test_host_name_is_verified_too(server: ApolloTestServer) -> None:
    ca = trustme.CA()  # trusted, but the certificate names another host
    async with tls_relay(server.port, _server_context(ca, "config.example.com")) as url:
        client = ApolloClient(APP, config_server=url, cache_dir=None, ssl=_trusting(ca), **FAST)
        with pytest.raises(NamespaceUnavailableError) as info:
            await client.start()
        assert "TLS" in str(info.value.causes["application"])


async def test_verification_can_only_be_turned_off_explicitly(server: ApolloTestServer) -> None:
    ca = trustme.CA()
    async with tls_relay(server.port, _server_context(ca, "127.0.0.1")) as url:
        async with ApolloClient(APP, config_server=url, cache_dir=None, ssl=False, **FAST) as c:
            assert await c.get("greeting") == "hello"
    with pytest.raises(TypeError, match="SSLContext"):
        ApolloClient(APP, config_server=url, ssl="no")
