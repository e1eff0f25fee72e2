"""A Flask app whose OpenFeature provider is set at import (in gunicorn's arbiter with
--preload): a SyncApolloClient behind ApolloProvider, every worker must follow releases."""

from __future__ import annotations

import logging
import os

from flask import Flask
from openfeature import api
from openfeature.event import EventDetails, ProviderEvent

from aioapollo import SyncApolloClient
from aioapollo.integrations.openfeature import ApolloProvider

logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s %(message)s")
log = logging.getLogger("openfeature_app")
flags = api.get_client()


def changed(details: EventDetails) -> None:  # runs on the SDK's handler thread, per worker
    value = flags.get_string_value("greeting", "none")
    status = flags.get_provider_status().value
    log.info("worker %s flag greeting=%s status=%s", os.getpid(), value, status)


api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed)
cfg = SyncApolloClient.from_env()
api.set_provider_and_wait(ApolloProvider(cfg))  # starts the client (in the arbiter: loads only)
log.info("provider set in %s: %s", os.getpid(), flags.get_provider_status().value)

app = Flask(__name__)


@app.get("/flag")
def flag() -> dict[str, object]:
    details = flags.get_string_details("greeting", "none")
    return {
        "pid": os.getpid(),
        "value": details.value,
        "reason": str(details.reason),
        "status": flags.get_provider_status().value,
    }
