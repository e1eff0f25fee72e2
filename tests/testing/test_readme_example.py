"""The README's FastAPI example, run for real (keep in sync with testing/README_SECTION.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")

# ---- README: app.py --------------------------------------------------------------------
from fastapi import FastAPI, Request  # noqa: E402
from httpx import ASGITransport, AsyncClient  # noqa: E402

from aioapollo import ApolloClient  # noqa: E402


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Reads APP_ID, APOLLO_CONFIG_SERVICE (or APOLLO_META), APOLLO_CACHE_DIR, ...
    async with ApolloClient.from_env() as apollo:
        app.state.apollo = apollo
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/greeting")
async def greeting(request: Request) -> dict[str, str]:
    apollo: ApolloClient = request.app.state.apollo
    return {"greeting": await apollo.get("greeting", "hello")}


# ---- README: test_app.py ---------------------------------------------------------------
from aioapollo.testing import ApolloTestServer  # noqa: E402


@pytest.fixture
async def client(
    apollo_server: ApolloTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[AsyncClient]:
    apollo_server.publish("my-app", "application", {"greeting": "hi"})
    monkeypatch.setenv("APP_ID", "my-app")
    monkeypatch.setenv("APOLLO_CONFIG_SERVICE", apollo_server.url)
    monkeypatch.setenv("APOLLO_CACHE_DIR", str(tmp_path))
    async with app.router.lifespan_context(app):  # start the app's lifespan (and client)
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


async def test_greeting_comes_from_apollo(client: AsyncClient) -> None:
    assert (await client.get("/greeting")).json() == {"greeting": "hi"}


async def test_greeting_follows_a_release(
    client: AsyncClient, apollo_server: ApolloTestServer
) -> None:
    changed = asyncio.Event()
    app.state.apollo.on_change(lambda event: changed.set())
    apollo_server.publish("my-app", "application", {"greeting": "bonjour"})
    async with asyncio.timeout(5):  # the client hears of it through its long poll
        await changed.wait()
    assert (await client.get("/greeting")).json() == {"greeting": "bonjour"}


async def test_app_starts_from_cache_when_apollo_fails(
    client: AsyncClient, apollo_server: ApolloTestServer
) -> None:
    # The first start above filled the cache; now every request to Apollo fails.
    apollo_server.inject("/", times=None, status=503)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://app") as http:
            assert (await http.get("/greeting")).json() == {"greeting": "hi"}
