"""The Starlette/FastAPI integration against the real test server: lifespan, state, dependency.

Starlette's ``TestClient`` runs the app on its own loop in a thread; the tests run it through
``asyncio.to_thread`` so the test server keeps serving on the test's loop meanwhile.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from aioapollo import (
    ApolloClient,
    ClientState,
    ClientStateError,
    ConfigChangeEvent,
    NamespaceUnavailableError,
)
from aioapollo.integrations.starlette import (
    APOLLO_STATE_KEY,
    ApolloDep,
    apollo_lifespan,
    get_apollo,
)
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST, ClientFactory


def fastapi_app(client: Any, **kwargs: Any) -> FastAPI:
    app = FastAPI(lifespan=apollo_lifespan(client, **kwargs))

    @app.get("/greeting")
    async def greeting(cfg: ApolloDep) -> dict[str, Any]:
        return {"greeting": await cfg.get("greeting"), "state": cfg.state.value}

    return app


async def test_fastapi_lifespan_starts_serves_follows_and_closes(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    client = make_client()
    changed = threading.Event()

    @client.on_change(keys={"greeting"})
    def _greeting_changed(event: ConfigChangeEvent) -> None:
        changed.set()

    app = fastapi_app(client)
    assert client.state is ClientState.CREATED

    def serve() -> list[Any]:
        with TestClient(app) as http:
            seen = [client.state, http.get("/greeting").json()]
            server.publish(APP, "application", {"greeting": "bonjour"})
            assert changed.wait(10), "the listener never fired"
            seen.append(http.get("/greeting").json())
        return seen

    state_inside, before, after = await asyncio.to_thread(serve)
    assert state_inside is ClientState.RUNNING
    assert before == {"greeting": "hello", "state": "running"}
    assert after == {"greeting": "bonjour", "state": "running"}
    assert client.state is ClientState.CLOSED


async def test_starlette_app_custom_key_http_and_websocket(make_client: ClientFactory) -> None:
    client = make_client()

    async def endpoint(request: Request) -> JSONResponse:
        assert request.state.cfg is client
        return JSONResponse({"greeting": await get_apollo(request).get("greeting")})

    async def ws_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await get_apollo(websocket).get("greeting") or "")
        await websocket.close()

    app = Starlette(
        routes=[Route("/", endpoint), WebSocketRoute("/ws", ws_endpoint)],
        lifespan=apollo_lifespan(client, key="cfg"),
    )

    def serve() -> tuple[Any, str]:
        with TestClient(app) as http:
            body = http.get("/").json()
            with http.websocket_connect("/ws") as ws:
                text = ws.receive_text()
        return body, text

    assert await asyncio.to_thread(serve) == ({"greeting": "hello"}, "hello")
    assert client.state is ClientState.CLOSED


async def test_user_lifespan_runs_inside_the_client_lifespan(make_client: ClientFactory) -> None:
    client = make_client()
    log: list[Any] = []

    @asynccontextmanager
    async def user_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        log.append(("enter", client.state, await client.get("timeout")))
        yield {"pool": "a pool"}
        log.append(("exit", client.state))

    async with apollo_lifespan(client, lifespan=user_lifespan)(object()) as state:
        assert state == {APOLLO_STATE_KEY: client, "pool": "a pool"}
    assert log == [("enter", ClientState.RUNNING, "30"), ("exit", ClientState.RUNNING)]
    assert client.state is ClientState.CLOSED


async def test_user_lifespan_failing_at_startup_closes_the_client(
    make_client: ClientFactory,
) -> None:
    client = make_client()

    @asynccontextmanager
    async def user_lifespan(app: Any) -> AsyncIterator[None]:
        raise OSError("the database is down")
        yield  # pragma: no cover

    with pytest.raises(OSError, match="the database is down"):
        async with apollo_lifespan(client, lifespan=user_lifespan)(None):
            pytest.fail("the lifespan must not start")
    assert client.state is ClientState.CLOSED


async def test_composes_with_async_exit_stack(make_client: ClientFactory) -> None:
    client = make_client()

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            state = await stack.enter_async_context(apollo_lifespan(client)(app))
            yield {**state, "timeout": await client.get_int("timeout")}

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def index(request: Request, cfg: ApolloDep) -> dict[str, Any]:
        return {"timeout": request.state.timeout, "greeting": await cfg.get("greeting")}

    def serve() -> Any:
        with TestClient(app) as http:
            return http.get("/").json()

    assert await asyncio.to_thread(serve) == {"timeout": 30, "greeting": "hello"}
    assert client.state is ClientState.CLOSED


async def test_factory_gives_each_lifespan_run_a_fresh_client(
    make_client: ClientFactory,
) -> None:
    built: list[ApolloClient] = []

    def factory() -> ApolloClient:
        built.append(make_client())
        return built[-1]

    app = fastapi_app(factory)

    def serve_twice() -> list[Any]:
        answers = []
        for _ in range(2):
            with TestClient(app) as http:
                answers.append(http.get("/greeting").json()["greeting"])
        return answers

    assert await asyncio.to_thread(serve_twice) == ["hello", "hello"]
    assert len(built) == 2 and built[0] is not built[1]
    assert all(c.state is ClientState.CLOSED for c in built)


async def test_second_run_with_a_closed_client_says_to_use_a_factory(
    make_client: ClientFactory,
) -> None:
    lifespan = apollo_lifespan(make_client())
    async with lifespan(None):
        pass
    with pytest.raises(ClientStateError, match=r"pass a factory"):
        async with lifespan(None):
            pytest.fail("the lifespan must not start")


async def test_client_running_already_is_neither_restarted_nor_closed(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    await client.start()
    async with apollo_lifespan(client)(None) as state:
        assert state[APOLLO_STATE_KEY] is client
    assert client.state is ClientState.RUNNING


async def test_startup_failure_fails_the_lifespan_and_leaves_client_restartable(
    server: ApolloTestServer,
) -> None:
    client = ApolloClient("no-such-app", config_server=server.url, cache_dir=None, **FAST)
    with pytest.raises(NamespaceUnavailableError):
        async with apollo_lifespan(client)(None):
            pytest.fail("the lifespan must not start")
    assert client.state is ClientState.CREATED
    server.publish("no-such-app", "application", {"k": "v"})
    async with apollo_lifespan(client)(None) as state:
        assert await state[APOLLO_STATE_KEY].get("k") == "v"


def test_get_apollo_without_a_client_in_state_explains_the_fix() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        get_apollo(request)
        raise AssertionError("unreachable")

    with (
        TestClient(Starlette(routes=[Route("/", endpoint)])) as http,
        pytest.raises(RuntimeError, match=r"lifespan=apollo_lifespan\(client\)"),
    ):
        http.get("/")


def test_get_apollo_refuses_to_guess_between_two_clients() -> None:
    a, b = ApolloClient("a", config_server="http://a"), ApolloClient("b", config_server="http://b")
    request = Request({"type": "http", "state": {"one": a, "two": b}})
    with pytest.raises(RuntimeError, match=r"several ApolloClients.*one, two"):
        get_apollo(request)
    request = Request({"type": "http", "state": {"one": a, APOLLO_STATE_KEY: b}})
    assert get_apollo(request) is b


def test_bad_arguments_fail_fast() -> None:
    with pytest.raises(TypeError, match="ApolloClient or a callable"):
        apollo_lifespan(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty string"):
        apollo_lifespan(ApolloClient("a", config_server="http://a"), key="")


async def test_factory_returning_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="returned str, not an ApolloClient"):
        async with apollo_lifespan(lambda: "nope")(None):  # type: ignore[arg-type,return-value]
            pytest.fail("the lifespan must not start")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_without_starlette_says_which_extra_to_install() -> None:
    result = _python(
        "import sys; sys.modules['starlette'] = None\nimport aioapollo.integrations.starlette"
    )
    assert result.returncode == 1
    assert "ImportError: aioapollo.integrations.starlette needs Starlette: " in result.stderr
    hint = "pip install 'aioapollo-client[starlette]' (or 'aioapollo-client[fastapi]'"
    assert hint in result.stderr


def test_starlette_without_fastapi_works_and_apollodep_says_why_not() -> None:
    result = _python(
        "import sys; sys.modules['fastapi'] = None\n"
        "from aioapollo.integrations.starlette import apollo_lifespan, get_apollo\n"
        "print('imported')\n"
        "from aioapollo.integrations.starlette import ApolloDep"
    )
    assert result.stdout == "imported\n"
    hint = "ImportError: ApolloDep needs FastAPI: pip install 'aioapollo-client[fastapi]'"
    assert hint in result.stderr
