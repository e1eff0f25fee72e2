"""decryptor=: ENC(...) values in plain text for reads, listeners and snapshots, and as
Apollo sent them on disk and on the sharing socket; refused releases keep the last good ones."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from aioapollo import (
    ApolloClient,
    DecryptionError,
    ErrorEvent,
    Hooks,
    NamespaceUnavailableError,
    Source,
)
from aioapollo.crypto import Fernet, Jasypt
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import Child
from ..conftest import APP, FAST, ClientFactory, Events, cache_of

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

PASSWORD = "test password, never a real one"
JASYPT = Jasypt(PASSWORD)
SECRET, NEW_SECRET = "canary-plain-7f3a", "canary-plain-91bc"


def enc(text: str) -> str:
    return f"ENC({JASYPT.encrypt(text)})"


class Errors(Hooks):
    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []
        self.seen = asyncio.Event()

    def on_error(self, event: ErrorEvent) -> None:
        if event.operation == "decrypt":
            self.events.append(event)
            self.seen.set()


def _no_plain_text(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and NEW_SECRET not in text and PASSWORD not in text


async def test_reads_listeners_and_snapshots_see_plain_text_the_cache_keeps_enc(
    server: ApolloTestServer, make_client: ClientFactory, tmp_path: Path, events: Events
) -> None:
    sent = enc(SECRET)
    server.publish(APP, "application", {"db.password": sent, "db.user": "app"})
    client = make_client(decryptor=JASYPT)
    client.on_change(events)
    await client.start()
    assert await client.get("db.password") == SECRET
    assert client.get_nowait("db.user") == "app"
    assert client.snapshot().items["db.password"] == SECRET
    newer = enc(NEW_SECRET)
    server.publish(APP, "application", {"db.password": newer, "db.user": "app"})
    event = await events.next()
    change = event.changes["db.password"]
    assert (change.old_value, change.new_value) == (SECRET, NEW_SECRET)
    assert client.get_nowait("db.password") == NEW_SECRET
    # As Apollo sent it: the disk cache never holds plain text.
    cache = cache_of(tmp_path / "cache", server.url)
    await wait_until(lambda: (c := cache.load("application")) is not None and c.release_key)
    await wait_until(lambda: cache.load("application").items["db.password"] == newer)
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert SECRET.encode() not in on_disk and NEW_SECRET.encode() not in on_disk
    _no_plain_text(
        repr(client),
        repr(client.options),
        repr(client.snapshot()),
        repr(event),
        json.dumps(client.stats().as_dict()),
    )


async def test_a_value_that_does_not_decrypt_keeps_the_last_good_release(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    server.publish(APP, "application", {"db.password": enc(SECRET), "db.user": "app"})
    errors = Errors()
    client = make_client(decryptor=JASYPT, hooks=[errors])
    await client.start()
    before = client.notification_ids["application"]
    other = Jasypt("another password")
    bad = f"ENC({other.encrypt(NEW_SECRET)})"
    server.publish(APP, "application", {"db.password": bad, "db.user": "changed"})
    await asyncio.wait_for(errors.seen.wait(), 5)
    error = errors.events[0].error
    assert isinstance(error, DecryptionError)
    assert (error.namespace, error.keys) == ("application", ("db.password",))
    assert errors.events[0].namespace == "application"
    # The whole release is refused: a user and its password change together.
    assert client.get_nowait("db.password") == SECRET
    assert client.get_nowait("db.user") == "app"
    ns = client.stats().namespaces["application"]
    assert ns.release_error is not None and "'db.password'" in ns.release_error
    assert client.stats().as_dict()["namespaces"]["application"]["release_error"]
    # The long poll moved on (no refetch storm); the next good release applies.
    await wait_until(lambda: client.notification_ids["application"] > before)
    server.publish(APP, "application", {"db.password": enc(NEW_SECRET), "db.user": "new"})
    await wait_until(lambda: client.get_nowait("db.user") == "new")
    assert client.get_nowait("db.password") == NEW_SECRET
    assert client.stats().namespaces["application"].release_error is None
    _no_plain_text(str(error), *(r.getMessage() for r in caplog.records), bad)
    assert any("'db.password'" in r.getMessage() for r in caplog.records)


async def test_start_fails_without_a_good_value_and_uses_a_cache_that_decrypts(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"db.password": enc(SECRET)})
    first = make_client(decryptor=JASYPT)
    await first.start()  # writes the cache
    await first.aclose()
    server.publish(APP, "application", {"db.password": "ENC(corrupt!)"})
    alone = make_client(decryptor=JASYPT, cache_dir=None)
    with pytest.raises(NamespaceUnavailableError, match=r"'db.password' did not decrypt") as info:
        await alone.start()
    assert isinstance(info.value.causes["application"], DecryptionError)
    cached = make_client(decryptor=JASYPT, warm_start_timeout=None)
    await cached.start()
    assert cached.sources["application"] is Source.CACHE
    assert cached.get_nowait("db.password") == SECRET
    assert "did not decrypt" in (cached.stats().namespaces["application"].release_error or "")


async def test_an_async_decryptor_is_awaited_once_per_ciphertext(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    calls: list[str] = []

    async def kms(text: str) -> str:
        calls.append(text)
        await asyncio.sleep(0)
        return text.upper()

    server.publish(APP, "application", {"a": "ENC(one)", "b": "ENC(one)", "c": "ENC(two)"})
    client = make_client(decryptor=kms)
    client.on_change(events)
    await client.start()
    assert sorted(calls) == ["one", "two"]
    assert [client.get_nowait(k) for k in "abc"] == ["ONE", "ONE", "TWO"]
    server.publish(APP, "application", {"a": "ENC(one)", "c": "ENC(two)", "d": "ENC(three)"})
    await events.next()
    assert sorted(calls) == ["one", "three", "two"]  # only the new one
    assert client.get_nowait("d") == "THREE"
    # Its cache holds the current release's ciphertexts, no more: one the next release drops
    # is decrypted again when it comes back, one it keeps is not.
    server.publish(APP, "application", {"a": "ENC(one)", "d": "ENC(three)"})
    await events.next()
    assert sorted(calls) == ["one", "three", "two"]
    server.publish(APP, "application", {"a": "ENC(one)", "c": "ENC(two)"})
    await events.next()
    assert sorted(calls) == ["one", "three", "two", "two"]
    assert client.get_nowait("c") == "TWO"


async def test_a_sync_decryptor_runs_off_the_event_loop(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    threads: set[int] = set()

    class Vault:
        def decrypt(self, text: str) -> str:
            threads.add(threading.get_ident())
            if text == "fail":
                raise RuntimeError(f"vault says no to {text}")  # never shown
            return text[::-1]

    server.publish(APP, "application", {"k": "ENC(abc)"})
    client = make_client(decryptor=Vault())
    await client.start()
    assert client.get_nowait("k") == "cba"
    assert threads and threading.get_ident() not in threads
    server.publish(APP, "application", {"k": "ENC(fail)"})
    await wait_until(lambda: client.stats().namespaces["application"].release_error is not None)
    why = client.stats().namespaces["application"].release_error or ""
    assert "Vault raised RuntimeError" in why and "fail" not in why.replace("failed", "")


async def test_from_env_reads_the_password_from_a_file(
    server: ApolloTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "jasypt-password"
    secret_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("APP_ID", APP)
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", server.url)
    monkeypatch.setenv("APOLLO_JASYPT_PASSWORD_FILE", str(secret_file))
    server.publish(APP, "application", {"db.password": enc(SECRET)})
    async with ApolloClient.from_env(cache_dir=None, **FAST) as client:
        assert await client.get("db.password") == SECRET
        assert isinstance(client.options.decryptor, Jasypt)
        _no_plain_text(repr(client.options))


async def test_a_sync_client_decrypts(server: ApolloTestServer, make_sync: Any) -> None:
    server.publish(APP, "application", {"db.password": enc(SECRET)})
    client = make_sync(decryptor=JASYPT)
    await asyncio.to_thread(client.start)
    assert client.get("db.password") == SECRET


async def test_a_forked_follower_decrypts_for_itself_the_socket_carries_enc(
    server: ApolloTestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    """A real process follows this one's leader: what the socket carries is ENC(...), and
    the follower decrypts it with its own decryptor (here a Fernet it makes itself): the
    one ciphertext its decryptor is handed is the one Apollo sent (plain text on the
    socket would reach it with nothing to decrypt)."""
    key = Fernet.generate_key()
    sent = f"ENC({Fernet(key).encrypt(SECRET)})"
    server.publish(APP, "application", {"db.password": sent})
    share_dir = tmp_path / "share"
    leader = make_client(decryptor=Fernet(key), share_poll=True, share_dir=share_dir)
    await leader.start()
    assert leader.stats().role == "leader"

    async def follower_body(report: Any) -> None:
        calls: list[str] = []
        fernet = Fernet(key)

        def counting(text: str) -> str:
            calls.append(text)
            return fernet.decrypt(text)

        follower = ApolloClient(
            APP,
            config_server=server.url,
            cache_dir=tmp_path / "cache",
            share_poll=True,
            share_dir=share_dir,
            decryptor=counting,
            **FAST,
        )
        await follower.start()
        report(
            {
                "role": follower.stats().role,
                "pid": os.getpid(),
                "value": follower.get_nowait("db.password"),
                "calls": calls,
            }
        )
        await follower.aclose()

    child = Child.running(follower_body)
    seen = await child.next()
    assert seen["role"] == "follower" and seen["pid"] != os.getpid()
    assert seen["value"] == SECRET and seen["calls"] == [sent.removeprefix("ENC(")[:-1]]
    assert await child.exit_code() == 0
