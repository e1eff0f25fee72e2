"""Canary secret and values through a full run with every fault: they never leak.

Every log record of every logger is captured at DEBUG, formatted with its traceback; every
exception raised is formatted with its whole chain; every public object's ``repr()`` is taken.
None of that text may hold the access-key secret or a config value.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ConfigChangeEvent, ConfigValueError, NamespaceUnavailableError
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST, Events

SECRET = "CANARY-SECRET-5d1e7a"
VALUE = "CANARY-VALUE-c4b9"
CONFIGS = f"/configs/{APP}/default/application"


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))  # includes exc_info and stack_info


@pytest.fixture
def all_logs() -> Iterator[_Everything]:
    handler = _Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_canaries_never_leak_in_a_full_run(
    server: ApolloTestServer, tmp_path: Path, all_logs: _Everything
) -> None:
    texts: list[str] = []

    def record_error(exc: BaseException) -> None:
        texts.append("".join(traceback.format_exception(exc)))
        texts.append(repr(exc))

    server.set_secret(APP, SECRET)
    server.publish(APP, "application", {"password": VALUE, "port": VALUE + "-not-an-int"})
    server.publish(APP, "db.json", '{"dsn": "' + VALUE + '"}')

    # A wrong secret at start: a clear error, with its whole chain formatted.
    wrong = ApolloClient(APP, config_server=server.url, secret="wrong-" + SECRET, cache_dir=None)
    with pytest.raises(NamespaceUnavailableError) as info:
        await wrong.start()
    record_error(info.value)
    texts.append(repr(wrong))
    texts.append(repr(wrong.options))

    events = Events()
    client = ApolloClient(
        APP,
        namespaces=["application", "db.json"],
        config_server=server.url,
        secret=SECRET,
        cache_dir=tmp_path,
        max_body_bytes=4096,
        **FAST,
    )
    client.on_change(events)

    @client.on_change
    async def crashes(event: ConfigChangeEvent) -> None:
        raise RuntimeError("listener bug")

    async with client:
        texts += [repr(client), repr(client.options), repr(client.snapshot())]
        try:
            await client.get_int("port")
        except ConfigValueError as exc:
            record_error(exc)
        # Faults on the way: garbage echoing a value, a reset, a 502, an oversized reply.
        server.inject(CONFIGS, garbage=b'{"configurations": {"password": "' + VALUE.encode())
        server.inject(CONFIGS, reset=True)
        server.inject(CONFIGS, status=502, body=f"<html>{VALUE}</html>")
        server.publish(APP, "application", {"password": VALUE + "-2", "big": "x" * 8192})
        await asyncio.sleep(0)
        server.publish(APP, "application", {"password": VALUE + "-3"})
        event = await events.next(timeout=8)
        texts += [repr(event), repr(event.snapshot), *map(repr, event.changes.values())]
        server.publish(APP, "db.json", "{broken " + VALUE)  # unparsable: logged, kept
        await events.next(timeout=8)
        server.set_secret(APP, "rotated")  # the long poll now gets 401s
        async with asyncio.timeout(5):
            await server.wait_for_request(lambda r: r.status == 401)
    assert all_logs.texts, "nothing was logged: the test would prove nothing"
    assert any("Traceback" in t for t in all_logs.texts)  # tracebacks were formatted too
    assert any(" DEBUG " in t for t in all_logs.texts)
    for text in all_logs.texts + texts:
        assert SECRET not in text, text
        assert VALUE not in text, text


async def test_basic_auth_password_in_a_server_url_is_never_shown(
    server: ApolloTestServer, all_logs: _Everything
) -> None:
    """A proxy in front of Apollo may want basic auth, given as ``http://user:pw@host``."""
    password = "CANARY-PASSWORD-0b7e"
    url = server.url.replace("http://", f"http://ops:{password}@")
    texts: list[str] = []
    client = ApolloClient(APP, config_server=url, cache_dir=None, **FAST)
    texts.append(repr(client.options))
    async with client:
        assert server.requests[-1].headers["Authorization"].startswith("Basic ")
        server.inject(CONFIGS, status=502, times=2)
        server.inject("/notifications/v2", status=503)
        server.publish(APP, "application", {"greeting": "later"})
        async with asyncio.timeout(5):
            await server.wait_for_request(lambda r: r.status == 502)
    server.inject(CONFIGS, status=502, times=None)
    failing = ApolloClient(APP, config_server=url, cache_dir=None, **FAST)
    with pytest.raises(NamespaceUnavailableError) as info:
        await failing.start()
    texts.append("".join(traceback.format_exception(info.value)))
    texts.append(repr(info.value.causes["application"].url))  # type: ignore[attr-defined]
    assert "ops@" not in texts[0] and "127.0.0.1" in texts[0]
    assert any("502" in t for t in all_logs.texts + texts)
    for text in all_logs.texts + texts:
        assert password not in text, text
