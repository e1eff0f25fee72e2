"""Cache files are keyed by everything that decides Apollo's answer, and old files migrate.

Two processes on one host with different labels (or ips, data centers, environments) used to
share one file per namespace: the last writer won, and a cold start with Apollo down could
serve one label's gray release to the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, Source
from aioapollo.testing import ApolloTestServer

from .._support import dead_url, wait_until
from ..conftest import APP, FAST, Events, cache_of


async def test_two_labels_on_one_host_never_serve_each_other_a_gray_release(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    wanted = {None: "plain", "canary": "gray"}
    async with ApolloTestServer(hold_seconds=0.5) as server:
        server.publish(APP, "application", {"feature": "plain"})
        server.publish(APP, "application", {"feature": "gray"}, gray_labels=["canary"])
        url = server.url
        plain = ApolloClient(APP, config_server=url, cache_dir=cache, **FAST)
        canary = ApolloClient(APP, config_server=url, cache_dir=cache, label="canary", **FAST)
        async with plain, canary:  # two processes of one host, running side by side
            assert await plain.get("feature") == "plain"
            assert await canary.get("feature") == "gray"
    # Apollo is down now: each cold start serves what Apollo served to its own label.
    for label, value in wanted.items():
        client = ApolloClient(APP, config_server=url, cache_dir=cache, label=label, **FAST)
        async with client:
            assert client.sources["application"] is Source.CACHE
            assert await client.get("feature") == value, label


@pytest.mark.parametrize(
    "setting",
    [
        {"label": "canary"},
        {"ip": "10.1.2.3"},
        {"data_center": "dc-east"},
        {"config_server": "http://127.0.0.1:1"},  # another environment's servers
    ],
)
def test_each_setting_that_changes_the_answer_has_its_own_directory(
    setting: dict[str, Any], tmp_path: Path
) -> None:
    url = "http://127.0.0.1:2"
    base = cache_of(tmp_path, url)
    other = cache_of(tmp_path, **{"config_server": url, **setting})
    assert other.directory != base.directory
    assert other.directory.parent == base.directory.parent == tmp_path / APP / "config-cache"
    assert other.path("application").name == base.path("application").name
    # The secret does not change the answer: clients differing only by it share a file.
    assert cache_of(tmp_path, url, secret="s").path("application") == base.path("application")


LEGACY = {  # what earlier versions wrote to {cache_dir}/{app}/config-cache/{app}+...json
    "format": "aioapollo-cache/1",
    "appId": APP,
    "cluster": "default",
    "namespace": "application",
    "releaseKey": "r-old",
    "savedAt": 0,
    "configurations": {"greeting": "from an earlier version"},
}


@pytest.mark.parametrize(
    "setting", [{"label": "canary"}, {"ip": "10.1.2.3"}, {"data_center": "dc-east"}]
)
async def test_an_old_layout_file_is_never_served_to_a_client_it_may_not_be_for(
    setting: dict[str, Any], tmp_path: Path
) -> None:
    url = dead_url()
    old = cache_of(tmp_path, url).legacy_path("application")
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(LEGACY))
    client = ApolloClient(
        APP, config_server=url, cache_dir=tmp_path, allow_empty=True, **setting, **FAST
    )
    async with client:
        assert client.sources["application"] is Source.NONE
        assert await client.get("greeting") is None


async def test_an_old_layout_file_serves_a_plain_client_until_its_next_fetch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = dead_url()  # Apollo is down at start
    cache = cache_of(tmp_path, url)
    old = cache.legacy_path("application")
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(LEGACY))
    events = Events()
    client = ApolloClient(APP, config_server=url, cache_dir=tmp_path, **FAST)
    client.on_change(events)
    async with client:
        assert client.sources["application"] is Source.CACHE
        assert await client.get("greeting") == "from an earlier version"
        assert any("by an earlier version" in r.message for r in caplog.records)
        async with ApolloTestServer(hold_seconds=0.5, port=int(url.rsplit(":", 1)[1])) as apollo:
            apollo.publish(APP, "application", {"greeting": "fresh"})
            await events.next(timeout=8)
            await wait_until(cache.path("application").exists)
    new = cache.load("application")
    assert new is not None and not new.legacy and new.items == {"greeting": "fresh"}
    assert json.loads(old.read_text()) == LEGACY  # left for earlier versions still running
