"""Constructor validation, from_env and the promise of an inert constructor."""

import asyncio
import threading
from pathlib import Path

import pytest

from aioapollo import ApolloClient, ClientOptions, ClientState
from aioapollo._config import KNOWN_ENV, default_cache_dir, misspelt_env, options_from_env


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


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:80a80", "port '80a80' is not a number from 1 to 65535"),
        ("http://127.0.0.1:0", "port '0'"),
        ("http://127.0.0.1:65536", "port '65536'"),
        ("http://apollo:+80", "port '+80'"),
        ("http://apollo:8080:9090", "port '8080:9090'"),
        ("http://apollo:", "port ''"),
        ("http://:8080", "no host"),
        ("http://", "no host"),
        ("ftp://apollo", "must start with http:// or https://"),
        ("localhost:8080", "must start with http:// or https://"),
        ("http://apollo:8080/ctx?env=dev", "query"),
        ("http://apollo:8080/#top", "fragment"),
        ("http://apollo:8080/my ctx", "whitespace"),
        ("http://apollo\t:8080", "whitespace"),
        ("http://apo<llo", "host 'apo<llo'"),
        ("http://[::1:8080", "IPv6"),
        ("http://[::1]8080", "after the IPv6 address"),
    ],
)
@pytest.mark.parametrize("option", ["config_server", "meta_server"])
def test_server_urls_are_validated_at_construction(option: str, url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        ApolloClient("app", **{option: url})
    message = str(info.value)
    assert message.startswith(f"{option} URL {url!r} is not valid: "), message
    assert reason in message


def test_server_urls_are_validated_in_client_options_too() -> None:
    with pytest.raises(ValueError, match="port 'x'"):
        ClientOptions(app_id="app", config_servers=("http://apollo:x",))
    with pytest.raises(ValueError, match="meta_server URL 'http://apollo/x#y'"):
        ClientOptions(app_id="app", meta_servers=("http://apollo/x#y",))


@pytest.mark.parametrize(
    "url",
    [
        "http://apollo",
        "HTTPS://Apollo.Example.com:443",
        "http://apollo-config_1.svc:65535/apollo/config",  # a context path is fine
        "http://[::1]:8080",
        "http://[fe80::1%25eth0]",
        "http://ops:pass%2Fword@127.0.0.1:8080",
        "http://例え.jp:8080",
    ],
)
def test_valid_server_urls_are_accepted(url: str) -> None:
    assert ApolloClient("app", config_server=url).options.config_servers == (url,)
    assert ApolloClient("app", meta_server=url + "/").options.meta_servers == (url,)


def test_an_invalid_url_is_named_without_its_credentials() -> None:
    with pytest.raises(ValueError) as info:
        ApolloClient("app", config_server="http://ops:CANARY-PW@127.0.0.1:80a80")
    message = str(info.value)
    assert "'http://127.0.0.1:80a80'" in message and "port '80a80'" in message
    assert "CANARY" not in message and "ops" not in message
    # An unescaped '/' in a password makes the URL ambiguous: nothing before the last '@' is
    # shown, not even as a "host" or "port".
    with pytest.raises(ValueError) as info:
        ApolloClient("app", meta_server="http://ops:CANARY/PW@127.0.0.1:8080")
    message = str(info.value)
    assert "'http://127.0.0.1:8080'" in message and "percent-encode" in message
    assert "CANARY" not in message and "ops" not in message


def test_from_env_without_a_server_names_arguments_and_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("APOLLO_META", "APOLLO_CONFIG_SERVICE", "APOLLO_CONFIGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ID", "svc")
    with pytest.raises(ValueError) as info:
        ApolloClient.from_env()
    for part in ("config_server=", "meta_server=", "APOLLO_CONFIG_SERVICE", "APOLLO_META"):
        assert part in str(info.value)


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


@pytest.mark.parametrize("name", ["APOLLO_SHARE_POLL", "APOLLO_CACHE_FILE_ENABLE"])
def test_boolean_variables_take_boolean_words_only(name: str) -> None:
    # APOLLO_SHARE_POLL=enabled used to mean off, silently.
    env = {"APP_ID": "svc", "APOLLO_CONFIG_SERVICE": "http://c"}
    for word in ("enabled", "ture", "2", "y"):
        with pytest.raises(ValueError, match=rf"^environment variable {name}='{word}' is not"):
            options_from_env({**env, name: word})
    for word, on in [("true", True), ("ON", True), ("1", True), ("Yes", True), ("false", False),
                     ("off", False), ("0", False), ("no", False)]:  # fmt: skip
        found = options_from_env({**env, name: word})
        if name == "APOLLO_SHARE_POLL":
            assert found["share_poll"] is on
        else:  # off: no disk cache; on: the default one
            assert found.get("cache_dir", "default") == ("default" if on else None)
    assert "share_poll" not in options_from_env({**env, "APOLLO_SHARE_POLL": " "})  # unset


def test_from_env_rejects_a_bad_boolean_through_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ID", "svc")
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", "http://c:1")
    monkeypatch.setenv("APOLLO_SHARE_POLL", "enabled")
    with pytest.raises(ValueError, match="APOLLO_SHARE_POLL"):
        ApolloClient.from_env()


def test_a_variable_close_to_a_known_name_gets_a_did_you_mean(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aioapollo._config._warned_env", set())
    env = {
        "APP_ID": "svc",
        "APOLLO_CONFIG_SERVER": "http://c",  # the misspelling: nothing else names a server
        "APOLLO_NAMESPACE": "db.json",
        "APOLLO_META_SERVER": "http://m",
        "apollo_cluster": "c1",
        # Not aioapollo's, not close to one of its names: left alone.
        "APOLLO_PROPERTY_ORDER_ENABLE": "true",
        "APOLLO_HOME": "/opt/apollo",
        "APOLLO_ENV": "DEV",
    }
    assert misspelt_env(env) == {
        "APOLLO_CONFIG_SERVER": "APOLLO_CONFIG_SERVICE",
        "APOLLO_NAMESPACE": "APOLLO_NAMESPACES",
        "APOLLO_META_SERVER": "APOLLO_META",
        "apollo_cluster": "APOLLO_CLUSTER",
    }
    assert misspelt_env(dict.fromkeys(KNOWN_ENV, "x")) == {}
    with caplog.at_level("WARNING", logger="aioapollo"):
        options_from_env(env)
        options_from_env(env)  # once per process, not per call
    said = [r.getMessage() for r in caplog.records]
    assert (
        said.count(
            "environment variable APOLLO_CONFIG_SERVER is not one aioapollo reads: "
            "did you mean APOLLO_CONFIG_SERVICE?"
        )
        == 1
    )
    assert len(said) == 4
    assert all("http://" not in line for line in said)  # names only, never values
