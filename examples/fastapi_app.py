"""A FastAPI app whose settings come from Apollo and follow every publish.

Run it against any Apollo (or the test server, ``aioapollo.testing.ApolloTestServer``):

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 uvicorn examples.fastapi_app:app

or with several workers, e.g. ``gunicorn -c examples/gunicorn.conf.py examples.fastapi_app:app``.
The client is built at import time (inert: no I/O, no loop, no thread, so ``--preload`` is
fine) and started by ``apollo_lifespan`` inside each worker's own event loop.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo.integrations.starlette import ApolloDep, apollo_lifespan

log = logging.getLogger("demo")

apollo = ApolloClient.from_env(app_id=os.environ.get("APP_ID", "demo-app"))


@apollo.on_change(keys={"greeting"})
async def greeting_changed(event: ConfigChangeEvent) -> None:
    log.info("pid %s: greeting changed in %s", os.getpid(), event.namespace)


# Loads every namespace before the first request, polls until shutdown, then closes.
app = FastAPI(lifespan=apollo_lifespan(apollo))


@app.get("/greeting")
async def greeting(cfg: ApolloDep) -> dict[str, object]:
    return {"greeting": await cfg.get("greeting", "hello"), "pid": os.getpid()}
