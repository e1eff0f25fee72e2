"""An ASGI app for Daphne, which runs no ASGI lifespan: the client starts on first use.

``lazy_start=True`` makes the first ``await apollo.get(...)`` start the client on Daphne's
running loop (once: concurrent first requests wait for that one start). Nothing closes it;
it lives as long as the process.

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \\
        daphne -b 127.0.0.1 -p 8000 daphne_app:app

``GET /`` answers with the process id, the greeting and the client's state; the process logs
``daphne PID sees greeting=...`` when the greeting changes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aioapollo import ApolloClient, ConfigChangeEvent

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
log = logging.getLogger("daphne_app")

apollo = ApolloClient.from_env(lazy_start=True)  # inert until the first awaited read


@apollo.on_change(keys={"greeting"})
async def greeting_changed(event: ConfigChangeEvent) -> None:
    log.info("daphne %s sees greeting=%r", os.getpid(), event.changes["greeting"].new_value)


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    greeting = await apollo.get("greeting", "hello")  # the first one starts the client
    body = {"pid": os.getpid(), "greeting": greeting, "state": apollo.state.value}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
