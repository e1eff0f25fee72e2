"""reload_server_on_change: one graceful server reload per Apollo release, whichever worker asks.

Some settings (a database URL, a pool size) need new connections, not just new values. Every
worker hears the change; the first one to create the release's marker file (``O_EXCL`` in a
directory all workers share) asks the server for a graceful reload, the others stand down.
uWSGI is asked through ``uwsgi.reload()``, gunicorn with ``SIGHUP`` to its arbiter.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ._client import ApolloClient
from ._models import ConfigChangeEvent
from ._runtime.servers import uwsgi_module
from ._sync import SyncApolloClient

__all__ = ["reload_server_on_change"]

logger = logging.getLogger("aioapollo")

#: Markers older than this are removed when a new one is written.
_MARKER_MAX_AGE_S = 7 * 24 * 3600
_PREFIX = "aioapollo-reload-"

Reloader = Callable[[], None]


def reload_server_on_change(
    client: ApolloClient | SyncApolloClient,
    *,
    keys: Iterable[str] | None = None,
    prefixes: Iterable[str] | None = None,
    namespaces: Iterable[str] | None = None,
    marker_dir: str | os.PathLike[str] | None = None,
    reload: Reloader | None = None,
) -> Callable[[ConfigChangeEvent], None]:
    """Ask the server for a graceful reload when one of ``keys`` changes, once per release.

    Register it once, at import time, next to the client. Each worker then hears a change of
    the chosen keys; exactly one of them (per release and server) asks for the reload.

    Args:
        client: The client whose changes to watch.
        keys: Keys whose change needs a reload (at least one of ``keys``/``prefixes``).
        prefixes: Key prefixes whose change needs a reload.
        namespaces: Only watch these namespaces (all by default).
        marker_dir: A directory every worker can write to; one marker file per release is
            kept there. Defaults to a private directory in the system temp dir.
        reload: What to call instead of the detected server's reload, e.g. for a server
            that is neither uWSGI nor gunicorn.

    Returns:
        The registered listener; pass it to ``client.remove_listener`` to stop.

    Raises:
        ValueError: Neither ``keys`` nor ``prefixes`` was given.
    """
    if isinstance(keys, str) or isinstance(prefixes, str):
        raise TypeError("keys and prefixes take collections, not a string")
    keys = frozenset(keys or ())
    prefixes = tuple(prefixes or ())
    if not keys and not prefixes:
        raise ValueError("name the keys (or prefixes) whose change needs a server reload")
    directory = Path(marker_dir) if marker_dir is not None else _default_marker_dir()
    options = client.options

    def reload_on_change(event: ConfigChangeEvent) -> None:
        target = _detect_server() if reload is None else ("custom", reload, os.getppid())
        if target is None:
            logger.warning(
                "keys %s changed but no uWSGI or gunicorn server was found to reload; pass "
                "reload= to reload_server_on_change",
                sorted(event.changed_keys),
            )
            return
        server, do_reload, scope = target
        release = event.snapshot.release_key or _content_hash(event)
        identity = "\0".join((options.app_id, options.cluster, event.namespace, release))
        marker = directory / (
            _PREFIX + hashlib.sha256(f"{identity}\0{scope}".encode()).hexdigest()[:40]
        )
        if not _claim(marker):
            logger.info("release %s: another worker asked for the reload already", release)
            return
        logger.warning(
            "keys %s changed in namespace %r (release %s): asking %s for a graceful reload",
            sorted(event.changed_keys & keys) or sorted(event.changed_keys),
            event.namespace,
            release,
            server,
        )
        do_reload()

    client.add_listener(reload_on_change, keys=keys, prefixes=prefixes, namespaces=namespaces)
    return reload_on_change


def _detect_server() -> tuple[str, Reloader, int] | None:
    """The server this worker runs under: its name, how to reload it, and its master's pid."""
    uwsgi = uwsgi_module()
    if uwsgi is not None:
        return "uWSGI", uwsgi.reload, int(uwsgi.masterpid())
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        arbiter = os.getppid()
        if arbiter > 1:  # a worker: its parent is the arbiter
            return "gunicorn", lambda: os.kill(arbiter, signal.SIGHUP), arbiter
    return None


def _default_marker_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"aioapollo-reload-{uid}"


def _claim(marker: Path) -> bool:
    """Create ``marker`` exclusively: True for the one caller that created it."""
    marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    _remove_old_markers(marker.parent)
    return True


def _remove_old_markers(directory: Path) -> None:
    cutoff = time.time() - _MARKER_MAX_AGE_S
    with contextlib.suppress(OSError):
        for path in directory.glob(_PREFIX + "*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


def _content_hash(event: ConfigChangeEvent) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(event.snapshot.items.items()):
        digest.update(f"{key}\0{value}\0".encode())
    return "content-" + digest.hexdigest()[:16]
