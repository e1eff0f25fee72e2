"""A FastAPI app whose settings come from Apollo and follow every publish.

Run it against any Apollo (or `python -m aioapollo serve`):

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 uvicorn examples.fastapi_app:app

The client is built at import time (inert: no I/O, no loop, no thread) and started inside the
ASGI lifespan, i.e. inside each worker's own event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aioapollo import ApolloClient, ConfigChangeEvent

log = logging.getLogger("demo")

apollo = ApolloClient.from_env(app_id=os.environ.get("APP_ID", "demo-app"))


@apollo.on_change(keys={"greeting"})
async def greeting_changed(event: ConfigChangeEvent) -> None:
    log.info("pid %s: greeting changed in %s", os.getpid(), event.namespace)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, ApolloClient]]:
    async with apollo:  # loads every namespace before the first request, polls until shutdown
        yield {"apollo": apollo}


app = FastAPI(lifespan=lifespan)


@app.get("/greeting")
async def greeting() -> dict[str, object]:
    return {"greeting": await apollo.get("greeting", "hello"), "pid": os.getpid()}
