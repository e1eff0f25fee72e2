"""Which process is this? The one owner of fork state for every client.

A *generation* numbers the processes this interpreter's memory has lived in: 0 in the process
that imported aioapollo, one more in each forked child. A client records the generation it was
started in; "am I running in the process that started me?" is then one comparison, and no
client keeps a pid of its own.

The generation advances in exactly one place, :func:`_forked`, reached from:

- ``os.register_at_fork``: every fork made through Python (``os.fork``, gunicorn,
  ``multiprocessing``);
- uWSGI's ``post_fork_hook``: uWSGI forks its workers in C and runs Python's at-fork hooks
  only with ``py-call-uwsgi-fork-hooks``;
- :func:`current`, which compares the pid: a fork that no hook saw is found on the next slow
  path that asks.

Each of those may fire for one fork (uWSGI with the Python hooks on runs both); the pid makes
the second a no-op. On advancing, every tracked object's ``_forked()`` runs (drop what belongs
to the parent: tasks, sockets, locks), then every ``_resume()`` (start what this process
needs, such as a sync client's poller thread). Both are idempotent and safe in any order, since
a client started in a stale generation resets itself first.

Nothing happens at import: :func:`install` hooks into the process the first time a client
starts, so ``import aioapollo`` has no side effects (importing under uWSGI without a master,
or in a process that never starts a client, changes nothing).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "current", "install", "keep_forever", "track"]

logger = logging.getLogger("aioapollo")


class ForkAware(Protocol):
    """Anything holding per-process resources."""

    def _forked(self) -> None:
        """In a forked child: drop (never close or finalize) what belongs to the parent."""

    def _resume(self) -> None:
        """After every ``_forked()`` ran: start what this process needs (may do nothing)."""


#: This process's generation; read it through :func:`current` outside hot paths.
generation = 0
_pid = os.getpid()
_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_inherited: list[object] = []
_installed = False

#: Whether this process runs inside uWSGI (known once :func:`install` ran).
under_uwsgi = False
#: True while uWSGI's post-fork hook runs: under uWSGI, the one place to start threads in a
#: new worker (Python's at-fork hooks, with ``py-call-uwsgi-fork-hooks``, run too early).
in_uwsgi_post_fork = False


def current() -> int:
    """This process's generation, noticing a fork that no hook reported."""
    if os.getpid() != _pid:
        _forked()
    return generation


def track(obj: ForkAware) -> None:
    """Call ``obj._forked()`` then ``obj._resume()`` in every child forked from now on."""
    _tracked.add(obj)


def keep_forever(*objects: object) -> None:
    """Keep objects inherited from the parent alive, untouched, for this process's lifetime.

    A collected task's coroutine would run its ``finally`` blocks in the child, resetting
    state the child rebuilt since or closing sockets the parent still uses.
    """
    _inherited.extend(objects)


def _forked() -> None:
    global generation, _pid
    pid = os.getpid()
    if pid == _pid:  # a second hook for the same fork
        return
    generation += 1
    _pid = pid
    objects = list(_tracked)
    for obj in objects:
        try:
            obj._forked()
        except Exception:  # pragma: no cover - must never break a fork
            logger.exception("aioapollo: resetting %r after fork failed", obj)
    for obj in objects:
        try:
            obj._resume()
        except Exception:  # pragma: no cover - must never break a fork
            logger.exception("aioapollo: resuming %r after fork failed", obj)


def install() -> None:
    """Hook into forks of this process (idempotent; called by the first ``start()``)."""
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=_forked)
    _chain_uwsgi_post_fork_hook()


def _uwsgi_post_fork() -> None:
    global in_uwsgi_post_fork
    in_uwsgi_post_fork = True
    try:
        current()
        # uWSGI without Python's at-fork hooks: _forked() ran just now, above. With them it
        # ran at fork, too early to start threads: let the objects resume here.
        for obj in list(_tracked):
            obj._resume()
    finally:
        in_uwsgi_post_fork = False


def _chain_uwsgi_post_fork_hook() -> None:
    """Under uWSGI, also run :func:`_uwsgi_post_fork` from uWSGI's own post-fork hook.

    Chained through ``uwsgidecorators.postfork`` where it can be imported (keeping a hook
    that was set before, and the app's spooler function), so neither the application's
    ``@postfork`` functions nor ours replace the other; set directly otherwise.
    """
    global under_uwsgi
    try:
        uwsgi = importlib.import_module("uwsgi")  # exists only inside a uWSGI process
    except ImportError:
        return
    under_uwsgi = True
    previous = getattr(uwsgi, "post_fork_hook", None)
    spooler = getattr(uwsgi, "spooler", None)
    try:
        decorators = importlib.import_module("uwsgidecorators")
    except Exception:  # not importable here (e.g. no master): chain by hand

        def hook() -> None:
            _uwsgi_post_fork()
            if previous is not None:
                previous()

        setattr(uwsgi, "post_fork_hook", hook)  # noqa: B010 - a module without stubs
        return
    if previous is not None and previous is not decorators.postfork_chain_hook:
        decorators.postfork_chain.append(previous)  # importing it replaced that hook
    if spooler is not None:  # ... and the spooler function: put back the app's own
        with contextlib.suppress(Exception):
            setattr(uwsgi, "spooler", spooler)  # noqa: B010 - a module without stubs
    decorators.postfork(_uwsgi_post_fork)
