"""A FastAPI app that reports, per worker process, what it loaded and when it saw each change.

Used by ``examples/demo_asgi.py`` and the real-server tests; run it under any ASGI server:

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 AIOAPOLLO_REPORT=/tmp/report \
        gunicorn --preload -w 4 -k uvicorn_worker.UvicornWorker asgi_workers_app:app

Every worker appends JSON lines to the file named by ``AIOAPOLLO_REPORT``: ``started`` once
the client has loaded (in the worker's lifespan), ``changed`` from its change listener, and
``stopped`` after the client closed at shutdown. A load balancer picks workers at random, so
the file, not HTTP, is how a watcher learns about every worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from aioapollo import ApolloClient, ConfigChangeEvent
from aioapollo.integrations.starlette import ApolloDep, apollo_lifespan

#: Where the module was imported: the arbiter under ``--preload``, else the worker itself.
IMPORTED_IN = os.getpid()
REPORT = os.environ.get("AIOAPOLLO_REPORT")

# Inert until started: safe at import time in a preloading arbiter.
apollo = ApolloClient.from_env(app_id=os.environ.get("APP_ID", "demo-app"))
changes_seen = 0


def report(event: str, **fields: Any) -> None:
    """Append one JSON line (a single O_APPEND write, so workers never interleave)."""
    if not REPORT:
        return
    line = {"event": event, "pid": os.getpid(), "time": time.time(), **fields}
    fd = os.open(REPORT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@apollo.on_change(keys={"greeting"})
async def greeting_changed(event: ConfigChangeEvent) -> None:
    global changes_seen
    changes_seen += 1
    report("changed", value=event.changes["greeting"].new_value, changes=changes_seen)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # apollo_lifespan starts the client in this worker's loop and closes it at shutdown.
    async with apollo_lifespan(apollo)(app) as state:
        report(
            "started",
            value=await apollo.get("greeting"),
            source=apollo.sources["application"].value,
            imported_in=IMPORTED_IN,
            role=apollo.stats().role,  # "solo", or with APOLLO_SHARE_POLL=true leader/follower
        )
        yield state
    report("stopped", state=apollo.state.value)


app = FastAPI(lifespan=lifespan)


@app.get("/greeting")
async def greeting(cfg: ApolloDep) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "greeting": await cfg.get("greeting"),
        "changes": changes_seen,
        "state": cfg.state.value,
    }
