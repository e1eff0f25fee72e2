"""Signing, discovery and failover, the disk cache, and Apollo going away and coming back."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from aioapollo import ApolloAuthError, ApolloClient, NamespaceUnavailableError, Source
from aioapollo.testing import ApolloTestServer

from .._support import assert_backoff, dead_url, gaps, wait_for_requests, wait_until
from ..conftest import APP, FAST, ClientFactory, Events, cache_of

POLL = "/notifications/v2"


async def test_signed_requests_are_accepted(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.set_secret(APP, "0123456789abcdef0123456789abcdef")
    client = make_client(secret="0123456789abcdef0123456789abcdef")
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"greeting": "signed"})
    await events.next()
    signed = [r for r in server.requests if r.path != "/services/config"]
    assert signed and all(r.status in (200, 304) for r in signed if r.status is not None)
    assert all(r.headers["Authorization"].startswith(f"Apollo {APP}:") for r in signed)


async def test_wrong_secret_is_a_clear_error_without_retry_storm(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.set_secret(APP, "right")
    client = make_client(secret="wrong", cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    cause = info.value.causes["application"]
    assert isinstance(cause, ApolloAuthError) and cause.reason == "signature"
    assert "secret" in str(info.value) and "wrong" not in str(info.value).replace("wrong or", "")
    # 401 stops at once: one request, not a round of retries.
    assert len([r for r in server.requests if r.path.startswith("/configs/")]) == 1


async def test_clock_skew_is_told_apart_from_a_wrong_secret(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.set_secret(APP, "right")
    server.clock = lambda: _now_ms() + 120_000
    client = make_client(secret="right", cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    cause = info.value.causes["application"]
    assert isinstance(cause, ApolloAuthError) and cause.reason == "clock_skew"
    assert "clock" in str(cause)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


async def test_long_poll_401_backs_off_and_recovers_with_the_secret(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(secret="s", backoff_initial=0.05, backoff_max=0.2)
    client.on_change(events)
    await client.start()
    server.set_secret(APP, "other")  # the secret is rotated on the server only
    server.clear_requests()
    # The poller keeps retrying (a 401 is not the end of it) ...
    refused = await wait_for_requests(server, lambda r: r.path == POLL and r.status == 401, 8)
    # ... with exponential gaps (0.05, 0.1, then capped at 0.2), never a hot loop.
    assert_backoff(gaps(refused), initial=0.05, cap=0.2)
    assert [r for r in server.requests if r.path == POLL][: len(refused)] == refused
    assert await client.get("greeting") == "hello"  # values kept meanwhile
    # The secret becomes valid again: the next retry is accepted and releases flow again.
    server.set_secret(APP, "s")
    server.publish(APP, "application", {"greeting": "signed-again"})
    event = await events.next(timeout=5)
    assert event.changes["greeting"].new_value == "signed-again"
    assert await client.get("greeting") == "signed-again"


async def test_meta_discovery_fails_over_from_a_dead_instance(tmp_path: Path) -> None:
    async with ApolloTestServer(hold_seconds=0.5) as live:
        live.publish(APP, "application", {"k": "v1"})
        live.config_services = [dead_url(), live.url]
        events = Events()
        async with ApolloClient(
            APP, meta_server=live.url, cache_dir=None, **{**FAST, "connect_timeout": 0.5}
        ) as client:
            client.on_change(events)
            assert await client.get("k") == "v1"
            live.publish(APP, "application", {"k": "v2"})
            await events.next()
            assert await client.get("k") == "v2"
        discovery = [r for r in live.requests if r.path == "/services/config"]
        assert discovery and "Authorization" not in discovery[0].headers


async def test_meta_discovery_spreads_over_instances_sharing_a_store() -> None:
    async with ApolloTestServer(hold_seconds=0.5) as one:
        async with ApolloTestServer(hold_seconds=0.5, store=one.store) as two:
            one.publish(APP, "application", {"k": "v1"})
            one.config_services = two.config_services = [one.url, two.url]
            events = Events()
            async with ApolloClient(APP, meta_server=one.url, cache_dir=None, **FAST) as client:
                client.on_change(events)
                await two.close()  # one instance dies
                one.publish(APP, "application", {"k": "v2"})
                await events.next(timeout=8)
                assert await client.get("k") == "v2"


async def test_down_at_start_with_warm_cache_then_catch_up(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    async with ApolloTestServer(hold_seconds=0.5) as server:
        server.publish(APP, "application", {"k": "cached", "gone": "x"})
        async with ApolloClient(APP, config_server=server.url, cache_dir=cache, **FAST):
            pass
        port = server.port
    folder = cache_of(cache, server.url).directory
    files = list(folder.iterdir())
    assert [f.name for f in files] == [f"{APP}+default+application.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700

    events = Events()
    client = ApolloClient(APP, config_server=f"http://127.0.0.1:{port}", cache_dir=cache, **FAST)
    client.on_change(events)
    async with client:
        assert client.sources["application"] is Source.CACHE
        assert await client.get("k") == "cached"
        # Apollo comes back, with a newer release: the client catches up by itself.
        async with ApolloTestServer(hold_seconds=0.5, port=port) as again:
            again.publish(APP, "application", {"k": "fresh"})
            event = await events.next(timeout=8)
            assert event.changes["k"].new_value == "fresh"
            assert "gone" in event.changes
            assert client.sources["application"] is Source.REMOTE
            assert await client.get("k") == "fresh"


async def test_down_at_start_without_cache_names_namespaces(tmp_path: Path) -> None:
    client = ApolloClient(
        APP,
        namespaces=["application", "db.json"],
        config_server=dead_url(),
        cache_dir=tmp_path,
        **FAST,
    )
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    assert set(info.value.namespaces) == {"application", "db.json"}
    await client.aclose()


async def test_corrupt_cache_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = dead_url()
    file = cache_of(tmp_path, url).path("application")
    file.parent.mkdir(parents=True)
    file.write_text('{"format": "aioapollo-cache/1", ')
    client = ApolloClient(APP, config_server=url, cache_dir=tmp_path, **FAST)
    with pytest.raises(NamespaceUnavailableError):
        await client.start()
    assert any("corrupt" in r.message for r in caplog.records)


async def test_failed_refetch_is_not_lost(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    server.inject(f"/configs/{APP}/default/application", status=500, times=4)
    server.publish(APP, "application", {"greeting": "eventually"})
    event = await events.next(timeout=8)
    assert event.changes["greeting"].new_value == "eventually"
    failed = [r for r in server.requests if r.status == 500]
    assert len(failed) == 4


async def test_5xx_storm_backs_off_up_to_its_cap_and_outlives_the_storm(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client(backoff_initial=0.05, backoff_max=0.2)
    client.on_change(events)
    await client.start()
    storm = server.inject(POLL, status=503, times=None)
    failed = await wait_for_requests(server, lambda r: r.fault is storm and r.status == 503, 8)
    # 0.05, 0.1, then 0.2 for as long as the storm lasts: an uncapped backoff would be
    # waiting 1.6-3.2 s by the eighth failure.
    assert_backoff(gaps(failed), initial=0.05, cap=0.2)
    server.clear_faults()
    server.publish(APP, "application", {"greeting": "after-storm"})
    event = await events.next(timeout=5)
    assert event.changes["greeting"].new_value == "after-storm"


async def test_secrets_and_values_never_logged(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret, value = "CANARY-SECRET-7f3a", "CANARY-VALUE-91bc"
    server.set_secret(APP, secret)
    client = make_client(secret=secret, namespaces=["application", "db.json"], allow_empty=True)
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"password": value})
    await events.next()
    server.publish(APP, "db.json", "{not json " + value)
    await events.next()
    server.set_secret(APP, "rotated")
    server.publish(APP, "application", {"password": value + "2"})
    await server.wait_for_request(lambda r: r.status == 401)
    await client.aclose()
    text = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    assert caplog.records
    assert secret not in text and value not in text
    assert secret not in repr(client) and value not in repr(client.snapshot())


async def test_cache_dir_that_cannot_be_written_degrades_to_memory(
    server: ApolloTestServer,
    make_client: ClientFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    client = make_client(cache_dir=blocker)
    await client.start()
    assert await client.get("greeting") == "hello"
    # The write fails in the background writer, after start() returned.
    await wait_until(lambda: any("memory only" in r.message for r in caplog.records))
    await client.aclose()
    warnings = [r for r in caplog.records if "memory only" in r.message]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


@pytest.mark.workers
def test_cache_file_written_by_many_processes_is_never_torn(tmp_path: Path) -> None:
    cache = cache_of(tmp_path, "http://127.0.0.1:1")
    running: set[int] = set()
    for n in range(16):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                for i in range(40):
                    mark = chr(ord("A") + n)
                    cache.save("application", f"r{mark}-{i}", {"k": mark * 5000, "i": str(i)}, 0)
            except BaseException:
                code = 1
            os._exit(code)
        running.add(pid)
    reads, codes = 0, []
    while running:
        got = cache.load("application")  # every read sees one whole file or none yet
        if got is not None:
            assert got.items["k"] == got.items["k"][0] * 5000
            assert got.release_key == f"r{got.items['k'][0]}-{got.items['i']}"
            reads += 1
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                codes.append(os.waitstatus_to_exitcode(status))
    assert codes == [0] * 16
    assert reads > 0
    assert not [p for p in cache.directory.iterdir() if p.name.startswith(".tmp-")]


async def test_periodic_refresh_is_a_safety_net(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    # Every long poll is answered 304 at once (a broken proxy): notifications never arrive.
    server.inject("/notifications/v2", status=304, times=None)
    client = make_client(refresh_interval=0.3, poll_min_interval=0.1)
    client.on_change(events)
    await client.start()
    server.publish(APP, "application", {"greeting": "refreshed"})
    event = await events.next()
    assert event.changes["greeting"].new_value == "refreshed"
    # And the instant 304s did not turn the poll loop hot: ~10/s at most with this setting.
    polls = [r for r in server.requests if r.path == "/notifications/v2"]
    elapsed = polls[-1].time - polls[0].time
    assert len(polls) <= 6 + elapsed * 10, (len(polls), elapsed)


async def test_discovery_is_refreshed(tmp_path: Path) -> None:
    async with ApolloTestServer(hold_seconds=0.5) as one:
        async with ApolloTestServer(hold_seconds=0.5, store=one.store) as two:
            one.publish(APP, "application", {"k": "v"})
            async with ApolloClient(
                APP, meta_server=one.url, cache_dir=None, refresh_interval=0.3, **FAST
            ) as client:
                events = Events()
                client.on_change(events)
                assert await client.get("k") == "v"
                one.config_services = [two.url]  # the config service moves
                await two.wait_for_request(lambda r: r.path.startswith("/configs/"))
                await one.close()  # the old one is gone for good
                two.publish(APP, "application", {"k": "moved"})
                await events.next()
                assert await client.get("k") == "moved"


async def test_missing_secret_is_named_as_such(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.set_secret(APP, "required")
    client = make_client(cache_dir=None)  # no secret configured
    with pytest.raises(NamespaceUnavailableError) as info:
        await client.start()
    cause = info.value.causes["application"]
    assert isinstance(cause, ApolloAuthError) and cause.reason == "signature"
    assert "none is configured" in str(cause)


def test_a_release_already_on_disk_is_not_written_again(tmp_path: Path) -> None:
    first = cache_of(tmp_path, "http://127.0.0.1:1")
    second = cache_of(tmp_path, "http://127.0.0.1:1")
    assert first.save("application", "r1+p1", {"k": "v"}, 1.0) is True
    inode = first.path("application").stat().st_ino
    # Another worker, notified of the same release, finds it written and skips the write.
    assert second.save("application", "r1+p1", {"k": "v"}, 2.0) is False
    assert first.path("application").stat().st_ino == inode
    assert second.save("application", "r2+p1", {"k": "w"}, 3.0) is True
    loaded = first.load("application")
    assert loaded is not None and loaded.release_key == "r2+p1" and loaded.items == {"k": "w"}
    # A release key that merely starts like the stored one is not mistaken for it.
    assert second.save("application", "r2", {"k": "x"}, 4.0) is True
