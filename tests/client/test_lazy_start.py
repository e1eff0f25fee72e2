"""``lazy_start=True``: the first awaited read starts the client, once, on its own loop.

For ASGI servers without a lifespan (Daphne; ``tests/servers/test_daphne_django.py`` runs it for
real).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from aioapollo import ClientState, ClientStateError, NamespaceUnavailableError
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory, Events

CONFIGS = f"/configs/{APP}/default/application"


async def test_concurrent_first_reads_start_the_client_once(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aioapollo")
    client = make_client(lazy_start=True)
    client.on_change(events)
    assert client.state is ClientState.CREATED  # inert until used
    with pytest.raises(ClientStateError, match="start"):
        client.get_nowait("greeting")  # cannot start without awaiting
    async with asyncio.timeout(10):
        values = await asyncio.gather(
            *(client.get("greeting") for _ in range(10)),
            *(client.get_int("timeout") for _ in range(10)),
        )
    assert values == ["hello"] * 10 + [30] * 10
    assert client.state is ClientState.RUNNING
    started = [r for r in caplog.records if "ApolloClient('test-app') started" in r.message]
    assert len(started) == 1
    assert len([r for r in server.requests if r.path == CONFIGS]) == 1
    server.publish(APP, "application", {"greeting": "bonjour", "timeout": "30"})
    assert (await events.next()).changes["greeting"].new_value == "bonjour"
    assert client.get_nowait("greeting") == "bonjour"


async def test_a_failed_lazy_start_raises_and_the_next_read_tries_again(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client(app_id="not-yet-published", lazy_start=True, cache_dir=None)
    async with asyncio.timeout(10):
        with pytest.raises(NamespaceUnavailableError):
            await client.get("greeting")
        assert client.state is ClientState.CREATED
        server.publish("not-yet-published", "application", {"greeting": "finally"})
        assert await client.get("greeting") == "finally"
    assert client.state is ClientState.RUNNING


async def test_without_lazy_start_reads_never_start_the_client(make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(ClientStateError, match="start"):
        await client.get("greeting")
    assert client.state is ClientState.CREATED
