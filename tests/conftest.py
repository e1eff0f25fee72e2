"""Shared fixtures: a real test server on loopback and fast-retrying clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo._apollo.cache import DiskCache
from aioapollo._config import ClientOptions
from aioapollo.testing import ApolloTestServer

APP = "test-app"

#: Client settings that keep tests fast: short backoff and retry delays.
FAST: dict[str, Any] = {
    "backoff_initial": 0.05,
    "backoff_max": 0.4,
    "fetch_retry_delay": 0.05,
    "poll_min_interval": 0.0,
    "connect_timeout": 1.0,
    "read_timeout": 2.0,
    "close_timeout": 2.0,
}


@pytest.fixture(autouse=True)
def _private_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may write to the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
async def server() -> AsyncIterator[ApolloTestServer]:
    async with ApolloTestServer(hold_seconds=0.5) as srv:
        srv.publish(APP, "application", {"greeting": "hello", "timeout": "30"})
        yield srv


ClientFactory = Callable[..., ApolloClient]


def cache_of(root: Path, config_server: str, **options: Any) -> DiskCache:
    """The disk cache of a client of ``APP`` with these settings (for its files' paths)."""
    opts = ClientOptions.build(APP, config_server=config_server, cache_dir=root, **options)
    cache = DiskCache.for_options(opts)
    assert cache is not None
    return cache


@pytest.fixture
async def make_client(server: ApolloTestServer, tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Build clients against ``server`` (override anything); all are closed afterwards."""
    clients: list[ApolloClient] = []

    def factory(**kwargs: Any) -> ApolloClient:
        kwargs.setdefault("config_server", server.url)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        client = ApolloClient(kwargs.pop("app_id", APP), **{**FAST, **kwargs})
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


class Events:
    """Collects change events; ``await events.next()`` waits for one (bounded)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ConfigChangeEvent] = asyncio.Queue()
        self.seen: list[ConfigChangeEvent] = []

    async def __call__(self, event: ConfigChangeEvent) -> None:
        self.seen.append(event)
        self.queue.put_nowait(event)

    async def next(self, timeout: float = 5.0) -> ConfigChangeEvent:
        return await asyncio.wait_for(self.queue.get(), timeout)

    @classmethod
    def of(cls, client: ApolloClient) -> Events:
        """Events listening to ``client``'s changes."""
        events = cls()
        client.on_change(events)
        return events


@pytest.fixture
def events() -> Iterator[Events]:
    yield Events()


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """No forked test child outlives its test (see ``tests/_workers.py``)."""
    yield
    from ._workers import Child  # imported late: _workers imports this module

    Child.close_all()


@pytest.fixture
async def make_sync(server: ApolloTestServer, tmp_path: Path) -> AsyncIterator[Any]:
    """Build SyncApolloClients against ``server``; all are closed afterwards."""
    from ._workers import sync_clients

    async with sync_clients(server, tmp_path) as factory:
        yield factory
