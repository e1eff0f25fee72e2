"""The start policy against a hung config service: warm values are served within a short budget.

A config service (or meta server) that accepts connections and never answers used to hold
``start()`` for two tries of the 5 s read timeout (11 s), a cache notwithstanding, and
``start_timeout`` did not cover discovery. Now a namespace with warm values waits at most
``warm_start_timeout`` (3 s by default), discovery included, then serves them and keeps loading
in the background; a namespace without them waits as long as the timeouts allow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from aioapollo import ApolloClient, NamespaceUnavailableError, Source, SyncApolloClient
from aioapollo._apollo.cache import DiskCache
from aioapollo._config import ClientOptions
from aioapollo.testing import ApolloTestServer

from .._hung import HungServer
from ..conftest import APP, Events

#: The default budget, and what start() cost with a hung service and the default timeouts.
DEFAULT_BUDGET = 3.0
BEFORE = 11.0


def warm_cache(cache: Path, **servers: str) -> None:
    """Leave a cache file ("hello") for APP's ``application`` namespace, as a client with
    these servers reads it (cache files are keyed by the servers asked, among others)."""
    options = ClientOptions.build(APP, cache_dir=cache, **servers)
    disk = DiskCache.for_options(options)
    assert disk is not None
    disk.save("application", "rk-hello", {"greeting": "hello", "timeout": "30"}, time.time())


async def test_default_budget_serves_the_cache_from_a_hung_config_service(
    server: ApolloTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with HungServer() as hung:
        warm_cache(tmp_path, config_server=hung.url)
        client = ApolloClient(APP, config_server=hung.url, cache_dir=tmp_path)  # all defaults
        assert client.options.warm_start_timeout == DEFAULT_BUDGET
        began = time.monotonic()
        await client.start()
        took = time.monotonic() - began
        try:
            assert DEFAULT_BUDGET - 0.1 <= took < BEFORE / 2, took
            assert hung.accepted >= 1  # it did try Apollo first
            assert client.sources["application"] is Source.CACHE
            assert await client.get("greeting") == "hello"
            assert any("still loading it from Apollo" in r.message for r in caplog.records)
        finally:
            began = time.monotonic()
            await client.aclose()  # cancels the load still waiting on the hung service
            assert time.monotonic() - began < 2


async def test_the_budget_covers_discovery_from_a_hung_meta_server(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    async with HungServer() as hung:
        warm_cache(tmp_path, meta_server=hung.url)
        client = ApolloClient(APP, meta_server=hung.url, cache_dir=tmp_path, warm_start_timeout=0.5)
        began = time.monotonic()
        async with client:
            assert time.monotonic() - began < 3  # discovery alone took 11 s before
            assert hung.accepted >= 1
            assert client.sources["application"] is Source.CACHE


async def test_the_background_load_brings_the_release_and_listeners_fire(
    server: ApolloTestServer, tmp_path: Path, events: Events
) -> None:
    server.publish(APP, "application", {"greeting": "published while hung"})
    async with HungServer() as hung:
        warm_cache(tmp_path, config_server=hung.url)
        client = ApolloClient(
            APP, config_server=hung.url, cache_dir=tmp_path, warm_start_timeout=0.3
        )
        client.on_change(events)
        async with client:
            assert client.sources["application"] is Source.CACHE
            assert await client.get("greeting") == "hello"
            hung.release(server.port)  # the held /configs request now reaches Apollo
            event = await events.next(timeout=10)
            assert event.changes["greeting"].new_value == "published while hung"
            assert client.sources["application"] is Source.REMOTE
            assert await client.get("greeting") == "published while hung"


async def test_without_warm_values_start_waits_for_the_timeouts(tmp_path: Path) -> None:
    async with HungServer() as hung:
        client = ApolloClient(
            APP,
            config_server=hung.url,
            cache_dir=tmp_path,
            warm_start_timeout=0.1,
            read_timeout=0.6,
            fetch_retry_delay=0.1,
        )
        began = time.monotonic()
        with pytest.raises(NamespaceUnavailableError):
            await client.start()
        # Two tries of the read timeout: no cache, so the short budget does not apply.
        assert time.monotonic() - began >= 2 * 0.6
        await client.aclose()


async def test_start_timeout_bounds_discovery_too(tmp_path: Path) -> None:
    async with HungServer() as hung:
        client = ApolloClient(APP, meta_server=hung.url, cache_dir=tmp_path, start_timeout=0.5)
        began = time.monotonic()
        with pytest.raises(NamespaceUnavailableError) as info:
            await client.start()
        assert time.monotonic() - began < 3  # discovery alone took 11 s before
        assert "start_timeout" in str(info.value)
        await client.aclose()


async def test_one_namespace_without_a_cache_fails_start_and_cancels_the_others_load(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    async with HungServer() as hung:
        warm_cache(tmp_path, config_server=hung.url)
        client = ApolloClient(
            APP,
            namespaces=["application", "uncached"],
            config_server=hung.url,
            cache_dir=tmp_path,
            warm_start_timeout=0.1,
            read_timeout=0.4,
            fetch_retry_delay=0.05,
        )
        with pytest.raises(NamespaceUnavailableError) as info:
            await client.start()
        assert set(info.value.namespaces) == {"uncached"}
        assert client.state.value == "created"
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("aioapollo")] == []


async def test_sync_client_serves_the_cache_from_a_hung_config_service(
    server: ApolloTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aioapollo")
    async with HungServer() as hung:
        warm_cache(tmp_path, config_server=hung.url)
        cfg = SyncApolloClient(APP, config_server=hung.url, cache_dir=tmp_path)  # defaults
        began = time.monotonic()
        await asyncio.to_thread(cfg.start)
        took = time.monotonic() - began
        try:
            assert DEFAULT_BUDGET - 0.1 <= took < BEFORE / 2, took
            assert cfg.polling
            assert cfg.get("greeting") == "hello"
            assert cfg.sources["application"] is Source.CACHE
        finally:
            began = time.monotonic()
            await asyncio.to_thread(cfg.close)
            assert time.monotonic() - began < 3
