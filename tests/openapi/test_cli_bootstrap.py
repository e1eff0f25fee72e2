"""``aioapollo config export --for-bootstrap``: released values, never masked, served by
``bootstrap_dir`` as they are."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, Source
from aioapollo._cli.main import main
from aioapollo.testing import ApolloTestServer

from .conftest import APP, TOKEN


@pytest.fixture
def cli_env(portal: ApolloTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APOLLO_PORTAL_URL", portal.url)
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", TOKEN)
    monkeypatch.setenv("APP_ID", APP)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_export_for_bootstrap_is_what_clients_get(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    portal.publish(APP, "application", {"timeout": "30", "api.token": "tok-123"})
    portal.publish(APP, "db.json", '{"pool": 5}')
    out = tmp_path / "snap"
    assert await cli("config", "export", str(out), "--for-bootstrap") == 2
    err = capsys.readouterr().err
    assert "api.token" in err and "tok-123" not in err and "Secret" in err
    assert await cli("config", "export", str(out), "--for-bootstrap", "--show-secrets") == 0
    assert (out / "DEV/default/db.json").read_text() == '{"pool": 5}\n'
    # The snapshot starts a client while Apollo does not answer (and there is no cache).
    client = ApolloClient(
        APP,
        namespaces=["application", "db.json"],
        config_server="http://127.0.0.1:9",
        cache_dir=None,
        bootstrap_dir=out / "DEV",
        fetch_retry_delay=0.01,
        connect_timeout=0.5,
    )
    async with client:
        assert client.sources["application"] is Source.BOOTSTRAP
        assert client.get_nowait("api.token") == "tok-123"
        assert (await client.namespace("db.json")).data == {"pool": 5}
