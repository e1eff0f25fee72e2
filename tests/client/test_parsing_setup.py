"""Parsed namespaces at start: a YAML namespace without PyYAML fails in ``start()``, naming the
extra; a first release that does not parse says that ``.data`` has no value yet."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from aioapollo import SyncApolloClient
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory

HINT = r"pip install 'aioapollo-client\[yaml\]'"


@pytest.fixture
def no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError


@pytest.mark.usefixtures("no_yaml")
async def test_a_yaml_namespace_without_pyyaml_fails_at_start_naming_the_extra(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    # It used to start with `.data is None` and fail later, with a TypeError where it was used.
    server.publish(APP, "app.yaml", "feature: on\n")
    client = make_client(namespaces=["application", "app.yaml", "db.json"])
    server.clear_requests()
    with pytest.raises(ImportError, match=rf"namespace 'app.yaml' is YAML, .*{HINT}"):
        await client.start()
    assert server.requests == []  # it failed before any request
    two = make_client(namespaces=["a.yml", "b.yaml"])
    with pytest.raises(ImportError, match=r"namespaces 'a.yml', 'b.yaml' are YAML"):
        await two.start()


@pytest.mark.usefixtures("no_yaml")
def test_the_sync_client_fails_the_same_way_before_starting_a_thread(
    apollo_server_thread: ApolloTestServer,
) -> None:
    url = apollo_server_thread.url
    client = SyncApolloClient(APP, namespaces=["app.yaml"], config_server=url, cache_dir=None)
    threads = threading.active_count()
    with pytest.raises(ImportError, match=HINT):
        client.start()
    assert threading.active_count() == threads
    assert apollo_server_thread.requests == []
    client.close()


async def test_properties_and_json_namespaces_need_no_pyyaml(
    server: ApolloTestServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    server.publish(APP, "db.json", '{"pool": 5}')
    client = make_client(namespaces=["application", "db.json"])
    await client.start()
    assert (await client.namespace("db.json")).data == {"pool": 5}


async def test_a_first_release_that_does_not_parse_says_data_has_no_value_yet(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The warning said "keeping the last parsed value" when none had ever been parsed.
    server.publish(APP, "db.json", '{"pool": ')
    client = make_client(namespaces=["db.json"])
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        await client.start()
    assert client.snapshot("db.json").data is None
    warned = [r.getMessage() for r in caplog.records if "db.json" in r.getMessage()]
    assert warned == [
        "namespace 'db.json': invalid JSON at line 1; .data stays None until a release parses"
    ]
