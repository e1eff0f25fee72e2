"""``aioapollo config`` as a CI pipeline uses it: what it compares, what it refuses before
changing anything, and what it says when a change stops part way (against the test portal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aioapollo.openapi import ApolloOpenApiClient
from aioapollo.testing import ApolloTestServer

from .conftest import APP, NS, TOKEN
from .test_cli_config import cli, cli_env, write

__all__ = ["cli_env"]  # the fixture, used by name


def _items(portal: ApolloTestServer, namespace: str = "application") -> int:
    """How many item changes the portal has recorded (to prove nothing was changed)."""
    return len(portal.item_history(APP, namespace))


def _released(portal: ApolloTestServer, namespace: str = "application") -> dict[str, str]:
    release = portal.store.release(APP, namespace)
    assert release is not None
    return dict(release.configurations)


# ------------------------------------------------------------------ diff sees what is served


async def test_diff_after_a_rollback_compares_with_what_clients_are_served(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    write(tmp_path, "DEV/default/application", 'greeting: "hello"\ntimeout: "60"\n')
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    latest = await api.latest_release(**NS)
    assert latest is not None
    await api.rollback(env="DEV", release_id=latest.id)
    assert _released(portal)["timeout"] == "30"  # clients are served the old release again
    capsys.readouterr()

    # The working items still equal the files, but what clients get does not.
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    out = capsys.readouterr().out
    assert "served" in out and '~ timeout: "30" -> "60"' in out
    assert "the items (editable) match the files" in out

    # A plain apply has nothing to edit, and says that clients get something else.
    assert await cli("config", "apply", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "0 namespace(s) changed" in out and "apply --publish" in out
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    assert _released(portal)["timeout"] == "60"
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0


async def test_diff_names_both_sides_when_items_and_release_differ(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    write(tmp_path, "DEV/default/application", 'greeting: "hello"\ntimeout: "30"\n')
    await api.update_item(**NS, key="timeout", value="31")
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    out = capsys.readouterr().out
    assert "items (editable)" in out and '~ timeout: "31" -> "30"' in out
    # Clients already get what the files say: only the items differ.
    assert "release 1 (served to clients) matches the files" in out


# --------------------------------------------------------------------- typed namespace files


@pytest.mark.parametrize(
    ("namespace", "published", "text", "said"),
    [
        ("db.json", '{"pool": 5}', '{"pool": 6\n', "JSON"),
        ("db.json", '{"pool": 5}', "\n", "empty"),
        ("app.yaml", "port: 9000", "port: [9001\n", "YAML"),
        ("logback.xml", "<configuration/>", "<configuration>\n", "XML"),
    ],
)
async def test_invalid_typed_namespace_is_refused_before_any_change(
    cli_env: None,
    portal: ApolloTestServer,
    tmp_path: Path,
    capsys: Any,
    namespace: str,
    published: str,
    text: str,
    said: str,
) -> None:
    portal.publish(APP, namespace, published)
    write(tmp_path, "DEV/default/application", 'greeting: "hi"\ntimeout: "30"\n')
    write(tmp_path, f"DEV/default/{namespace}", text)
    before = _items(portal), _items(portal, namespace)
    assert await cli("config", "apply", str(tmp_path), "--publish") == 2
    err = capsys.readouterr().err
    assert said in err and namespace in err and "nothing changed" in err
    assert (_items(portal), _items(portal, namespace)) == before
    assert _released(portal, namespace)["content"] == published
    assert await cli("config", "diff", str(tmp_path)) == 2


async def test_valid_typed_namespaces_pass(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path
) -> None:
    portal.publish(APP, "app.yaml", "port: 9000")
    portal.publish(APP, "logback.xml", "<configuration/>")
    write(tmp_path, "DEV/default/app.yaml", "port: 9001\n")
    write(tmp_path, "DEV/default/logback.xml", "<configuration><root/></configuration>\n")
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    assert _released(portal, "app.yaml")["content"] == "port: 9001"


# -------------------------------------------------------------------- the four-eyes rule


async def test_four_eyes_refusal_after_editing_says_what_was_left(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    portal.namespace_lock = True  # nothing is locked yet: the switch cannot be seen up front
    portal.publish(APP, "db", {"url": "a"})
    write(tmp_path, "DEV/default/application", 'greeting: "hello"\ntimeout: "45"\n')
    write(tmp_path, "DEV/default/db", 'url: "b"\n')
    assert await cli("config", "apply", str(tmp_path), "--publish") == 8
    err = capsys.readouterr().err
    assert "nothing changed" not in err
    assert "DEV/default/application" in err and "timeout" in err
    assert "not published" in err and "locked by ci-bot" in err
    assert "DEV/default/db: not touched" in err
    assert "--emergency" in err
    assert all(change.operator != "ci-bot" for change in portal.item_history(APP, "db"))


async def test_four_eyes_refusal_up_front_when_the_lock_is_seen(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    portal.namespace_lock = True
    # An earlier plain apply left ci-bot holding the lock: ci-bot may not publish it.
    write(tmp_path, "DEV/default/application", 'greeting: "hello"\ntimeout: "45"\n')
    assert await cli("config", "apply", str(tmp_path)) == 0
    write(tmp_path, "DEV/default/application", 'greeting: "hello"\ntimeout: "46"\n')
    before = _items(portal)
    assert await cli("config", "apply", str(tmp_path), "--publish") == 6
    err = capsys.readouterr().err
    assert "nothing changed" in err and "four-eyes" in err and "--emergency" in err
    assert _items(portal) == before

    # Alice's lock of another namespace shows the switch is on: refused before editing too.
    await api.as_operator("alice").publish(**NS, title="publish ci-bot's edit")
    portal.publish(APP, "db", {"url": "a"})
    await api.as_operator("alice").update_item(**{**NS, "namespace": "db"}, key="url", value="x")
    write(tmp_path, "DEV/default/db", 'url: "x"\n')
    before = _items(portal)
    assert await cli("config", "apply", str(tmp_path), "--publish") == 6
    err = capsys.readouterr().err
    assert "four-eyes" in err and "DEV/default/application" in err and "locked by alice" in err
    assert _items(portal) == before


# ------------------------------------------------------------- others' unpublished changes


async def test_plain_apply_refuses_to_overwrite_others_unpublished_changes(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    await api.as_operator("alice").update_item(**NS, key="timeout", value="99")
    write(tmp_path, "DEV/default/application", 'greeting: "hi"\ntimeout: "30"\n')
    before = _items(portal)
    assert await cli("config", "apply", str(tmp_path)) == 6
    err = capsys.readouterr().err
    assert "timeout" in err and "--include-unpublished" in err and "nothing changed" in err
    assert _items(portal) == before
    assert await cli("config", "apply", str(tmp_path), "--include-unpublished") == 0
    assert (await api.get_item(**NS, key="timeout")).value == "30"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- value sizes


async def test_a_value_over_the_length_limit_is_refused_before_sending(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", f'greeting: "hello"\nbig: "{"x" * 5_000_000}"\n')
    portal.clear_requests()
    assert await cli("config", "apply", str(tmp_path), "--publish") == 7
    err = capsys.readouterr().err
    assert "big" in err and "20,000" in err and "--max-value-length" in err
    assert "nothing changed" in err
    assert not [r for r in portal.requests if r.method != "GET"]


async def test_a_body_the_portal_refuses_is_not_retried(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", f'greeting: "hello"\nbig: "{"x" * 5_000_000}"\n')
    portal.clear_requests()
    code = await cli("config", "apply", str(tmp_path), "--max-value-length", "0")
    err = capsys.readouterr().err
    assert code == 7, err
    assert "too large" in err and "20,000" in err
    assert len([r for r in portal.requests if r.method == "PUT"]) == 1  # not retried


# ------------------------------------------------------------------------ masked secrets


async def test_diff_right_after_export_with_masked_secrets(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, api: ApolloOpenApiClient
) -> None:
    portal.publish(APP, "application", {"timeout": "30", "api.token": "tok-123"})
    assert await cli("config", "export", str(tmp_path)) == 0
    assert "tok-123" not in (tmp_path / "DEV/default/application").read_text()
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0
    # The unchanged mask keeps the portal's value; the other keys apply as usual.
    write(tmp_path, "DEV/default/application", 'api.token: "******"\ntimeout: "31"\n')
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    assert _released(portal) == {"timeout": "31", "api.token": "tok-123"}
    capsys.readouterr()

    # Someone's unpublished change of the secret is not taken for the file's.
    await api.as_operator("alice").update_item(**NS, key="api.token", value="tok-456")
    assert await cli("config", "apply", str(tmp_path), "--publish") == 6
    assert "api.token" in capsys.readouterr().err
    assert await cli("config", "diff", str(tmp_path)) == 0
    assert "tok-456" not in capsys.readouterr().out

    # A mask for a key the portal does not hold stands for no value.
    write(tmp_path, "DEV/default/application", 'db.password: "******"\ntimeout: "31"\n')
    assert await cli("config", "diff", str(tmp_path)) == 2
    assert "db.password" in capsys.readouterr().err


# ---------------------------------------------------------------------------- operator


async def test_apply_without_an_operator_fails_up_front(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("APOLLO_OPENAPI_OPERATOR")
    write(tmp_path, "DEV/default/application", 'greeting: "hi"\ntimeout: "30"\n')
    for extra in ((), ("--dry-run",), ("--publish",)):
        assert await cli("config", "apply", str(tmp_path), *extra) == 2
        captured = capsys.readouterr()
        assert "--operator" in captured.err and "APOLLO_OPENAPI_OPERATOR" in captured.err
        assert "Traceback" not in captured.err and captured.out == ""
    assert await cli("config", "diff", str(tmp_path)) == 0  # reading needs no operator


# ------------------------------------------------------------------------ text namespaces


async def test_text_namespaces_keep_a_final_newline_out_of_the_value(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    portal.publish(APP, "db.json", '{"pool": 5}')
    portal.publish(APP, "notes.txt", "line one\n")  # stored with its own final newline
    assert await cli("config", "export", str(tmp_path)) == 0
    assert (tmp_path / "DEV/default/db.json").read_text() == '{"pool": 5}\n'
    assert (tmp_path / "DEV/default/notes.txt").read_text() == "line one\n\n"
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0
    # A file without the final newline stands for the same value.
    write(tmp_path, "DEV/default/db.json", '{"pool": 5}')
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 0
    capsys.readouterr()

    # A whitespace-only change is a change, shown as a real diff.
    write(tmp_path, "DEV/default/db.json", '{"pool": 5} \n')
    write(tmp_path, "DEV/default/notes.txt", "line one\n")
    assert await cli("config", "diff", str(tmp_path), "--exit-code") == 5
    out = capsys.readouterr().out
    assert '-{"pool": 5}\n' in out and '+{"pool": 5} \n' in out
    assert "\\ No newline at end of file" in out
    assert "whitespace only" in out
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0
    assert _released(portal, "db.json")["content"] == '{"pool": 5} '
    assert _released(portal, "notes.txt")["content"] == "line one"


# ----------------------------------------------------------------------------- tokens


async def test_a_server_without_an_openapi_token_says_so(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    async with ApolloTestServer() as bare:
        bare.publish(APP, "application", {"timeout": "30"})
        monkeypatch.setenv("APOLLO_PORTAL_URL", bare.url)
        monkeypatch.setenv("APOLLO_OPENAPI_TOKEN", TOKEN)
        monkeypatch.setenv("APP_ID", APP)
        write(tmp_path, "DEV/default/application", 'timeout: "30"\n')
        assert await cli("config", "diff", str(tmp_path)) == 4
        err = capsys.readouterr().err
        assert "this test server has no OpenAPI token configured" in err
        assert TOKEN not in err
        # The same words fit a real portal's 401 to a wrong token.
        bare.add_openapi_token("another-token", apps=[APP])
        assert await cli("config", "diff", str(tmp_path)) == 4
        err = capsys.readouterr().err
        assert "did not accept the token" in err and "no OpenAPI token configured" in err


# ------------------------------------------------------------------- stopping part way

_ITEMS = "/openapi/v1/envs/DEV/apps/test-app/clusters/default/namespaces/application/items/"


async def test_a_failure_after_the_first_change_exits_8_and_says_what_is_left(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", 'a: "1"\nb: "2"\nc: "3"\ntimeout: "30"\n')
    portal.inject(_ITEMS + "b", method="PUT", status=503, times=None)
    assert await cli("config", "apply", str(tmp_path), "--publish") == 8
    err = capsys.readouterr().err
    assert "Apollo WAS changed" in err and "items changed: a;" in err
    assert "setting b failed and may or may not have been made" in err
    assert "not changed: c, greeting" in err and "not published" in err
    portal.clear_faults()
    assert await cli("config", "apply", str(tmp_path), "--publish") == 0  # safe to run again
    assert _released(portal) == {"a": "1", "b": "2", "c": "3", "timeout": "30"}


async def test_a_refused_first_change_is_still_nothing_changed(
    cli_env: None, portal: ApolloTestServer, tmp_path: Path, capsys: Any
) -> None:
    write(tmp_path, "DEV/default/application", 'a: "1"\ngreeting: "hello"\ntimeout: "30"\n')
    portal.inject(_ITEMS + "a", method="PUT", status=400, body='{"message": "no"}')
    assert await cli("config", "apply", str(tmp_path)) == 7
    assert "WAS changed" not in capsys.readouterr().err
    assert _items(portal) == 2  # the adopted release's two items, nothing else
