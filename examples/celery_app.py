"""A Celery app configured from Apollo with SyncApolloClient, under the prefork pool.

The client is created and started at import. In the main process of ``celery worker`` with
the prefork pool (Celery's default) that is a preforking master: the client loads there on a
temporary thread, keeps no thread running while Celery forks its pool, and every pool process
then polls Apollo by itself. Nothing else is needed (no ``worker_process_init`` handler).
Under ``-P solo`` / ``threads`` / ``gevent`` the main process runs the tasks and polls itself.

    APP_ID=demo-app APOLLO_CONFIG_SERVICE=http://127.0.0.1:8080 \\
        celery -A celery_app worker -P prefork -c 4 --loglevel INFO

``CELERY_BROKER_URL`` picks the broker (``filesystem://`` by default, with its queue folder in
``CELERY_QUEUE_DIR``: it needs no broker server, and unlike ``memory://`` it crosses processes).
Each pool process logs ``pool process PID sees greeting=...`` when the greeting changes.
"""

from __future__ import annotations

import logging
import os
import tempfile

from celery import Celery

from aioapollo import ConfigChangeEvent, SyncApolloClient

# Celery sets up logging only after it imported the app: show the client's start-up lines.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
log = logging.getLogger("celery_app")

cfg = SyncApolloClient.from_env()
cfg.start()  # in the worker's main process: loads, keeps no thread; each pool process polls

broker = os.environ.get("CELERY_BROKER_URL", "filesystem://")
queue_dir = os.environ.get("CELERY_QUEUE_DIR") or os.path.join(tempfile.gettempdir(), "celery")
app = Celery("celery_app", broker=broker)
if broker.startswith("filesystem://"):
    os.makedirs(queue_dir, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": queue_dir,
        "data_folder_out": queue_dir,
        "control_folder": os.path.join(queue_dir, "control"),  # else ./control in the cwd
    }


@cfg.on_change(keys=["greeting"])
def greeting_changed(event: ConfigChangeEvent) -> None:
    """Runs in every pool process (in a helper thread, never in a task)."""
    log.info("pool process %s sees greeting=%r", os.getpid(), cfg.get("greeting"))


@app.task
def greeting() -> dict[str, object]:
    """A task reads the current value: a dict lookup, never I/O."""
    return {"pid": os.getpid(), "greeting": cfg.get("greeting", "hello")}
