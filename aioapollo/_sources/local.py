"""``local_dir=``: every namespace read from files, watched, and Apollo never asked.

:class:`LocalSource` is a :class:`~aioapollo._core.sources.ReleaseSource`: ``load`` reads every
namespace at ``start()`` (a missing or bad file fails the start with
:class:`~aioapollo.LocalFileError`, unless ``allow_empty``), ``run`` waits for edits
(:mod:`.watch`) and delivers each namespace whose contents changed. An edit that does not
read (a YAML typo, a value that is not a string, a deleted file) is a warning, once per
problem, and the namespace keeps its last good values until the file is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from .._core.store import NamespaceStore, Release
from .._core.supervise import Progress
from .._exceptions import ApolloError, LocalFileError
from .._models import Source
from .files import FileProblem, NamespaceFiles, release_key
from .watch import FileWatch

__all__ = ["LocalSource"]

logger = logging.getLogger("aioapollo")


class LocalSource:
    """Releases read from the namespace files under ``root`` (see the module docstring)."""

    origin = "local"

    def __init__(
        self,
        root: Path,
        cluster: str,
        names: list[str],
        *,
        allow_empty: bool = False,
        backend: str | None = None,
    ) -> None:
        self.watch = FileWatch(NamespaceFiles(root, cluster), names, backend)
        self._allow_empty = allow_empty
        #: The items last delivered per namespace (as read from its file).
        self._held: dict[str, Mapping[str, str]] = {}
        #: The problem last warned about per namespace (each is said once).
        self._problems: dict[str, str] = {}
        #: How many times the files were read after start (for tests and debugging).
        self.scans = 0

    def __repr__(self) -> str:
        return f"<LocalSource {str(self.watch.files.root)!r} {self.watch.backend}>"

    async def load(self, store: NamespaceStore) -> set[str]:
        """Read and deliver every namespace; raises LocalFileError if one cannot be served."""
        files = self.watch.files
        problems: dict[str, str] = {}
        delivered: set[str] = set()
        for name, found in (await self.watch.read()).items():
            if isinstance(found, FileProblem):
                problems[name] = str(found)
            elif found is None:
                problems[name] = files.missing(name)
            else:
                held = store.snapshot(name) is not None  # warm (inherited) values: a change
                if await self._deliver(store, name, found, notify=held):
                    delivered.add(name)
                elif not held:
                    why = store.records[name].release_error or "it could not be applied"
                    problems[name] = f"{files.find(name)}: {why}"
        if problems and not self._allow_empty:
            raise LocalFileError(problems)
        for name, why in problems.items():
            self._problems[name] = why
            if store.snapshot(name) is None:
                empty = Release(
                    namespace=name, items={}, release_key=None, source=Source.NONE, origin="empty"
                )
                store.apply(empty, notify=False)
            logger.warning("namespace %r starts empty (allow_empty): %s", name, why)
        return delivered

    async def run(self, store: NamespaceStore, progress: Progress) -> None:
        """Deliver each edit until cancelled (a first read catches edits made meanwhile)."""
        await self._rescan(store)
        progress.done()
        async for _ in self.watch.changes():
            await self._rescan(store)
            progress.done()

    async def _rescan(self, store: NamespaceStore) -> None:
        found_all = await self.watch.read()
        self.scans += 1
        for name, found in found_all.items():
            if found is None or isinstance(found, FileProblem):
                why = str(found) if found is not None else self.watch.files.missing(name)
                if self._problems.get(name) != why:
                    self._problems[name] = why
                    logger.warning(
                        "local_dir: namespace %r: %s; keeping its last good values", name, why
                    )
                continue
            if self._problems.pop(name, None) is not None:
                logger.info("local_dir: namespace %r reads again", name)
            if found != self._held.get(name):
                await self._deliver(store, name, found, notify=True)

    async def _deliver(
        self, store: NamespaceStore, name: str, items: dict[str, str], *, notify: bool
    ) -> bool:
        release = Release(
            namespace=name,
            items=items,
            release_key=release_key(items),
            source=Source.LOCAL,
            origin=self.origin,
        )
        self._held[name] = items  # a refused release is not retried until the file changes
        try:
            await store.deliver(release, notify=notify)
        except ApolloError as exc:  # refused (a value that does not decrypt): said already
            logger.debug("local_dir: namespace %r refused: %s", name, exc)
            return False
        except Exception as exc:
            logger.warning(
                "local_dir: namespace %r could not be applied (%s); keeping its last good values",
                name,
                type(exc).__name__,
            )
            return False
        return True
