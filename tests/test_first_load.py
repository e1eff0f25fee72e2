"""First load and change delivery: no per-key diff for a first load; listeners before the cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from aioapollo import ConfigChangeEvent
from aioapollo.testing import ApolloTestServer

from ._support import wait_until
from .conftest import APP, ClientFactory, Events


async def test_first_load_logs_the_key_count_and_emits_nothing(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aioapollo")
    client = make_client()
    client.add_listener(events)
    await client.start()
    assert "namespace 'application' loaded: 2 key(s)" in caplog.text
    assert "changed" not in caplog.text
    assert events.seen == []

    server.publish(APP, "application", {"greeting": "hi", "timeout": "30", "extra": "1"})
    event = await events.next()
    assert {key: change.change_type.value for key, change in event.changes.items()} == {
        "greeting": "MODIFIED",
        "extra": "ADDED",
    }
    assert await client.get("greeting") == "hi"


async def test_listeners_hear_of_a_change_before_it_is_written_to_the_disk_cache(
    server: ApolloTestServer,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioapollo._cache import DiskCache

    order: list[str] = []
    heard = asyncio.Event()
    real_to_thread = asyncio.to_thread

    def to_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__func__", None) is DiskCache.save:
            order.append("cache write submitted")
        return real_to_thread(func, *args, **kwargs)

    async def listener(event: ConfigChangeEvent) -> None:
        order.append("listener")
        heard.set()

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    client = make_client()
    client.add_listener(listener)
    await client.start()
    assert order == ["cache write submitted"]  # the first load is cached too

    server.publish(APP, "application", {"greeting": "hi", "timeout": "30"})
    await asyncio.wait_for(heard.wait(), 5)
    await wait_until(lambda: len(order) == 3)
    assert order == ["cache write submitted", "listener", "cache write submitted"]
