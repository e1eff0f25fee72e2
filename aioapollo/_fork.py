"""Fork detection: started clients learn that they now live in a forked child.

``os.register_at_fork`` covers every fork made through Python (``os.fork``, gunicorn,
``multiprocessing``). Servers that fork in C without running Python's at-fork hooks (uWSGI
without ``py-call-uwsgi-fork-hooks``) are covered by uWSGI's own post-fork hook, which the sync
client installs, and by never leaving a poller running in a uWSGI master.
"""

from __future__ import annotations

import importlib
import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "track"]


class ForkAware(Protocol):
    """Anything that must reset itself in a forked child."""

    def _after_fork_in_child(self) -> None: ...


_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()

#: Whether this process runs inside uWSGI (set at import, when the hook is chained).
under_uwsgi = False
#: True while uWSGI's post-fork hook runs: under uWSGI, the one place to start threads in a
#: new worker (Python's at-fork hooks, with ``py-call-uwsgi-fork-hooks``, run too early).
in_uwsgi_post_fork = False


def track(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked after this call."""
    _tracked.add(obj)


_inherited: list[object] = []


def keep_forever(*objects: object) -> None:
    """Keep objects inherited from the parent alive, untouched, for this process's lifetime."""
    _inherited.extend(objects)


def after_fork_in_child() -> None:
    """Reset every tracked object; also the entry point for non-Python fork hooks.

    Two phases: every object resets first, then those with ``_resume_after_fork`` start
    anew. A sync client's new poller thread starts its inner ApolloClient, which must already
    be reset when that thread runs (the set's order is arbitrary).
    """
    objects = list(_tracked)
    for obj in objects:
        obj._after_fork_in_child()
    for obj in objects:
        resume = getattr(obj, "_resume_after_fork", None)
        if resume is not None:
            resume()


def _uwsgi_post_fork() -> None:
    global in_uwsgi_post_fork
    in_uwsgi_post_fork = True
    try:
        after_fork_in_child()
    finally:
        in_uwsgi_post_fork = False


def _chain_uwsgi_post_fork_hook() -> None:
    """Under uWSGI, also run :func:`after_fork_in_child` from uWSGI's own post-fork hook.

    uWSGI forks its workers in C and runs Python's at-fork hooks only with
    ``py-call-uwsgi-fork-hooks``; its ``uwsgi.post_fork_hook`` always runs. The hook is
    chained through ``uwsgidecorators.postfork`` (keeping a hook that was set before), so
    neither the application's ``@postfork`` functions nor ours replace the other. Running
    both hooks is harmless: every reset is idempotent.
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
    except ImportError:

        def hook() -> None:
            _uwsgi_post_fork()
            if previous is not None:
                previous()

        setattr(uwsgi, "post_fork_hook", hook)  # noqa: B010 - a module without stubs
        return
    if previous is not None and previous is not decorators.postfork_chain_hook:
        decorators.postfork_chain.append(previous)  # importing it replaced that hook
    if spooler is not None:  # ... and the spooler function: put back the app's own
        setattr(uwsgi, "spooler", spooler)  # noqa: B010 - a module without stubs
    decorators.postfork(_uwsgi_post_fork)


os.register_at_fork(after_in_child=after_fork_in_child)
_chain_uwsgi_post_fork_hook()
