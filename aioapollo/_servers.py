"""Which server this process belongs to: uWSGI or gunicorn, master or worker, threads or not."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

__all__ = [
    "is_master",
    "preforking_master",
    "threads_usable",
    "uwsgi_module",
    "warn_if_uwsgi_threads_disabled",
]

from . import _process

logger = logging.getLogger("aioapollo")


def uwsgi_module() -> Any:
    """The ``uwsgi`` module inside a uWSGI process, else None."""
    try:
        return importlib.import_module("uwsgi")
    except ImportError:
        return None


def preforking_master() -> str | None:
    """The name of the preforking server whose master this process is, if any."""
    uwsgi = uwsgi_module()
    if uwsgi is not None:
        return "uWSGI" if uwsgi.worker_id() == 0 else None
    if "gunicorn.arbiter" in sys.modules:
        # With --preload the app is imported from Arbiter.setup(); workers run below
        # Arbiter.spawn_worker() (the fork keeps the arbiter's frames on their stack).
        frame = sys._getframe(1)
        in_arbiter = False
        while frame is not None:
            if frame.f_globals.get("__name__") == "gunicorn.arbiter":
                if frame.f_code.co_name == "spawn_worker":
                    return None
                in_arbiter = True
            frame = frame.f_back  # type: ignore[assignment]
        return "gunicorn" if in_arbiter else None
    return None


def is_master(server: str, generation: int | None) -> bool:
    """Whether this process is still ``server``'s master that started in ``generation``."""
    uwsgi = uwsgi_module() if server == "uWSGI" else None
    if uwsgi is not None:  # without a master, uWSGI's first worker is this very process
        return bool(uwsgi.worker_id() == 0)
    return _process.current() == generation


_threads_warned = False


def threads_usable() -> bool:
    """False inside uWSGI without ``enable-threads``: there a started thread never runs, and
    ``Thread.start()`` in a worker waits for it forever."""
    uwsgi = uwsgi_module()
    if uwsgi is None:
        return True
    opt = getattr(uwsgi, "opt", {})
    return _truthy(opt.get("enable-threads")) or _int(opt.get("threads")) > 1


def warn_if_uwsgi_threads_disabled() -> None:
    """Log once per process when uWSGI runs without threads."""
    global _threads_warned
    if _threads_warned or threads_usable():
        return
    _threads_warned = True
    logger.warning(
        "uWSGI runs without enable-threads: Python threads cannot run there, so "
        "SyncApolloClient loads once and never updates. Set `enable-threads = true` (or "
        "`threads = N`) in the uWSGI configuration."
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        return any(_truthy(v) for v in value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        return value.strip().lower() in ("", "1", "true", "yes", "on", "y", "t")
    return bool(value)


def _int(value: Any) -> int:
    if isinstance(value, list):
        value = value[-1] if value else 0
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
