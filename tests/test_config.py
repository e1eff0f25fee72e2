"""Constructor validation, from_env and the promise of an inert constructor."""

import asyncio
import threading
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ClientState
from aioapollo._config import default_cache_dir, options_from_env


def test_constructor_is_inert_outside_any_loop() -> None:
    threads = threading.active_count()
    client = ApolloClient("app", config_server="http://127.0.0.1:1")
    assert client.state is ClientState.CREATED
    assert threading.active_count() == threads
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"app_id": "bad id"}, "appId"),
        ({"app_id": ".x"}, "appId"),
        ({"app_id": "a", "namespaces": []}, "namespaces"),
        ({"app_id": "a", "namespaces": ["x", "x"]}, "repeat"),
        ({"app_id": "a", "config_server": None}, "config_server"),
        ({"app_id": "a", "config_server": "localhost:8080"}, "http"),
        ({"app_id": "a", "poll_timeout": 30}, "60"),
    ],
)
def test_invalid_settings_fail_clearly(kwargs: dict, message: str) -> None:
    kwargs.setdefault("config_server", "http://127.0.0.1:8080")
    app_id = kwargs.pop("app_id")
    with pytest.raises(ValueError, match=message):
        ApolloClient(app_id, **kwargs)


def test_server_lists_and_trailing_slashes() -> None:
    client = ApolloClient("a", config_server="http://a:1/, http://b:2/ctx/", namespaces="x")
    assert client.options.config_servers == ("http://a:1", "http://b:2/ctx")
    assert client.namespaces == ("x",)


def test_secret_is_not_in_repr() -> None:
    client = ApolloClient("a", config_server="http://a:1", secret="topsecret")
    assert "topsecret" not in repr(client)
    assert "topsecret" not in repr(client.options)


def test_from_env_reads_java_names() -> None:
    env = {
        "APP_ID": "svc",
        "APOLLO_META": "http://meta:8080",
        "APOLLO_ACCESS_KEY_SECRET": "s",
        "APOLLO_LABEL": "canary",
        "IDC": "sh",
        "APOLLO_CACHE_DIR": "/tmp/c",
        "APOLLO_NAMESPACES": "application, db.json",
    }
    found = options_from_env(env)
    assert found == {
        "app_id": "svc",
        "meta_server": "http://meta:8080",
        "secret": "s",
        "label": "canary",
        "data_center": "sh",
        "cluster": "sh",
        "cache_dir": "/tmp/c",
        "namespaces": ["application", "db.json"],
    }


def test_from_env_direct_service_wins_and_overrides_win() -> None:
    env = {"APP_ID": "svc", "APOLLO_META": "http://m", "APOLLO_CONFIG_SERVICE": "http://c"}
    assert options_from_env(env)["config_server"] == "http://c"
    assert "meta_server" not in options_from_env(env)
    found = options_from_env(env, meta_server="http://other", app_id="x")
    assert found["meta_server"] == "http://other" and "config_server" not in found
    assert options_from_env({**env, "APOLLO_CLUSTER": "c1", "IDC": "dc"})["cluster"] == "c1"
    assert options_from_env({**env, "APOLLO_CACHE_FILE_ENABLE": "false"})["cache_dir"] is None


def test_from_env_requires_app_id() -> None:
    with pytest.raises(ValueError, match="APP_ID"):
        options_from_env({})


def test_from_env_builds_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APP_ID", "svc")
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", "http://c:1")
    monkeypatch.setenv("APOLLO_CACHE_DIR", str(tmp_path))
    client = ApolloClient.from_env(namespaces=["a"])
    assert client.app_id == "svc"
    assert client.options.cache_dir == tmp_path
    assert client.namespaces == ("a",)


def test_default_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "aioapollo"
