"""overrides= (files layered over Apollo, watched) and bootstrap_dir= (a snapshot served when
Apollo cannot answer at start and there is no cache), against the test server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aioapollo import LocalFileError, NamespaceUnavailableError, Source
from aioapollo.testing import ApolloTestServer

from .._support import wait_until, write
from ..conftest import APP, ClientFactory, Events, cache_of

LOCAL_DOCS = Path(__file__).resolve().parents[2] / "docs" / "local.md"


async def test_overrides_layer_over_apollo_are_shown_warned_and_watched(
    server: ApolloTestServer,
    make_client: ClientFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = write(tmp_path / "mine/application", 'timeout: "5"\nmine.only: "x"\n')
    client = make_client(overrides=tmp_path / "mine")
    events = Events.of(client)
    with caplog.at_level(logging.INFO, "aioapollo"):
        await client.start()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "overrides from" in warnings[0].getMessage()
    assert "never in production" in warnings[0].getMessage()
    assert "application=remote (2 key(s) overridden)" in caplog.text
    assert client.get_nowait("timeout") == "5" and client.get_nowait("greeting") == "hello"
    stats = client.stats().namespaces["application"]
    assert stats.overridden == ("mine.only", "timeout") and stats.source is Source.REMOTE
    assert client.stats().as_dict()["namespaces"]["application"]["overridden"] == [
        "mine.only",
        "timeout",
    ]
    # Apollo's release as delivered is what the cache writes (the sinks get it, not the
    # overridden values).
    cache = cache_of(tmp_path / "cache", server.url)
    await wait_until(lambda: (c := cache.load("application")) is not None and c.release_key)
    cached = cache.load("application")
    assert cached is not None and cached.items["timeout"] == "30"
    # Apollo changes an overridden key: the override still wins; another key comes through.
    server.publish(APP, "application", {"greeting": "hey", "timeout": "60"})
    event = await events.next()
    assert set(event.changes) == {"greeting"}
    # Editing the override file re-layers it at once; listeners hear of it.
    write(mine, 'timeout: "7"\n')
    event = await events.next(timeout=1.0)
    assert {k: c.new_value for k, c in event.changes.items()} == {"timeout": "7", "mine.only": None}
    assert client.stats().namespaces["application"].overridden == ("timeout",)
    # A bad edit keeps the last good overrides; deleting the file gives Apollo's values back.
    with caplog.at_level(logging.WARNING, "aioapollo"):
        write(mine, "- not a mapping\n")
        await wait_until(lambda: "keeping its last good overrides" in caplog.text, timeout=2.0)
    assert client.get_nowait("timeout") == "7"
    mine.unlink()
    event = await events.next(timeout=1.0)
    assert event.changes["timeout"].new_value == "60"
    assert client.stats().namespaces["application"].overridden == ()


async def test_a_bad_override_file_fails_start(make_client: ClientFactory, tmp_path: Path) -> None:
    write(tmp_path / "mine/application", "timeout: [5]\n")
    client = make_client(overrides=tmp_path / "mine")
    with pytest.raises(LocalFileError, match=r"overrides: .*values must be strings"):
        await client.start()


async def test_bootstrap_is_served_when_apollo_fails_and_replaced_when_it_answers(
    server: ApolloTestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    snapshot = write(tmp_path / "snap/application", 'greeting: "from the snapshot"\n')
    server.inject("/configs", times=None, status=503)
    client = make_client(bootstrap_dir=snapshot.parent, cache_dir=None)
    events = Events.of(client)
    await client.start()
    assert client.sources["application"] is Source.BOOTSTRAP
    assert client.get_nowait("greeting") == "from the snapshot"
    assert not client.stats().healthy
    server.clear_faults()  # Apollo answers again
    event = await events.next()
    assert {k: c.new_value for k, c in event.changes.items()} == {
        "greeting": "hello",
        "timeout": "30",
    }
    assert client.sources["application"] is Source.REMOTE


async def test_the_cache_wins_over_the_bootstrap_and_none_fails_as_before(
    server: ApolloTestServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    first = make_client()
    await first.start()
    await first.aclose()  # the cache now holds Apollo's release
    write(tmp_path / "snap/application", 'greeting: "from the snapshot"\n')
    server.inject("/configs", times=None, status=503)
    cached = make_client(bootstrap_dir=tmp_path / "snap")
    await cached.start()
    assert cached.sources["application"] is Source.CACHE
    missing = make_client(bootstrap_dir=tmp_path / "nothing", cache_dir=None)
    with pytest.raises(NamespaceUnavailableError):
        await missing.start()


async def test_placeholders_follow_apollo_across_namespaces(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"url": "http://${db.host}:${db.port:5432}/"})
    server.publish(APP, "common", {"db.host": "a"})
    client = make_client(namespaces=["application", "common"], resolve_placeholders=True)
    events = Events.of(client)
    await client.start()
    assert client.get_nowait("url") == "http://a:5432/"
    server.publish(APP, "common", {"db.host": "b", "db.port": "6543"})
    seen = {}
    while "application" not in seen:
        event = await events.next()
        seen[event.namespace] = {k: c.new_value for k, c in event.changes.items()}
    assert seen["application"] == {"url": "http://b:6543/"}
    assert client.get_nowait("url") == "http://b:6543/"


async def test_the_documented_configmap_mounted_as_a_directory_starts_a_client(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """docs/local.md's ConfigMap, as Kubernetes mounts it (one file per key, behind the
    ..data symlink), and its Deployment's mount path and variable agree."""
    import re

    import yaml

    text = LOCAL_DOCS.read_text()
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mount = container["volumeMounts"][0]
    assert spec["volumes"][0]["configMap"]["name"] == configmap["metadata"]["name"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["APOLLO_BOOTSTRAP_DIR"] == mount["mountPath"]
    volume = tmp_path / "volume"
    data = volume / "..2026_01_01_00_00_00.000000000"
    for key, value in configmap["data"].items():
        write(data / key, value)
        (volume / key).symlink_to(Path("..data") / key)
    (volume / "..data").symlink_to(data.name)
    client = make_client(
        config_server="http://127.0.0.1:9",
        cache_dir=None,
        namespaces=env["APOLLO_NAMESPACES"].split(","),
        bootstrap_dir=volume,
    )
    await client.start()
    assert set(client.sources.values()) == {Source.BOOTSTRAP}
    assert client.get_nowait("timeout") == "30"
    assert (await client.namespace("db.json")).data == {"pool": 5}
