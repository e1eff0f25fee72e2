"""Which server this process belongs to: uWSGI or gunicorn, master or worker, threads or not."""

from __future__ import annotations

import importlib
import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "is_master",
    "on_master_released",
    "preforking_master",
    "threads_usable",
    "uwsgi_module",
    "warn_if_uwsgi_threads_disabled",
]

from . import process as _process

logger = logging.getLogger("aioapollo")


def uwsgi_module() -> Any:
    """The ``uwsgi`` module inside a uWSGI process, else None."""
    try:
        return importlib.import_module("uwsgi")
    except ImportError:
        return None


def preforking_master() -> str | None:
    """The name of the preforking server whose master this process is, if any.

    uWSGI's master, gunicorn's arbiter (``--preload``), Celery's worker main process with the
    prefork pool, and the ``multiprocessing`` forkserver importing its preloaded modules: each
    imports the application, then forks its workers, and must not run a poller thread while
    it forks (Python 3.12+ warns about forking with threads).
    """
    uwsgi = uwsgi_module()
    if uwsgi is not None:
        return "uWSGI" if uwsgi.worker_id() == 0 else None
    frames = _calling_frames()
    if "gunicorn.arbiter" in sys.modules:
        # With --preload the app is imported from Arbiter.setup(); workers run below
        # Arbiter.spawn_worker() (the fork keeps the arbiter's frames on their stack).
        if ("gunicorn.arbiter", "spawn_worker") in frames:
            return None
        if any(module == "gunicorn.arbiter" for module, _ in frames):
            return "gunicorn"
    if "multiprocessing.forkserver" in sys.modules and _forkserver_preloading(frames):
        return "multiprocessing forkserver"
    if "celery.bin.celery" in sys.modules and _celery_prefork_main(frames):
        _watch_celery_pool()
        return "Celery"
    return None


def _calling_frames() -> set[tuple[str | None, str]]:
    """(module, function) of every frame on this thread's stack."""
    found = set()
    frame = sys._getframe(1)
    while frame is not None:
        found.add((frame.f_globals.get("__name__"), frame.f_code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    return found


def _forkserver_preloading(frames: set[tuple[str | None, str]]) -> bool:
    """The forkserver imports ``__main__`` (and any ``set_forkserver_preload`` module) in
    ``forkserver.main()``; its children run below ``_serve_one()`` in that same frame."""
    return ("multiprocessing.forkserver", "main") in frames and (
        "multiprocessing.forkserver",
        "_serve_one",
    ) not in frames


#: Celery's pool as its worker_init signal told it: None until then (or outside a worker).
_celery_prefork: bool | None = None
_celery_watched = False
#: Called when a process taken for a Celery master turns out to run its tasks itself.
_released: list[weakref.WeakMethod[Callable[[], None]]] = []


def _celery_prefork_main(frames: set[tuple[str | None, str]]) -> bool:
    """Whether this is the main process of ``celery worker`` with the prefork pool.

    Called while the app (``-A``) or a task module is imported, before the pool forks. A pool
    process (below billiard's ``Process._bootstrap``) is not; nor is any other celery command
    (beat, shell, inspect): only ``worker`` runs a pool. The pool is known from Celery's
    ``worker_init`` signal; until then prefork (Celery's default) is assumed, and a main
    process that turns out to run its tasks itself (solo, threads, gevent) starts polling.
    """
    if _celery_prefork is False or ("billiard.process", "_bootstrap") in frames:
        return False
    if not any(module and module.startswith("celery.") for module, _ in frames):
        return False
    click = sys.modules.get("click")
    ctx = click.get_current_context(silent=True) if click is not None else None
    while ctx is not None:
        if ctx.info_name == "worker" or ctx.invoked_subcommand == "worker":
            return True
        ctx = ctx.parent
    return False


def _watch_celery_pool() -> None:
    global _celery_watched
    if _celery_watched:
        return
    _celery_watched = True
    signals = importlib.import_module("celery.signals")
    signals.worker_init.connect(_on_celery_worker_init, weak=False)


def _on_celery_worker_init(sender: Any = None, **_: Any) -> None:
    """Celery's ``worker_init``, in the worker's main process before it starts its pool."""
    global _celery_prefork
    pool = getattr(sender, "pool_cls", None)
    if isinstance(pool, str):
        names = {pool.replace(":", ".")}
    else:
        names = {f"{c.__module__}.{c.__qualname__}" for c in getattr(pool, "__mro__", ())}
    _celery_prefork = bool(names & {"prefork", "processes", "celery.concurrency.prefork.TaskPool"})
    if not _celery_prefork:
        logger.info("Celery runs its tasks in its main process: SyncApolloClient polls there")
        refs = _released.copy()
        _released.clear()
        for ref in refs:
            callback = ref()
            if callback is not None:
                callback()


def on_master_released(callback: Callable[[], None]) -> None:
    """Call ``callback`` (a bound method, held weakly) if this process turns out not to be
    a preforking master after all (a Celery worker whose pool is not prefork)."""
    _released.append(weakref.WeakMethod(callback))


def is_master(server: str, generation: int | None) -> bool:
    """Whether this process is still ``server``'s master that started in ``generation``."""
    uwsgi = uwsgi_module() if server == "uWSGI" else None
    if uwsgi is not None:  # without a master, uWSGI's first worker is this very process
        return bool(uwsgi.worker_id() == 0)
    if server == "Celery" and _celery_prefork is False:
        return False  # its pool does not fork: it runs the tasks, and polls, itself
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
