"""``aioapollo config diff|apply`` compare ENC(...) values by their plain text, never shown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aioapollo._cli.main import main
from aioapollo.crypto import Jasypt
from aioapollo.openapi import ApolloOpenApiClient
from aioapollo.testing import ApolloTestServer

from .conftest import APP, NS, TOKEN

PASSWORD = "cli test password"


@pytest.fixture
def cli_env(portal: ApolloTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APOLLO_PORTAL_URL", portal.url)
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", TOKEN)
    monkeypatch.setenv("APOLLO_OPENAPI_OPERATOR", "ci-bot")
    monkeypatch.setenv("APP_ID", APP)


async def test_config_diff_compares_encrypted_values_by_their_plain_text(
    cli_env: None,
    portal: ApolloTestServer,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: Any,
    api: ApolloOpenApiClient,
) -> None:
    jasypt = Jasypt(PASSWORD)
    held = f"ENC({jasypt.encrypt('s3cr3t')})"
    portal.publish(APP, "application", {"db.password": held, "api.token": held})
    again = f"ENC({jasypt.encrypt('s3cr3t')})"  # the same text: another salt
    other = f"ENC({jasypt.encrypt('another')})"
    path = tmp_path / "DEV" / "default" / "application"
    path.parent.mkdir(parents=True)
    path.write_text(f'db.password: "{again}"\napi.token: "{other}"\n', encoding="utf-8")

    async def cli(*argv: str) -> int:
        return await asyncio.to_thread(main, list(argv))

    # Without the password the ciphertexts differ as text.
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    assert "~ db.password" in capsys.readouterr().out
    monkeypatch.setenv("APOLLO_JASYPT_PASSWORD", PASSWORD)
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    out = capsys.readouterr().out
    assert "db.password" not in out and "~ api.token" in out
    assert "s3cr3t" not in out and "another" not in out
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    capsys.readouterr()
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0
    # The portal kept its ciphertext for the unchanged value.
    assert (await api.get_namespace(**NS)).values["db.password"] == held
