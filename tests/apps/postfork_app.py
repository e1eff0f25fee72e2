"""A WSGI app with its own uWSGI post-fork hooks, set before and after aioapollo is imported.

Each worker must run both of the app's hooks and still start its SyncApolloClient poller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import uwsgi  # type: ignore[import-not-found]  # only inside uWSGI

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
log = logging.getLogger("postfork_app")


def hook_set_by_hand() -> None:
    log.info("hand-set hook ran in %s", os.getpid())


uwsgi.post_fork_hook = hook_set_by_hand  # set by hand, before aioapollo starts

# The order is the point: importing aioapollo does nothing; start() chains into uWSGI's
# post-fork hook, keeping the hand-set one; the app then uses the decorator too.
# isort: off
from aioapollo import SyncApolloClient  # noqa: E402

cfg = SyncApolloClient.from_env()
cfg.start()

from uwsgidecorators import postfork  # noqa: E402

# isort: on


@postfork
def decorated_hook() -> None:
    log.info("decorated hook ran in %s", os.getpid())


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {cfg.get('greeting')} {cfg.polling}".encode()]
