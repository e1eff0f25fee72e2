"""The namespace store and its seams, with the in-memory source: no sockets, no client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from aioapollo import Source
from aioapollo._core.sources import MemorySource
from aioapollo._core.store import Change, NamespaceStore, Release
from aioapollo._core.supervise import Progress


def collect(store: NamespaceStore) -> list[Change]:
    changes: list[Change] = []
    store.subscribe(changes.append)
    return changes


async def test_a_release_changes_values_id_and_messages_in_one_step_and_tells_each_sink_once():
    store = NamespaceStore(["application", "db.json"])
    first, second = collect(store), collect(store)
    seen_during: list[tuple[int, str | None]] = []
    # A sink sees the whole release applied: values and notification id together.
    store.subscribe(
        lambda c: seen_during.append(
            (c.record.notification_id, store.values[c.record.name].get("k"))
        )
    )
    source = MemorySource()
    source.publish("application", {"k": "v1"})
    assert await source.load(store) == {"application"}
    assert first[0].first and first[0].event is None  # a first load tells no listener
    task = asyncio.create_task(source.run(store, Progress("memory")))
    release = source.publish("application", {"k": "v2", "new": "x"})
    async with asyncio.timeout(5):
        while len(first) < 2:  # noqa: ASYNC110 - the sink has no event to wait on
            await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    change = first[1]
    assert second == first  # every sink got the very same Change objects, once each
    assert change.changed == {"k", "new"}
    assert change.event is not None and change.event.changes["k"].new_value == "v2"
    assert change.record.notification_id == release.notification_id
    assert seen_during[-1] == (release.notification_id, "v2")
    assert store.records["db.json"].snapshot is None  # untouched


def test_the_read_view_is_one_dict_for_ever():
    store = NamespaceStore(["application"])
    view = store.values
    for n in range(3):
        store.apply(_release({"k": str(n)}, n))
    assert store.values is view and view["application"] == {"k": "2"}


def test_advancing_alone_tells_sinks_without_an_event():
    store = NamespaceStore(["application"])
    store.apply(_release({"k": "v"}, 1))
    changes = collect(store)
    store.advance("application", 5, {"app+default+application": 5})
    store.advance("application", 5, {"app+default+application": 5})  # nothing new: silent
    assert len(changes) == 1 and changes[0].release is None and changes[0].event is None
    assert store.records["application"].notification_id == 5


def test_a_transform_feeds_the_read_view_while_the_record_keeps_what_was_delivered():
    store = NamespaceStore(["application"])

    def upper(namespace: str, items: Mapping[str, str]) -> Mapping[str, str]:
        return {k: v.upper() for k, v in items.items()}

    store.add_transform(upper)
    store.apply(_release({"k": "secret"}, 1))
    record = store.records["application"]
    assert store.values["application"] == {"k": "SECRET"}
    assert record.release is not None and record.release.items == {"k": "secret"}


def test_a_failing_transform_keeps_the_last_good_values():
    store = NamespaceStore(["application"])
    store.apply(_release({"k": "good"}, 1))

    def broken(namespace: str, items: Mapping[str, str]) -> Mapping[str, str]:
        raise ValueError("cannot")

    store.add_transform(broken)
    with pytest.raises(ValueError):
        store.apply(_release({"k": "bad"}, 2))
    assert store.values["application"] == {"k": "good"}
    assert store.records["application"].notification_id == 1


def test_a_sink_that_raises_stops_neither_the_others_nor_the_source(caplog):
    store = NamespaceStore(["application"])
    store.subscribe(lambda c: 1 / 0)
    after = collect(store)
    store.apply(_release({"k": "v"}, 1))
    assert len(after) == 1
    assert "a sink of namespace 'application' failed" in caplog.text


def test_reprs_never_show_values():
    release = _release({"password": "hunter2"}, 1)
    store = NamespaceStore(["application"])
    store.apply(release)
    shown = repr(release) + repr(store) + repr(store.records["application"])
    assert "hunter2" not in shown


def _release(items: Mapping[str, str], nid: int) -> Release:
    return Release(
        namespace="application",
        items=items,
        release_key=f"r{nid}",
        source=Source.REMOTE,
        notification_id=nid,
    )
