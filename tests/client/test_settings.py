"""Typed settings (aioapollo.integrations.pydantic) against the real test server."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aioapollo import ClientStateError, NamespaceNotFoundError
from aioapollo.integrations.pydantic import (
    ApolloBaseSettings,
    ApolloSettingsSource,
    SettingsValidationError,
    bind_settings,
    snapshot_values,
)
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory, Events

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "settings_app.py"


class Db(BaseModel):
    host: str
    port: int = 5432


class Plain(BaseModel):
    port: int
    name: str
    debug: bool = False
    hosts: list[str] = []
    db: Db | None = None


class Env(ApolloBaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIOAPOLLO_TEST_")

    port: int = 1
    name: str = "default-name"
    mode: str = "default-mode"


class Outcomes:
    """Collects on_update / on_error calls; waits are bounded."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def update(self, settings: Any) -> None:
        self.queue.put_nowait(("update", settings))

    async def error(self, error: SettingsValidationError) -> None:
        self.queue.put_nowait(("error", error))

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self.queue.get(), 5.0)


async def test_namespace_validates_into_a_typed_model(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(
        APP,
        "application",
        {
            "PORT": "8080",
            "name": "svc",
            "hosts": '["a", "b"]',
            "db.host": "db.local",
            "db.port": "6432",
            "debug": "yes",
            "unrelated.key": "ignored",
        },
    )
    client = make_client()
    await client.start()
    live = bind_settings(client, Plain)
    assert live.current == Plain(
        port=8080, name="svc", debug=True, hosts=["a", "b"], db=Db(host="db.local", port=6432)
    )
    assert live() is live.current and live.last_error is None


async def test_invalid_publish_is_rejected_until_a_valid_one(
    server: ApolloTestServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.publish(APP, "application", {"port": "8080", "name": "svc"})
    client = make_client()
    await client.start()
    live = bind_settings(client, Plain)
    outcomes = Outcomes()
    live.on_update(outcomes.update)
    live.on_error(outcomes.error)
    first = live.current

    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        server.publish(APP, "application", {"port": "not-a-port-7f3a", "name": "svc"})
        kind, error = await outcomes.next()
    assert kind == "error" and isinstance(error, SettingsValidationError)
    assert live.current is first and live.last_error is error
    assert error.errors[0]["loc"] == ("port",) and error.errors[0]["type"] == "int_parsing"
    assert error.namespace == "application" and error.release_key
    assert "not-a-port-7f3a" not in str(error) and "not-a-port-7f3a" not in caplog.text
    assert "keeping the last valid settings" in caplog.text
    assert await client.get("port") == "not-a-port-7f3a"  # raw reads still see the release

    server.publish(APP, "application", {"port": "9090"})  # a required key is missing
    kind, error = await outcomes.next()
    assert kind == "error" and error.errors[0]["loc"] == ("name",)
    assert error.errors[0]["type"] == "missing" and live.current is first

    server.publish(APP, "application", {"port": "9090", "name": "svc2"})
    kind, settings = await outcomes.next()
    assert kind == "update" and settings == Plain(port=9090, name="svc2")
    assert live.current is settings and live.last_error is None

    seen = Events()
    client.on_change(seen)  # registered after the binding, so called after it
    server.publish(APP, "application", {"port": "9090", "name": "svc2", "other.key": "x"})
    await seen.next()
    assert outcomes.queue.empty()  # a release that changed no field of the model
    assert live.current is settings


async def test_binding_an_invalid_namespace_fails_fast(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"port": "x-secret-ish"})
    client = make_client()
    await client.start()
    with pytest.raises(SettingsValidationError) as caught:
        bind_settings(client, Plain)
    message = str(caught.value)
    assert "Plain from namespace 'application'" in message
    assert "port: Input should be a valid integer" in message and "name: Field required" in message
    assert "x-secret-ish" not in message and caught.value.__cause__ is None
    listeners = client.stats().listeners
    assert listeners is not None and listeners.listeners == 0  # nothing left behind


async def test_binding_before_start_validates_lazily(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"port": "1", "name": "n"})
    client = make_client()
    live = bind_settings(client, Plain)
    with pytest.raises(ClientStateError):
        live.current  # noqa: B018
    await client.start()
    assert live.current.port == 1
    with pytest.raises(NamespaceNotFoundError):
        bind_settings(client, Plain, namespace="not-watched")


