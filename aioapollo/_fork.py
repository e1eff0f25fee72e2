"""Fork detection: started clients learn that they now live in a forked child.

``os.register_at_fork`` covers every fork made through Python (``os.fork``, gunicorn,
``multiprocessing``). Servers that fork in C without running Python's at-fork hooks (uWSGI
without ``py-call-uwsgi-fork-hooks``) are covered by uWSGI's own post-fork hook, which the sync
client installs, and by never leaving a poller running in a uWSGI master.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "track"]


class ForkAware(Protocol):
    """Anything that must reset itself in a forked child."""

    def _after_fork_in_child(self) -> None: ...


_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def track(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every child forked after this call."""
    _tracked.add(obj)


def after_fork_in_child() -> None:
    """Reset every tracked object; also the entry point for non-Python fork hooks."""
    for obj in list(_tracked):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=after_fork_in_child)
