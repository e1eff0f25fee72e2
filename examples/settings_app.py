"""A FastAPI app whose typed settings come from Apollo and are re-validated on every publish.

Run it against any Apollo (or `python -m aioapollo serve --port 8080`):

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \
        uvicorn examples.settings_app:app

Publish `rate_limit=abc` and the app keeps serving the last valid settings (and logs why the
release was rejected); publish `rate_limit=20` and it is applied. Environment variables
prefixed `DEMO_` win over Apollo (e.g. `DEMO_GREETING=hi` for local development).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict

from aioapollo import ApolloClient
from aioapollo.integrations.pydantic import (
    ApolloBaseSettings,
    SettingsValidationError,
    bind_settings,
)

log = logging.getLogger("demo")


class Database(BaseModel):
    host: str = "localhost"
    port: int = 5432


class AppSettings(ApolloBaseSettings):
    """init > env (DEMO_*) > Apollo namespace "application" > these defaults."""

    model_config = SettingsConfigDict(env_prefix="DEMO_")

    greeting: str = "hello"
    rate_limit: int = 10
    feature_enabled: bool = False
    db: Database = Database()  # Apollo keys db.host and db.port


apollo = ApolloClient.from_env(app_id=os.environ.get("APP_ID", "demo-app"))
settings = bind_settings(apollo, AppSettings)  # validated once the client has started


@settings.on_error
def rejected(error: SettingsValidationError) -> None:
    log.error("Apollo release %s rejected: %s", error.release_key, error)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with apollo:
        settings.current  # noqa: B018 - fail fast if the release at startup is invalid
        yield


app = FastAPI(lifespan=lifespan)

#: A dependency returning the current settings object (a new one after each valid publish).
Settings = Annotated[AppSettings, Depends(settings)]


@app.get("/settings")
async def show_settings(current: Settings) -> dict[str, object]:
    return current.model_dump()


@app.get("/greeting")
async def greeting(current: Settings) -> dict[str, object]:
    return {"greeting": current.greeting, "rate_limit": current.rate_limit}
