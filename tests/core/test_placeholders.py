"""${key} and ${key:default}: resolved across namespaces, re-resolved when a referenced key
changes, cycles and missing keys reported, never a loop (the store with MemorySource)."""

from __future__ import annotations

import logging

import pytest

from aioapollo._core.placeholders import MAX_DEPTH, Placeholders, install
from aioapollo._core.sources import MemorySource
from aioapollo._core.store import Change, NamespaceStore


def make(*names: str) -> tuple[NamespaceStore, Placeholders, MemorySource, list[Change]]:
    store = NamespaceStore(names or ("application",))
    changes: list[Change] = []
    store.subscribe(changes.append)
    return store, install(store), MemorySource(), changes


async def test_keys_defaults_chains_and_other_namespaces() -> None:
    store, _, source, _ = make("application", "common", "db.json")
    source.publish("common", {"host": "db.local", "port": "5432", "user": "${name:app}"})
    source.publish(
        "application",
        {
            "url": "pg://${user}@${host}:${port}/${db:main}",
            "host": "own.host",  # the same namespace first
            "nested": "${missing:${port}}",
            "plain": "no placeholder",
            "open": "${unterminated",
        },
    )
    source.publish("db.json", {"content": '{"url": "${url}"}'})
    await source.load(store)
    values = store.values["application"]
    assert values["url"] == "pg://app@own.host:5432/main"
    assert values["nested"] == "5432" and values["plain"] == "no placeholder"
    assert values["open"] == "${unterminated"
    assert store.values["common"]["user"] == "app"
    assert store.values["db.json"]["content"] == '{"url": "pg://app@own.host:5432/main"}'
    # What was delivered is kept as it was.
    assert store.records["application"].release.items["url"].startswith("pg://${user}")


async def test_a_change_re_resolves_dependents_and_their_listeners_hear_it() -> None:
    store, _, source, changes = make("application", "common")
    source.publish("common", {"host": "a"})
    source.publish("application", {"url": "http://${host}/", "other": "x"})
    await source.load(store)
    changes.clear()
    await store.deliver(source.publish("common", {"host": "b"}))
    dependent = [c for c in changes if c.record.name == "application"]
    assert len(dependent) == 1 and dependent[0].changed == {"url"}
    assert dependent[0].event is not None and dependent[0].notify
    assert dependent[0].event.changes["url"].new_value == "http://b/"
    # An unrelated key of common changes nothing in application.
    changes.clear()
    await store.deliver(source.publish("common", {"host": "b", "unrelated": "1"}))
    assert [c.record.name for c in changes] == ["common"]


async def test_missing_keys_resolve_once_their_namespace_loads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, placeholders, source, _ = make("application", "common")
    with caplog.at_level(logging.WARNING, "aioapollo"):
        await store.deliver(source.publish("application", {"url": "${host}/x"}), notify=False)
    assert store.values["application"]["url"] == "${host}/x"
    assert placeholders.unresolved() == {"application": ("url",)}
    assert "namespace 'application' key 'url'" in caplog.text
    assert "no namespace of the client has 'host'" in caplog.text
    await store.deliver(source.publish("common", {"host": "h"}), notify=False)
    assert store.values["application"]["url"] == "h/x"
    assert placeholders.unresolved() == {}


async def test_cycles_are_cut_and_reported_once_never_a_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, placeholders, source, _ = make("application", "common")
    with caplog.at_level(logging.WARNING, "aioapollo"):
        source.publish("application", {"a": "${b}", "self": "<${self}>"})
        source.publish("common", {"b": "${a}", "c": "${c:${c}}"})
        await source.load(store)
        await store.deliver(source.publish("common", {"b": "${a}!", "c": "${c:${c}}"}))
    assert store.values["application"]["self"] == "<${self}>"
    assert "a cycle (self -> self)" in caplog.text
    assert "a cycle (a -> b -> a)" in caplog.text or "a cycle (b -> a -> b)" in caplog.text
    assert set(placeholders.unresolved()["application"]) == {"a", "self"}
    said = [r for r in caplog.records if "key 'self'" in r.getMessage()]
    assert len(said) == 1


async def test_deep_chains_stop_at_max_depth() -> None:
    store, placeholders, source, _ = make()
    chain = {f"k{i}": f"${{k{i + 1}}}" for i in range(MAX_DEPTH + 5)}
    chain[f"k{MAX_DEPTH + 5}"] = "end"
    await store.deliver(source.publish("application", chain))
    assert store.values["application"][f"k{MAX_DEPTH + 4}"] == "end"
    assert "k0" in placeholders.unresolved()["application"]
