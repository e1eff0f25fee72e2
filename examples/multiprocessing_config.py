"""The configuration module of ``examples/multiprocessing_app.py``: a module-level client.

Every process that imports this module has a client of its own: the parent, each ``spawn``
child (it imports the module again) and each ``forkserver`` child. A forkserver told to
preload this module (``set_forkserver_preload``) imports it once, as a preforking master: it
loads there and keeps no thread, and each child forked from it polls by itself.
"""

from __future__ import annotations

import logging
import threading

from aioapollo import ConfigChangeEvent, SyncApolloClient

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")

cfg = SyncApolloClient.from_env()
cfg.start()

#: Every greeting this process's listener saw, for waiters on ``seen``.
greetings: list[str] = []
seen = threading.Condition()


@cfg.on_change(keys=["greeting"])
def greeting_changed(event: ConfigChangeEvent) -> None:
    with seen:
        greetings.append(cfg.get("greeting") or "")
        seen.notify_all()
