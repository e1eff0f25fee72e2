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


uwsgi.post_fork_hook = hook_set_by_hand  # set by hand, before aioapollo is imported

# The order is the point.
# isort: off
from aioapollo import SyncApolloClient  # noqa: E402 - chains into uWSGI's post-fork hook
from uwsgidecorators import postfork  # noqa: E402 - and the app uses the decorator too

# isort: on


@postfork
def decorated_hook() -> None:
    log.info("decorated hook ran in %s", os.getpid())


cfg = SyncApolloClient.from_env()
cfg.start()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {cfg.get('greeting')} {cfg.polling}".encode()]
