"""A plain Starlette app (no FastAPI) reading Apollo config, with its own lifespan composed in.

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 uvicorn examples.starlette_app:app

Starlette 1.x is lifespan-only: ``apollo_lifespan`` starts the client in each worker's loop,
then runs this app's own lifespan (which may already read config), and merges both states.
Endpoints get the client with ``get_apollo(request)`` or ``request.state.apollo``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aioapollo import ApolloClient
from aioapollo.integrations.starlette import apollo_lifespan, get_apollo

apollo = ApolloClient.from_env(app_id=os.environ.get("APP_ID", "demo-app"))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # Runs after the client has loaded: config is readable here already.
    limit = await apollo.get_int("rate_limit", 100)
    yield {"rate_limit": limit}


async def greeting(request: Request) -> JSONResponse:
    cfg = get_apollo(request)
    return JSONResponse(
        {
            "greeting": await cfg.get("greeting", "hello"),
            "rate_limit_at_startup": request.state.rate_limit,
            "pid": os.getpid(),
        }
    )


app = Starlette(
    routes=[Route("/greeting", greeting)],
    lifespan=apollo_lifespan(apollo, lifespan=lifespan),
)
