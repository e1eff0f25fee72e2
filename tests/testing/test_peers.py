"""Fidelity: third-party Python Apollo clients from PyPI run against the test server.

Each peer does an initial load, sees a publish through its own long poll, and has its signed
requests accepted. Observations about the peers are in the README section.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from aioapollo.testing import ApolloTestServer, RecordedRequest

pytestmark = pytest.mark.peers

APP = "peer-app"
SECRET = "0123456789abcdef0123456789abcdef"


def is_poll(status: int) -> Callable[[RecordedRequest], bool]:
    return lambda r: r.path == "/notifications/v2" and r.status == status


def assert_all_signed_and_accepted(requests: list[RecordedRequest]) -> None:
    assert requests
    for request in requests:
        assert request.headers["Authorization"].startswith(f"Apollo {APP}:"), request
        if request.status is None:  # a long poll the client abandoned when it closed
            assert request.path == "/notifications/v2", request
        else:
            assert request.status in (200, 304), request


@pytest.fixture
def server(apollo_server: ApolloTestServer) -> ApolloTestServer:
    apollo_server.publish(APP, "application", {"greeting": "hello", "timeout": "30"})
    apollo_server.set_secret(APP, SECRET)
    return apollo_server


async def test_papollo_async(server: ApolloTestServer) -> None:
    papollo = pytest.importorskip("papollo")
    changed = asyncio.Event()

    async def on_change(namespace: str, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        if new.get("greeting") == "bonjour":
            changed.set()

    async with papollo.AsyncApollo(server.url, APP, secret=SECRET, ip="10.0.0.1", watch=True) as c:
        c.add_listener(on_change)
        assert await c.get("greeting") == "hello"
        async with asyncio.timeout(10):
            await server.wait_for_request(is_poll(304))  # a hold timed out: 304, polled again
            await server.wait_for_polls(1)
        server.publish(APP, "application", {"greeting": "bonjour"})
        async with asyncio.timeout(10):
            await changed.wait()
        assert await c.get("timeout") is None
    assert_all_signed_and_accepted(server.requests)
    # It sends the releaseKey back %2B-escaped etc.: its refetch after the first poll is a 304.
    assert any(r.path.startswith("/configs/") and r.status == 304 for r in server.requests)


async def test_papollo_sync_thread(server: ApolloTestServer) -> None:
    papollo = pytest.importorskip("papollo")
    changed = threading.Event()
    client = papollo.Apollo(server.url, APP, secret=SECRET, ip="10.0.0.1", watch=True)
    client.add_listener(lambda ns, old, new: changed.set())
    try:
        assert await asyncio.to_thread(client.get, "greeting") == "hello"
        async with asyncio.timeout(10):
            await server.wait_for_polls(1)
        server.publish(APP, "application", {"greeting": "hallo"})
        assert await asyncio.to_thread(changed.wait, 10)
        assert await asyncio.to_thread(client.get, "greeting") == "hallo"
    finally:
        await asyncio.to_thread(client.close)
    assert client._poller is not None and not client._poller.is_alive()
    assert_all_signed_and_accepted(server.requests)


async def test_apollo_client_python(
    server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("apollo.apollo_client")
    from apollo import apollo_client

    # No 8.8.8.8 probe, no cache files in the real home, no shared singletons between tests.
    monkeypatch.setattr(apollo_client, "init_ip", lambda: "10.0.0.2")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(apollo_client.ApolloClient, "_instances", {})
    changed = threading.Event()

    def build() -> Any:
        return apollo_client.ApolloClient(
            config_url=server.url,
            app_id=APP,
            secret=SECRET,
            enable_dotenv=False,
            enable_scheduled_updates=False,
            enable_long_pool_updates=True,
            value_change_listeners=[lambda event: changed.set()],
        )

    client = await asyncio.to_thread(build)  # it loads in its constructor
    assert client.get_value("greeting") == "hello"
    client._cycle_time = 0.01  # its pause between polls (2 s), so stop() is quick
    client.start()
    try:
        async with asyncio.timeout(10):
            await server.wait_for_request(is_poll(304))
            await server.wait_for_polls(1)
        server.publish(APP, "application", {"greeting": "hola"})
        assert await asyncio.to_thread(changed.wait, 10)
        assert client.get_value("greeting") == "hola"
    finally:
        client.stop()
        await asyncio.to_thread(client._long_poll_thread.join, 10)
    assert not client._long_poll_thread.is_alive()
    assert_all_signed_and_accepted(server.requests)
    # It always sends an empty releaseKey (so never gets a 304 from /configs) and no ip on polls.
    configs = [r for r in server.requests if r.path.startswith("/configs/")]
    assert all(r.query["releaseKey"] == "" and r.status == 200 for r in configs)
