"""A Flask app configured from Apollo with SyncApolloClient, for any WSGI server.

The client is created and started at import time: under uWSGI without ``lazy-apps`` or under
``gunicorn --preload`` that is the master, which loads the config once and forks; every
worker then polls Apollo by itself. Nothing else is needed (no ``lazy-apps``, no
``@postfork``).

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \\
        uwsgi --ini examples/uwsgi.ini --http-socket 127.0.0.1:8000
    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \\
        gunicorn -c examples/gunicorn_sync.conf.py flask_app:app --chdir examples

``GET /greeting`` answers with the worker's pid, the current greeting and the greeting the
master read at import time. Each worker logs a line when the greeting changes. When
``db_url`` changes, the server is asked for one graceful reload (every worker then reconnects).
"""

from __future__ import annotations

import logging
import os

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from aioapollo import ConfigChangeEvent, SyncApolloClient, reload_server_on_change

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
log = logging.getLogger("flask_app")

cfg = SyncApolloClient.from_env()
cfg.start()

#: Read at import time: in a preforking master this is the value every worker starts with.
GREETING_AT_IMPORT = cfg.get("greeting", "hello")
#: Stands for a resource built from config once per process, such as a database engine.
DB_URL = cfg.get("db_url", "sqlite://")

# A key whose change needs new connections: ask the server for one graceful reload.
reload_server_on_change(cfg, keys=["db_url"])


@cfg.on_change(keys=["greeting"])
def greeting_changed(event: ConfigChangeEvent) -> None:
    """Runs in every worker (in a helper thread, not a request thread)."""
    log.info("worker %s sees greeting=%r", os.getpid(), cfg.get("greeting"))


app = Flask(__name__)


@app.get("/greeting")
def greeting() -> ResponseReturnValue:
    return jsonify(
        pid=os.getpid(),
        greeting=cfg.get("greeting", "hello"),
        greeting_at_import=GREETING_AT_IMPORT,
        polling=cfg.polling,
    )
