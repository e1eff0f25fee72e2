"""Replies no real config service sends: error pages, broken JSON, wrong shapes, cut bodies.

Whatever arrives, the client keeps its last good values (no event ever reports a key lost to
garbage), says what was wrong, retries with backoff and applies the release once a good reply
comes.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aioapollo import (
    ApolloClient,
    ApolloConnectionError,
    ApolloHTTPStatusError,
    ApolloResponseError,
    NamespaceUnavailableError,
    Source,
)
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, FAST, ClientFactory, Events, cache_of

CONFIGS = f"/configs/{APP}/default/application"

#: name -> (fault settings, the ApolloError the client reports for it)
BAD_REPLIES: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "502-html-page": (
        {"status": 502, "body": "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"},
        ApolloHTTPStatusError,
    ),
    "invalid-json": ({"garbage": True}, ApolloResponseError),
    "truncated-json": (
        {"garbage": b'{"appId":"test-app","releaseKey":"r","configurations":{"greeting":"hal'},
        ApolloResponseError,
    ),
    "not-an-object": ({"garbage": b'["releaseKey", "configurations"]'}, ApolloResponseError),
    "value-not-a-string": (
        {"garbage": b'{"releaseKey":"r","configurations":{"greeting":1}}'},
        ApolloResponseError,
    ),
    "configurations-missing": (
        {"garbage": b'{"appId":"test-app","cluster":"default","releaseKey":"r"}'},
        ApolloResponseError,
    ),
    "configurations-null": (
        {"garbage": b'{"releaseKey":"r","configurations":null}'},
        ApolloResponseError,
    ),
    "reset-mid-body": ({"reset": True}, ApolloConnectionError),
    "connection-dropped": ({"drop": True}, ApolloConnectionError),
}


def _requests_per_attempt(kind: str) -> int:
    """aiohttp resends a GET once, at once, when the server closes the connection before any
    reply (RFC 9112 section 9.3.1): a dropped connection costs two requests per attempt."""
    return 2 if kind == "connection-dropped" else 1


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
async def test_bad_refetch_keeps_values_and_applies_the_release_later(
    kind: str,
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault_settings, _ = BAD_REPLIES[kind]
    client = make_client()
    client.on_change(events)
    await client.start()
    # A forced refetch tries twice: make both attempts of the first refetch go wrong.
    per_attempt = _requests_per_attempt(kind)
    fault = server.inject(CONFIGS, times=2 * per_attempt, **fault_settings)
    server.clear_requests()
    server.publish(APP, "application", {"greeting": "new", "timeout": "30"})
    event = await events.next(timeout=8)
    # The only change ever seen is the real one: garbage never replaced or deleted a key.
    assert {k: (c.old_value, c.new_value) for k, c in event.changes.items()} == {
        "greeting": ("hello", "new")
    }
    assert fault.hits == 2 * per_attempt
    fetches = [r for r in server.requests if r.path == CONFIGS]
    # Two failed attempts then one good request: no storm.
    assert len(fetches) == 2 * per_attempt + 1, [r.status for r in fetches]
    assert client.sources["application"] is Source.REMOTE
    assert await client.get("timeout") == "30"
    assert any("refetching namespace 'application' failed" in r.message for r in caplog.records)
    cache_file = cache_of(tmp_path / "cache", server.url).path("application")
    # The event comes before the cache write (a worker thread): wait for the file to follow.
    await wait_until(lambda: cache_file.exists() and '"new"' in cache_file.read_text())
    assert json.loads(cache_file.read_text())["configurations"] == {
        "greeting": "new",
        "timeout": "30",
    }
    assert events.seen == [event]


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
async def test_bad_reply_at_start_is_a_clear_error(
    kind: str, server: ApolloTestServer, make_client: ClientFactory
) -> None:
    fault_settings, error_type = BAD_REPLIES[kind]
    server.inject(CONFIGS, times=None, **fault_settings)
    client = make_client(cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    assert info.value.namespaces == ("application",)
    assert isinstance(info.value.causes["application"], error_type)
    fetches = [r for r in server.requests if r.path == CONFIGS]
    assert len(fetches) == 2 * _requests_per_attempt(kind)  # one retry, no more


async def test_bad_reply_at_start_falls_back_to_the_warm_cache(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    async with make_client():  # warms the cache
        pass
    server.inject(CONFIGS, times=None, garbage=True)
    client = make_client()
    await client.start()
    assert client.sources["application"] is Source.CACHE
    assert await client.get("greeting") == "hello"


@pytest.mark.parametrize("kind", ["502-html-page", "invalid-json", "not-an-object", "reset"])
async def test_bad_long_poll_replies_back_off_then_recover(
    kind: str, server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    faults: dict[str, dict[str, Any]] = {
        "502-html-page": {"status": 502, "body": "<html>Bad Gateway</html>"},
        "invalid-json": {"garbage": True},
        "not-an-object": {"garbage": b'{"namespaceName":"application","notificationId":9}'},
        "reset": {"reset": True},
    }
    client = make_client()
    client.on_change(events)
    await client.start()
    fault = server.inject("/notifications/v2", times=3, **faults[kind])
    server.publish(APP, "application", {"greeting": "after"})
    event = await events.next(timeout=8)
    assert event.changes["greeting"].new_value == "after"
    assert fault.hits == 3
    polls = [r for r in server.requests if r.path == "/notifications/v2" and r.fault]
    gaps = [b.time - a.time for a, b in itertools.pairwise(polls)]
    # Backoff 0.05 s then 0.1 s (jittered down to half at most): never an immediate retry.
    assert all(gap >= 0.02 for gap in gaps), gaps


async def test_response_size_cap_with_content_length(
    server: ApolloTestServer, make_client: ClientFactory, events: Events, caplog
) -> None:
    caplog.set_level(logging.INFO, "aioapollo")
    client = make_client(max_body_bytes=2048)
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"greeting": "x" * 4096})
    await wait_until(lambda: any("max_body_bytes=2048" in r.message for r in caplog.records))
    assert await client.get("greeting") == "hello"
    server.publish(APP, "application", {"greeting": "small"})
    event = await events.next(timeout=8)
    # The oversized release was never applied: the next event goes straight from the old value.
    assert (event.changes["greeting"].old_value, event.changes["greeting"].new_value) == (
        "hello",
        "small",
    )


async def test_response_size_cap_on_a_chunked_body(tmp_path: Path) -> None:
    """A broken proxy streaming an endless body (no Content-Length) is cut off at the cap."""
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"releaseKey":"r","configurations":{"k":"')
        try:
            for _ in range(10_000):  # bounded: 640 MB if nobody stops reading
                await response.write(b"x" * 65536)
                sent += 65536
        except (ConnectionError, RuntimeError):
            pass
        return response

    await _start_fails_on_the_cap(endless, max_body_bytes=1 << 20)
    assert sent < 64 << 20  # the client stopped reading long before the server gave up


async def test_response_size_cap_applies_to_the_decompressed_body() -> None:
    """A gzip bomb: some 16 kB on the wire (under the cap), 16 MB inflated (over it)."""
    inflated = b'{"releaseKey":"r","configurations":{"k":"' + b"0" * (16 << 20) + b'"}}'
    bomb = gzip.compress(inflated, compresslevel=9)

    async def configs(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    await _start_fails_on_the_cap(configs, max_body_bytes=len(bomb) * 4)


async def _start_fails_on_the_cap(handler: Any, *, max_body_bytes: int) -> None:
    """Serve ``/configs`` with ``handler`` and check that start() stops at the size cap."""
    app = web.Application()
    app.router.add_get("/configs/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client = ApolloClient(
            APP,
            config_server=f"http://127.0.0.1:{port}",
            cache_dir=None,
            max_body_bytes=max_body_bytes,
            **FAST,
        )
        with pytest.raises(NamespaceUnavailableError) as info:
            await client.start()
        cause = info.value.causes["application"]
        assert isinstance(cause, ApolloResponseError) and "max_body_bytes" in str(cause)
        await client.aclose()
    finally:
        await runner.cleanup()
