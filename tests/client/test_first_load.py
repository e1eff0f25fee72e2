"""First load: no per-key diff and no change event for a namespace's first load.

(Listeners hearing of a change before its cache write: ``test_cache_writer.py``.)
"""

from __future__ import annotations

import logging

import pytest

from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory, Events


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
