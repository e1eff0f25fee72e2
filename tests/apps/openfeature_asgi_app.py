"""A Starlette app whose OpenFeature provider is set at import (in gunicorn's arbiter with
--preload) and started in each worker's lifespan: an ApolloClient behind ApolloProvider."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from openfeature import api
from openfeature.event import EventDetails, ProviderEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aioapollo import ApolloClient
from aioapollo.integrations.openfeature import ApolloProvider

logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s %(message)s")
log = logging.getLogger("openfeature_app")
flags = api.get_client()


def changed(details: EventDetails) -> None:  # runs on the SDK's handler thread, per worker
    value = flags.get_string_value("greeting", "none")
    status = flags.get_provider_status().value
    log.info("worker %s flag greeting=%s status=%s", os.getpid(), value, status)


api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed)
provider = ApolloProvider(ApolloClient.from_env())
api.set_provider(provider)  # at import: NOT_READY until a worker's lifespan starts it


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with provider:  # starts the client on this worker's loop: READY
        status = flags.get_provider_status().value
        log.info("worker %s ready status=%s", os.getpid(), status)
        yield


async def flag(request: Request) -> JSONResponse:
    details = await flags.get_string_details_async("greeting", "none")
    return JSONResponse(
        {
            "pid": os.getpid(),
            "value": details.value,
            "reason": str(details.reason),
            "status": flags.get_provider_status().value,
        }
    )


app = Starlette(lifespan=lifespan, routes=[Route("/flag", flag)])
