"""``bootstrap_dir=``: a snapshot to start from when Apollo cannot answer and there is no cache.

The Apollo source asks :meth:`Bootstrap.release` for a namespace only after Apollo failed (or
did not answer within ``warm_start_timeout``) and neither a cache file nor inherited values
could be served. The release's source is :attr:`~aioapollo.Source.BOOTSTRAP` and its origin
``"bootstrap"``: the cache writer never writes it, and the client goes on loading the
namespace from Apollo (the long poll asks at once), replacing it as soon as Apollo answers;
listeners hear of every key that differs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .._core.store import Release
from .._models import Source
from .files import FileProblem, NamespaceFiles, release_key

__all__ = ["Bootstrap"]

logger = logging.getLogger("aioapollo")


class Bootstrap:
    """The namespace files of a snapshot directory (the layout of :mod:`.files`)."""

    __slots__ = ("files",)

    origin = "bootstrap"

    def __init__(self, root: Path, cluster: str) -> None:
        self.files = NamespaceFiles(root, cluster)

    def __repr__(self) -> str:
        return f"<Bootstrap {str(self.files.root)!r}>"

    async def release(self, name: str) -> Release | None:
        """The snapshot's release of ``name``, or None (no file, or a bad one: warned)."""
        try:
            items = await asyncio.to_thread(self.files.read, name)
        except FileProblem as exc:
            logger.warning("bootstrap_dir: namespace %r cannot be served: %s", name, exc)
            return None
        if items is None:
            logger.warning(
                "bootstrap_dir: namespace %r cannot be served: %s", name, self.files.missing(name)
            )
            return None
        return Release(
            namespace=name,
            items=items,
            release_key=release_key(items),
            source=Source.BOOTSTRAP,
            origin=self.origin,
        )
