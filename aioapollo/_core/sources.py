"""The seam every source of releases goes through, and an in-memory source for tests.

A *source* learns of releases and hands each one to :meth:`NamespaceStore.apply
<aioapollo._core.store.NamespaceStore.apply>`; it never calls a sink. The sources today:

=====================================  ==================================================
``_apollo.loader.ApolloSource``        the long poll(s) and ``/configs`` fetches, the disk
                                       cache as a fallback at start, the safety refresh
``_share.follower.Link``              releases pushed by the host's sharing leader
:class:`MemorySource`                  whatever a test publishes, with no I/O at all
=====================================  ==================================================

A new source (local files, a baked-in snapshot) implements :class:`ReleaseSource`: ``load``
delivers what it has at ``start()`` and ``run`` delivers later releases until cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from .._exceptions import ApolloError
from .._models import Source
from .store import NamespaceStore, Release
from .supervise import Progress

__all__ = ["MemorySource", "ReleaseSource"]


class ReleaseSource(Protocol):
    """Where releases come from (see the module docstring)."""

    #: Names the source in every :class:`~aioapollo._core.store.Release` it delivers.
    origin: str

    async def load(self, store: NamespaceStore) -> set[str]:
        """Deliver what the source holds now; return the namespaces it delivered."""
        ...

    async def run(self, store: NamespaceStore, progress: Progress) -> None:
        """Deliver later releases until cancelled (supervised: restarted after a crash)."""
        ...


class MemorySource:
    """Releases published in memory: the fake source for tests of the store and its sinks
    (as ``httpx.MockTransport`` stands in for the network), and no I/O at all.

    ``source.publish("application", {"k": "v"})`` then ``await source.load(store)`` puts it
    in the store; publishes after that reach the store through ``run``.
    """

    origin = "memory"

    def __init__(self) -> None:
        self._held: dict[str, Release] = {}
        #: Releases published since the last load, for run() to deliver.
        self._queue: asyncio.Queue[Release] = asyncio.Queue()
        self._ids = 0

    def publish(self, namespace: str, items: Mapping[str, str]) -> Release:
        """A new release of ``namespace`` (with a fresh release key and notification id)."""
        self._ids += 1
        release = Release(
            namespace=namespace,
            items=dict(items),
            release_key=f"memory-{self._ids}",
            source=Source.REMOTE,
            origin=self.origin,
            notification_id=self._ids,
        )
        self._held[namespace] = release
        self._queue.put_nowait(release)
        return release

    async def load(self, store: NamespaceStore) -> set[str]:
        while not self._queue.empty():  # load delivers them: run() need not again
            self._queue.get_nowait()
        delivered = set()
        for name, release in self._held.items():
            if name in store and await store.deliver(release, notify=False) is not None:
                delivered.add(name)
        return delivered

    async def run(self, store: NamespaceStore, progress: Progress) -> None:
        while True:
            release = await self._queue.get()
            try:
                await store.deliver(release)
            except ApolloError:
                pass  # refused (a value that does not decrypt): it keeps its last values
            progress.done()
