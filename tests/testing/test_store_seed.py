"""ReleaseStore rules and seed files (JSON and YAML)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
from pathlib import Path

import pytest
from yarl import URL

from aioapollo import ApolloClient
from aioapollo.testing import ApolloTestServer, ReleaseStore
from aioapollo.testing._seed import SeedError, apply_seed, load_seed

from .conftest import Http


def test_names_are_normalised_like_namespace_util() -> None:
    store = ReleaseStore()
    assert store.create_namespace("app", "FX.Apollo.properties") == "FX.Apollo"
    assert store.create_namespace("app", "fx.apollo") == "FX.Apollo"  # first spelling kept
    assert store.canonical("APP", "FX.APOLLO.Properties") == "FX.Apollo"
    assert store.canonical("other", "fx.apollo") == "fx.apollo"  # not public: kept as sent
    store.create_namespace("owner", "Shared.Ns", public=True)
    assert store.canonical("other", "shared.ns") == "Shared.Ns"
    assert store.public_owner("SHARED.NS") == "owner"
    # Another app can use (associate) it, not make it public again.
    assert store.create_namespace("other", "shared.NS") == "Shared.Ns"
    assert not store.belongs_to("other", "Shared.Ns")
    with pytest.raises(ValueError, match="belongs to app 'owner'"):
        store.create_namespace("other", "Shared.Ns", public=True)
    # Every app that was touched has "application"; an unknown app has no namespaces at all.
    assert store.belongs_to("other", "application")
    assert not store.belongs_to("unknown", "application")


def test_publish_validation_and_notification_ids() -> None:
    store = ReleaseStore()
    with pytest.raises(TypeError):
        store.publish("app", "application", {"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        store.publish("", "application", {})
    seen: list[tuple[str, int]] = []
    unsubscribe = store.subscribe(lambda key, nid: seen.append((key, nid)))
    store.publish("app", "application", {"a": "1"})
    store.publish("app", "application", {"a": "2"}, cluster="c")
    unsubscribe()
    store.publish("app", "application", {"a": "3"})
    assert seen == [("app+default+application", 1), ("app+c+application", 2)]
    assert store.notification_ids(["app+default+application", "app+c+application", "x"]) == {
        "app+default+application": 3,
        "app+c+application": 2,
    }
    release = store.release("app", "application")
    assert release is not None
    assert dict(release.configurations) == {"a": "3"}


def test_reprs_hide_values_and_secrets(caplog: pytest.LogCaptureFixture) -> None:
    store = ReleaseStore()
    caplog.set_level(logging.DEBUG, logger="aioapollo.testing")
    store.publish("app", "application", {"password": "hunter2"})
    store.set_secret("app", "topsecret")
    release = store.release("app", "application")
    text = repr(store) + repr(release) + repr(ApolloTestServer()) + caplog.text
    assert "hunter2" not in text
    assert "topsecret" not in text
    assert "published app+default+application" in caplog.text


SEED = {
    "settings": {"holdSeconds": 5, "incrementalSync": True, "configServices": ["http://h:1"]},
    "apps": {
        "SampleApp": {
            "secret": None,
            "namespaces": {
                "application": {"timeout": 100, "enabled": True, "name": "x"},
                "db.json": '{"url": "jdbc:x"}',
                "later": None,
                "shared": {"own": "1"},
            },
            "clusters": {"SHAJQ": {"application": {"timeout": "200"}}},
            "gray": [{"namespace": "application", "labels": ["canary"], "items": {"g": "1"}}],
        },
        "Owner": {"public": {"shared": {"pub": "1"}}, "secret": ["s1", "s2"]},
    },
}


async def test_seed_from_json_and_yaml(tmp_path: Path, http: Http) -> None:
    yaml = pytest.importorskip("yaml")
    for path in (tmp_path / "seed.json", tmp_path / "seed.yaml"):
        text = json.dumps(SEED) if path.suffix == ".json" else yaml.safe_dump(SEED)
        path.write_text(text, encoding="utf-8")
        async with ApolloTestServer() as server:
            assert apply_seed(server, load_seed(path)) == 6
            assert (server.hold_seconds, server.incremental_sync) == (5.0, True)
            assert server.config_services == ["http://h:1"]
            base = f"{server.url}/configs/SampleApp"
            app = (await http.get(f"{base}/default/application")).json()
            assert app["configurations"] == {"timeout": "100", "enabled": "true", "name": "x"}
            assert (await http.get(f"{base}/SHAJQ/application")).json()["configurations"] == {
                "timeout": "200"
            }
            gray = await http.get(f"{base}/default/application?label=canary")
            assert gray.json()["configurations"] == {"g": "1"}
            assert (await http.get(f"{base}/default/later")).status == 404
            shared = (await http.get(f"{base}/default/shared")).json()
            assert shared["configurations"] == {"pub": "1", "own": "1"}
            assert server.store.secrets("owner") == ("s1", "s2")


def test_seed_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ApolloTestServer()
    for bad, message in (
        ({"apps": {"a": {"namespaces": {"application": {"k": {"nested": 1}}}}}}, "scalars"),
        ({"apps": {"a": {"namespaces": {"application": "text"}}}}, "non-properties"),
        ({"apps": {"a": {"bogus": 1}}}, "unknown keys"),
        ({"apps": {"a": {"gray": [{"items": {}}]}}}, "needs 'namespace'"),
        ({"nope": 1}, "unknown top-level"),
        ({"apps": []}, "must be a mapping"),
    ):
        with pytest.raises(SeedError, match=message):
            apply_seed(server, bad)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(SeedError, match="not valid JSON"):
        load_seed(tmp_path / "bad.json")
    with pytest.raises(SeedError, match="cannot read"):
        load_seed(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(SeedError, match="top level"):
        load_seed(tmp_path / "list.json")
    (tmp_path / "seed.yml").write_text("apps: {}\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(SeedError, match=r"pip install 'aioapollo-client\[yaml\]'"):
        load_seed(tmp_path / "seed.yml")


def _docs_seed_example() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text("utf-8")
    found = re.search(r"Seed file format.*?```yaml\n(.*?)```", text, re.S)
    assert found is not None, "docs/testing.md has no seed example"
    return found.group(1)


async def test_the_docs_seed_example_works_copied_verbatim(tmp_path: Path) -> None:
    """Discovery must lead back to this server, never to an address on someone's network."""
    yaml = pytest.importorskip("yaml")
    example = _docs_seed_example()
    services = yaml.safe_load(example)["settings"]["configServices"]
    assert all(ipaddress.ip_address(URL(url).host or "").is_loopback for url in services)
    # As `serve --port 8080 --data seed.yaml` would run it; on a free port, 8080 may be taken.
    async with ApolloTestServer() as probe:
        port = probe.port
    seed = tmp_path / "apollo-seed.yaml"
    seed.write_text(example.replace("8080", str(port)), encoding="utf-8")
    async with ApolloTestServer(port=port) as server:
        apply_seed(server, load_seed(seed))
        client = ApolloClient(
            "my-app",
            namespaces=["application", "datasource.json"],
            meta_server=server.url,  # discovery: /services/config lists configServices
            cache_dir=None,
            start_timeout=10,
        )
        async with client:
            assert await client.get("timeout") == "30"
            assert (await client.namespace("datasource.json")).data == {
                "url": "jdbc:mysql://db/app"
            }
