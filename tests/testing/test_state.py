"""A test server that survives a restart: the state file and notification ids that only grow."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from aioapollo import ApolloClient
from aioapollo.testing import ApolloTestServer, ReleaseStore

from ..conftest import FAST, Events

APP = "SampleApp"
KEY = f"{APP}+default+application"


def test_ids_start_above_the_base() -> None:
    store = ReleaseStore(notification_id_base=1_000)
    store.publish(APP, "application", {"a": "1"})
    assert store.notification_ids([KEY]) == {KEY: 1_001}
    with pytest.raises(ValueError, match="non-negative"):
        ReleaseStore(notification_id_base=-1)


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = ReleaseStore(state_file=path)
    store.publish("Owner", "Shared.Ns", {"p": "1"}, public=True)
    main_key = store.publish(APP, "application", {"a": "1", "ключ": "значение"})
    gray_key = store.publish(APP, "application", {"a": "gray"}, gray_ips=["10.0.0.1"])
    store.publish(APP, "application", {"a": "east"}, cluster="east")
    store.publish(APP, "db.json", '{"pool": 5}')
    store.delete_release(APP, "db.json")
    store.create_namespace(APP, "FX.Apollo")
    store.set_secret(APP, ["s1", "s2"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # values and secrets live in it
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left

    again = ReleaseStore(state_file=path)
    release = again.release(APP, "application")
    assert release is not None
    assert (release.key, dict(release.configurations)) == (
        main_key,
        {"a": "1", "ключ": "значение"},
    )
    gray = again.find_release(APP, "10.0.0.1", None, APP, "default", "application")
    assert gray is not None and (gray.key, gray.configurations["a"]) == (gray_key, "gray")
    other = again.find_release(APP, "10.0.0.2", None, APP, "default", "application")
    assert other is release
    assert again.release(APP, "application", "east") is not None
    assert again.release(APP, "db.json") is None
    assert again.canonical(APP, "fx.apollo") == "FX.Apollo"
    assert again.public_owner("shared.ns") == "Owner"
    assert again.secrets(APP.upper()) == ("s1", "s2")
    assert again.releases_by_key([gray_key, main_key]) == [gray, release]
    keys = [KEY, f"{APP}+east+application", f"{APP}+default+db.json"]
    before = store.notification_ids(keys)
    assert again.notification_ids(keys) == before
    again.publish(APP, "application", {"a": "2"})
    assert again.notification_ids([KEY])[KEY] > max(before.values())


def test_ids_after_a_restart_exceed_both_the_saved_ids_and_the_base(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = ReleaseStore(state_file=path, notification_id_base=5_000)
    first.publish(APP, "application", {"a": "1"})
    again = ReleaseStore(state_file=path)  # base 0: the saved ids still count
    again.publish(APP, "application", {"a": "2"})
    assert again.notification_ids([KEY]) == {KEY: 5_002}
    later = ReleaseStore(state_file=path, notification_id_base=9_000)
    later.publish(APP, "application", {"a": "3"})
    assert later.notification_ids([KEY]) == {KEY: 9_001}


def test_a_damaged_state_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = ReleaseStore(state_file=path)
    store.publish(APP, "application", {"password": "hunter2-canary"})
    data = json.loads(path.read_text("utf-8"))
    data["releases"][0]["release"]["configurations"]["password"] = ["hunter2-canary"]
    path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(ValueError, match="damaged") as info:
        ReleaseStore(state_file=path)
    assert "hunter2-canary" not in str(info.value)
    path.write_text('{"format": "something else"}', "utf-8")
    with pytest.raises(ValueError, match="not an aioapollo test-server state file"):
        ReleaseStore(state_file=path)
    path.write_text("hunter2-canary", "utf-8")
    with pytest.raises(ValueError, match="not JSON") as info:
        ReleaseStore(state_file=path)
    assert "hunter2-canary" not in str(info.value)
    path.write_text('{"format": "aioapollo-test-server-state", "version": 99}', "utf-8")
    with pytest.raises(ValueError, match="version 99"):
        ReleaseStore(state_file=path)


def test_an_unwritable_state_file_keeps_serving_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    store = ReleaseStore(state_file=folder / "state.json")
    folder.rmdir()
    with caplog.at_level("ERROR", logger="aioapollo.testing"):
        store.publish(APP, "application", {"a": "secret-value-canary"})
    assert store.release(APP, "application") is not None
    assert "cannot write state file" in caplog.text
    assert "secret-value-canary" not in caplog.text


async def test_state_file_and_store_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        ApolloTestServer(store=ReleaseStore(), state_file=tmp_path / "s.json")


async def test_a_client_follows_a_server_restarted_with_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = ApolloTestServer(hold_seconds=30, state_file=state)
    await first.start()
    port = first.port
    first.publish(APP, "application", {"v": "1"})
    first.publish(APP, "application", {"v": "2"})
    events = Events()
    client = ApolloClient(APP, config_server=first.url, cache_dir=None, **FAST)
    client.on_change(events)
    second: ApolloTestServer | None = None
    try:
        await client.start()
        async with asyncio.timeout(10):
            await first.wait_for_polls(1)
        await first.close()
        second = ApolloTestServer(port=port, hold_seconds=30, state_file=state)
        await second.start()
        async with asyncio.timeout(10):
            await second.wait_for_polls(1)  # its ids are the saved ones: nothing new, so held
        assert events.seen == []
        second.publish(APP, "application", {"v": "3"})
        event = await events.next(timeout=10)  # through the long poll, not the 5-min refresh
        assert (event.changes["v"].old_value, event.changes["v"].new_value) == ("2", "3")
    finally:
        await client.aclose()
        await first.close()
        if second is not None:
            await second.close()
