"""Noticing edits of namespace files: watchfiles when it is installed, else a stat poll.

``pip install 'aioapollo-client[local]'`` brings `watchfiles
<https://pypi.org/project/watchfiles/>`_ (inotify, FSEvents, ReadDirectoryChanges through the
Rust ``notify`` crate): an edit is seen in about 50 ms and an idle client costs nothing. Without
it, the files of the watched namespaces are ``stat``-ed every :data:`POLL_INTERVAL` seconds
(a few system calls per namespace, in a worker thread): well within the promised second for
the handful of files a client reads.

Either way the watcher only says "something may have changed"; :class:`FileWatch` then reads
the files and the source compares contents, so a spurious wake-up changes nothing. With
watchfiles, a stat comparison every :data:`SAFETY_INTERVAL` seconds also catches what no event
reported (an edit made before the watch was set up, a file system without events).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator

from .files import FileProblem, NamespaceFiles

__all__ = ["POLL_INTERVAL", "SAFETY_INTERVAL", "SETTLE", "FileWatch", "default_backend"]

#: Seconds between two stat polls without watchfiles.
POLL_INTERVAL = 0.2
#: Seconds between two stat comparisons with watchfiles (events are the fast path).
SAFETY_INTERVAL = 0.5
#: Files are read once they stayed unchanged this long (seconds): an editor or a copy that
#: truncates a file and then writes it is never read half written.
SETTLE = 0.05

Found = dict[str, dict[str, str] | FileProblem | None]


def default_backend() -> str:
    """``"watchfiles"`` when it is installed, else ``"poll"``."""
    return "watchfiles" if importlib.util.find_spec("watchfiles") is not None else "poll"


class FileWatch:
    """The files of some namespaces under one directory: read them, and wait for edits.

    Args:
        files: Where the files are.
        names: The namespaces.
        backend: ``"watchfiles"`` or ``"poll"`` (None: :func:`default_backend`).
    """

    __slots__ = ("_mark", "backend", "files", "names")

    def __init__(self, files: NamespaceFiles, names: list[str], backend: str | None = None) -> None:
        self.files = files
        self.names = names
        self.backend = backend or default_backend()
        #: The files' stat signature when they were last read.
        self._mark: tuple[object, ...] | None = None

    def _read_all(self) -> Found:
        # The mark is taken before reading: an edit made while reading shows up as a change.
        self._mark = self.files.signature(self.names)
        found: Found = {}
        for name in self.names:
            try:
                found[name] = self.files.read(name)
            except FileProblem as exc:
                found[name] = exc
        return found

    async def read(self) -> Found:
        """Each namespace's items, None (no file) or the problem with its file (off the loop)."""
        return await asyncio.to_thread(self._read_all)

    async def _moved(self) -> bool:
        mark = await asyncio.to_thread(self.files.signature, self.names)
        if mark == self._mark:
            return False
        while True:  # settle: wait until a write in progress is over
            await asyncio.sleep(SETTLE)
            again = await asyncio.to_thread(self.files.signature, self.names)
            if again == mark:
                return True
            mark = again

    async def changes(self) -> AsyncIterator[None]:
        """Yield whenever the files may have changed since they were last read."""
        if self.backend == "watchfiles" and self.files.root.is_dir():
            from watchfiles import awatch

            async for events in awatch(
                self.files.root,
                watch_filter=None,
                step=int(SETTLE * 1000),
                rust_timeout=int(SAFETY_INTERVAL * 1000),
                yield_on_timeout=True,
            ):
                if await self._moved() or events:
                    yield
        else:
            while True:
                await asyncio.sleep(POLL_INTERVAL)
                if await self._moved():
                    yield
