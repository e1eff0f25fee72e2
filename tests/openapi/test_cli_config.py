"""``aioapollo config export|diff|apply`` against the test server's portal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aioapollo._cli.main import main
from aioapollo.openapi import ApolloOpenApiClient
from aioapollo.testing import ApolloTestServer

from .conftest import APP, NS, TOKEN


@pytest.fixture
def cli_env(portal: ApolloTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APOLLO_PORTAL_URL", portal.url)
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", TOKEN)
    monkeypatch.setenv("APOLLO_OPENAPI_OPERATOR", "ci-bot")
    monkeypatch.setenv("APP_ID", APP)


async def cli(*argv: str) -> int:
    """Run the CLI in a thread (it runs its own event loop), like a subprocess would."""
    return await asyncio.to_thread(main, list(argv))


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


async def test_diff_apply_publish_is_idempotent(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, make_client, events
) -> None:
    client = make_client()
    client.on_change(events)
    await client.start()
    write(
        tmp_path, "DEV/default/application", 'timeout: "60"\nnew.key: "x"\ndb.password: "s3cret"\n'
    )
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    out = capsys.readouterr().out
    assert '~ timeout: "30" -> "60"' in out and '+ new.key = "x"' in out
    assert '- greeting (was "hello")' in out
    assert "s3cret" not in out and "+ db.password = ******" in out
    assert await cli("config", "apply", str(tmp_path), "--publish", "--title", "ci") == 0
    event = await events.next()
    assert {k: c.new_value for k, c in event.changes.items()} == {
        "timeout": "60",
        "new.key": "x",
        "db.password": "s3cret",
        "greeting": None,
    }
    capsys.readouterr()
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    assert "0 namespace(s) changed" in capsys.readouterr().out
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0


async def test_dry_run_changes_nothing(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", '{"timeout": "1"}')
    before = len(portal.item_history(APP, "application"))
    assert await cli("config", "apply", str(tmp_path), "--publish", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out and "would publish" in out
    assert len(portal.item_history(APP, "application")) == before


async def test_apply_without_publish_then_publish(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, api: ApolloOpenApiClient
) -> None:
    write(tmp_path, "DEV/default/application", 'timeout: "61"\ngreeting: "hello"\n')
    assert await cli("config", "apply", str(tmp_path)) == 0
    assert portal.store.release(APP, "application").configurations["timeout"] == "30"  # type: ignore[union-attr]
    # Our own unpublished changes are not "others'": publishing them is what the files ask.
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    latest = await api.latest_release(**NS)
    assert latest is not None and latest.configurations["timeout"] == "61"


async def test_others_unpublished_changes_refuse_publish(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    await api.as_operator("alice").update_item(**NS, key="feature", value="on", create=True)
    write(tmp_path, "DEV/default/application", 'timeout: "30"\ngreeting: "hi"\n')
    assert await cli("config", "apply", str(tmp_path), "--publish") == 6
    err = capsys.readouterr().err
    assert "unpublished changes" in err and "feature" in err and "nothing changed" in err
    assert (await api.get_item(**NS, key="greeting")).value == "hello"  # type: ignore[union-attr]
    assert await cli("config", "apply", str(tmp_path), "--publish", "--include-unpublished") == 0
    latest = await api.latest_release(**NS)
    assert latest is not None and dict(latest.configurations) == {"timeout": "30", "greeting": "hi"}


async def test_lock_and_four_eyes(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    portal.namespace_lock = True
    await api.as_operator("alice").update_item(**NS, key="timeout", value="31")
    write(tmp_path, "DEV/default/application", 'timeout: "32"\ngreeting: "hello"\n')
    assert await cli("config", "apply", str(tmp_path)) == 6
    assert "locked by alice" in capsys.readouterr().err
    await api.as_operator("bob").publish(**NS, title="alice's change")
    # Now ci-bot edits, so ci-bot may not publish: the portal's four-eyes rule. Nothing is
    # locked before the edit, so that is only seen after it: exit 8, Apollo was changed.
    assert await cli("config", "apply", str(tmp_path), "--publish") == 8
    assert "another operator must publish" in capsys.readouterr().err
    assert await cli("config", "apply", str(tmp_path), "--publish", "--emergency") == 0


async def test_raw_namespaces_and_export(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    portal.publish(APP, "db.json", '{"pool": 5}')
    portal.publish(APP, "application", {"timeout": "30", "api.token": "tok-123"})
    out_dir = tmp_path / "export"
    assert await cli("config", "export", str(out_dir)) == 0
    captured = capsys.readouterr()
    assert "masked 1 value" in captured.err and "tok-123" not in captured.err + captured.out
    assert (out_dir / "DEV/default/db.json").read_text() == '{"pool": 5}\n'
    exported = (out_dir / "DEV/default/application").read_text()
    assert 'timeout: "30"' in exported and "tok-123" not in exported
    # A mask left in the file keeps the portal's value: nothing to apply.
    assert await cli("config", "apply", str(out_dir)) == 0
    assert "0 namespace(s) changed" in capsys.readouterr().out
    assert await cli("config", "export", str(out_dir), "--show-secrets") == 0
    assert "tok-123" in (out_dir / "DEV/default/application").read_text()
    assert await cli("config", "diff", str(out_dir), "--exit-code") == 0
    write(out_dir, "DEV/default/db.json", '{"pool": 6}\n')
    assert await cli("config", "apply", str(out_dir), "--publish") == 0
    assert portal.store.release(APP, "db.json").configurations["content"] == '{"pool": 6}'  # type: ignore[union-attr]


async def test_usage_errors(cli_env: None, tmp_path: Path, capsys: Any, monkeypatch) -> None:
    assert await cli("config", "diff", str(tmp_path / "missing")) == 2
    write(tmp_path, "DEV/default/application", "timeout: 30\n")
    assert await cli("config", "diff", str(tmp_path)) == 2
    assert "must be strings" in capsys.readouterr().err
    write(tmp_path, "DEV/default/application", 'timeout: "30"\n')
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", "bad-token")
    assert await cli("config", "diff", str(tmp_path)) == 4
    monkeypatch.delenv("APOLLO_OPENAPI_TOKEN")
    assert await cli("config", "diff", str(tmp_path)) == 2
    assert "APOLLO_OPENAPI_TOKEN" in capsys.readouterr().err
    write(tmp_path, "DEV/default/nope", 'a: "b"\n')
    monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", TOKEN)
    assert await cli("config", "diff", str(tmp_path)) == 7


async def test_a_file_that_does_not_parse_is_named_without_its_values(
    cli_env: None, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", 'user: "app"\npassword: s3cret: [\n')
    assert await cli("config", "diff", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML or JSON (line 2)" in err
    assert "s3cret" not in err