async def test_precedence_init_env_apollo_defaults(
    server: ApolloTestServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.publish(APP, "application", {"port": "8080", "name": "from-apollo", "mode": "apollo"})
    monkeypatch.setenv("AIOAPOLLO_TEST_NAME", "from-env")
    monkeypatch.setenv("AIOAPOLLO_TEST_MODE", "env")
    client = make_client()
    await client.start()
    live = bind_settings(client, Env, overrides={"mode": "init"})
    assert (live.current.mode, live.current.name, live.current.port) == (
        "init",  # init beats env
        "from-env",  # env beats Apollo
        8080,  # Apollo beats defaults
    )
    monkeypatch.delenv("AIOAPOLLO_TEST_NAME")
    assert Env().name == "default-name"  # outside a binding: env and defaults only
    outcomes = Outcomes()
    live.on_update(outcomes.update)
    server.publish(APP, "application", {"name": "apollo-2"})
    kind, settings = await outcomes.next()
    assert kind == "update"
    assert (settings.mode, settings.name, settings.port) == ("init", "apollo-2", 1)


async def test_json_namespace_and_bad_json(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "db.json", '{"host": "h1", "port": 1}')
    client = make_client(namespaces=["application", "db.json"])
    await client.start()
    live = bind_settings(client, Db, namespace="db.json")
    outcomes = Outcomes()
    live.on_error(outcomes.error)
    live.on_update(outcomes.update)
    assert live.current == Db(host="h1", port=1)
    server.publish(APP, "db.json", '{"host": "h1", ')
    kind, error = await outcomes.next()
    assert kind == "error" and error.errors[0]["type"] == "parse_error"
    assert live.current == Db(host="h1", port=1)
    server.publish(APP, "db.json", '{"host": "h2"}')
    assert await outcomes.next() == ("update", Db(host="h2"))


async def test_source_in_a_hand_written_settings_class(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"limit": "5", "tags": '["x"]', "other": "1"})
    client = make_client()
    await client.start()
    snapshot = client.snapshot()

    class Mine(BaseSettings):
        limit: Annotated[int, Field(alias="limit")] = 0
        tags: list[str] = []

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, ApolloSettingsSource(settings_cls, snapshot)

    assert Mine() == Mine(limit=5, tags=["x"])
    assert "5" not in repr(ApolloSettingsSource(Mine, snapshot))
    assert snapshot_values({"LIMIT": "1"}, Mine, case_sensitive=True) == {}
    assert snapshot_values({"limit": "1"}, Mine, case_sensitive=True) == {"limit": "1"}


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic_settings", None)
    monkeypatch.delitem(sys.modules, "aioapollo.integrations.pydantic")
    with pytest.raises(ImportError, match=r"pip install 'aioapollo-client\[pydantic\]'"):
        importlib.import_module("aioapollo.integrations.pydantic")


async def test_fastapi_example_serves_current_settings(
    server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    monkeypatch.setenv("APP_ID", APP)
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", server.url)
    monkeypatch.setenv("APOLLO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DEMO_FEATURE_ENABLED", "true")
    server.publish(APP, "application", {"greeting": "hi", "rate_limit": "5", "db.port": "6000"})
    spec = importlib.util.spec_from_file_location("settings_app_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # resolves its annotations
    spec.loader.exec_module(example)
    outcomes = Outcomes()
    example.settings.on_update(outcomes.update)
    example.settings.on_error(outcomes.error)
    transport = httpx.ASGITransport(app=example.app)
    async with (
        example.app.router.lifespan_context(example.app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        body = (await http.get("/settings")).json()
        assert body == {
            "greeting": "hi",
            "rate_limit": 5,
            "feature_enabled": True,  # from the environment
            "db": {"host": "localhost", "port": 6000},
        }
        server.publish(APP, "application", {"greeting": "hi", "rate_limit": "lots"})
        assert (await outcomes.next())[0] == "error"
        assert (await http.get("/greeting")).json() == {"greeting": "hi", "rate_limit": 5}
        server.publish(APP, "application", {"greeting": "hey", "rate_limit": "20"})
        assert (await outcomes.next())[0] == "update"
        assert (await http.get("/greeting")).json() == {"greeting": "hey", "rate_limit": 20}
