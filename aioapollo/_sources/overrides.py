"""``overrides=DIR``: a developer's own values layered over what Apollo serves.

:class:`Overrides` is a store transform: a properties namespace gets the keys of its override
file on top of its release (added or replaced), a text namespace (``x.json``) gets the file's
content instead of its own. It runs after decryption, so override values are used as written.
The record keeps the release as Apollo sent it, so overrides never reach the disk cache or a
sharing group's other processes (each process layers its own).

The files are read at ``start()`` (a bad file fails it: there is nothing good to keep yet) and
watched (:mod:`.watch`); each namespace whose overrides changed is run through the transforms
again (:meth:`NamespaceStore.reapply <aioapollo._core.store.NamespaceStore.reapply>`), so
listeners hear of it. A bad edit is a warning and keeps the last good overrides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from .._core.store import NamespaceStore
from .._core.supervise import Progress
from .._exceptions import LocalFileError
from .files import CONTENT, FileProblem, NamespaceFiles, is_raw
from .watch import FileWatch

__all__ = ["Overrides"]

logger = logging.getLogger("aioapollo")


class Overrides:
    """The override files of one client, as a store transform (see the module docstring)."""

    __slots__ = ("_layers", "_problems", "app_id", "watch")

    def __init__(
        self,
        root: Path,
        cluster: str,
        names: list[str],
        *,
        app_id: str = "",
        backend: str | None = None,
    ) -> None:
        self.watch = FileWatch(NamespaceFiles(root, cluster), names, backend)
        self.app_id = app_id
        #: namespace -> the override items (only namespaces that have an override file).
        self._layers: dict[str, dict[str, str]] = {}
        self._problems: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Overrides {str(self.watch.files.root)!r} {self.watch.backend}>"

    def overridden(self) -> dict[str, frozenset[str]]:
        """namespace -> the keys whose values come from an override file."""
        return {name: frozenset(layer) for name, layer in self._layers.items() if layer}

    # ------------------------------------------------------------------ the transform

    def transform(self, namespace: str, items: Mapping[str, str]) -> Mapping[str, str]:
        layer = self._layers.get(namespace)
        if not layer:
            return items
        if is_raw(namespace):
            return {CONTENT: layer.get(CONTENT, "")}
        return {**items, **layer}

    # ------------------------------------------------------------------ the files

    async def load(self, store: NamespaceStore) -> None:
        """Read the files at ``start()``; raises LocalFileError for a bad one."""
        found = await self.watch.read()
        problems = {n: str(p) for n, p in found.items() if isinstance(p, FileProblem)}
        if problems:
            raise LocalFileError({n: f"overrides: {why}" for n, why in problems.items()})
        changed = self._take(found)
        keys = sum(len(layer) for layer in self._layers.values())
        logger.warning(
            "ApolloClient(%r): overrides from %s are layered over Apollo's values (%d key(s) "
            "in %d namespace(s) now, and whatever is added there): for development only, "
            "never in production",
            self.app_id,
            self.watch.files.root,
            keys,
            len([layer for layer in self._layers.values() if layer]),
        )
        for name in changed:  # warm values held from before (a fork, suspend()): layer them
            store.reapply(name, notify=False)

    def _take(self, found: Mapping[str, dict[str, str] | FileProblem | None]) -> list[str]:
        """Adopt the readable files; returns the namespaces whose overrides changed."""
        changed = []
        for name, items in found.items():
            if isinstance(items, FileProblem):
                continue
            layer = items or {}
            if layer != self._layers.get(name, {}):
                changed.append(name)
                if layer:
                    self._layers[name] = layer
                else:
                    self._layers.pop(name, None)
        return changed

    async def run(self, store: NamespaceStore, progress: Progress) -> None:
        """Apply each edit of the override files until cancelled."""
        await self._rescan(store)
        progress.done()
        async for _ in self.watch.changes():
            await self._rescan(store)
            progress.done()

    async def _rescan(self, store: NamespaceStore) -> None:
        found = await self.watch.read()
        for name, items in found.items():
            if isinstance(items, FileProblem):
                why = str(items)
                if self._problems.get(name) != why:
                    self._problems[name] = why
                    logger.warning(
                        "overrides: namespace %r: %s; keeping its last good overrides", name, why
                    )
            elif self._problems.pop(name, None) is not None:
                logger.info("overrides: namespace %r reads again", name)
        for name in self._take(found):
            logger.info("overrides of namespace %r changed", name)
            try:
                store.reapply(name)
            except Exception as exc:  # a later transform refused it: it keeps its values
                logger.warning(
                    "namespace %r could not be layered again (%s)", name, type(exc).__name__
                )
