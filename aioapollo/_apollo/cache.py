"""The local fallback cache: one JSON file per namespace and per answer, written atomically.

Layout::

    {cache_dir}/{app_id}/config-cache/{answer}/{app_id}+{cluster}+{namespace}.json

``{answer}`` is the first 16 hex digits of :func:`~aioapollo._config.answer_key`: a hash of
everything that decides what Apollo answers (app id, cluster, data center, label, ip and the
servers asked). Two processes on one host that differ in any of these (a gray-release label, an
environment) therefore never read or overwrite each other's file. Files have mode 0600 in
directories of mode 0700 (configs hold passwords). Writes go to a temporary file in the same
directory and are renamed over the target, so readers in other worker processes see the old
file or the new one, never a mix. A file that does not parse, or that belongs to another
app/cluster/namespace/answer, is ignored with a warning.

Files of earlier versions (``{cache_dir}/{app_id}/config-cache/{app}+{cluster}+{ns}.json``,
one per app, cluster and namespace for every label and environment) are read only when the new
file is missing and the client sets no label, no ip and no data center; see
:func:`legacy_readable`. They are never written or deleted.

Every method of :class:`DiskCache` blocks on the file system: the client calls them from a
worker thread (:mod:`aioapollo._core.cachewriter` for writes), never on its event loop.
:class:`SiblingClaims` does no I/O (shared memory) and is read on the loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._config import ClientOptions, answer_key

__all__ = ["CachedRelease", "DiskCache", "SiblingClaims", "legacy_readable"]

logger = logging.getLogger("aioapollo")

_FORMAT = "aioapollo-cache/1"
#: Seconds after which a release's temporary file is taken for one left by a dead writer.
_STALE_CLAIM = 30.0
_CLAIM_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
#: Hex digits of the answer key naming a cache directory (64 bits: collisions are not a risk
#: between the handful of setups that share one host).
_ANSWER_DIGITS = 16


def legacy_readable(options: ClientOptions) -> bool:
    """Whether a file of the old layout may stand in for this client's missing cache file.

    The old layout kept one file per app, cluster and namespace, whatever the label, ip, data
    center or servers of the process that wrote it, so such a file cannot say which answer it
    holds. A client that sets a label, an ip or a data center may be answered differently from
    the rest (a gray release, the data center's cluster) and is never given one. A client that
    sets none of them is answered like every such process on this host, and that is what the
    file holds, unless a process with a label, ip or data center, or of another environment,
    shared the directory: the bug the new layout fixes, which cannot be detected afterwards.
    Such a client reads the old file only while its own file is missing and Apollo cannot be
    reached at start; its next successful fetch writes its own file. The old file is left in
    place for earlier versions that may still run on the host.
    """
    return options.label is None and options.ip is None and options.data_center is None


@dataclass(frozen=True, slots=True)
class CachedRelease:
    """What one cache file holds."""

    release_key: str | None
    items: dict[str, str]
    saved_at: float
    #: Read from a file of the old layout (see :func:`legacy_readable`).
    legacy: bool = False


class SiblingClaims:
    """Which release of each namespace a process of this family has taken on writing.

    One page of anonymous shared memory, made where the client is built: every process
    forked from there (a preforking server's workers) shares it. All of them hear of a release
    at the same moment. Before handing a release to its writer thread, a worker looks here; if
    a sibling took that very release less than :data:`_STALE_CLAIM` seconds ago, it drops it
    without touching the file system, where it would only find the sibling's claim file (a
    thread hand-off and five system calls: with 16 workers on 2 CPUs, a quarter of each
    worker's CPU per release). No I/O, so it is safe on the event loop.

    A hint, never the judge: a worker that finds nothing here (the first, a spawned process
    that shares no page, a torn read) goes on to :meth:`DiskCache.save`, whose claim file
    decides as before. A release is taken as its write starts, like the claim file, so the
    siblings drop only a release that is being written or was written. A claim names the
    process that took it: that process's own retries after a failed write are never
    dropped, a failed write gives its claim up, and a claim whose process has died (killed
    while writing) is not honoured.
    """

    #: Per namespace: a hash of (namespace, release key), when it was taken, by which pid.
    _SLOT = struct.Struct("=Qdq")

    __slots__ = ("_index", "_page")

    def __init__(self, namespaces: tuple[str, ...] | list[str]) -> None:
        self._index = {name: i * self._SLOT.size for i, name in enumerate(namespaces)}
        self._page: mmap.mmap | None = None
        if self._index:
            try:  # MAP_SHARED | MAP_ANONYMOUS: inherited, shared, by every forked child
                self._page = mmap.mmap(-1, self._SLOT.size * len(self._index))
            except (OSError, ValueError):  # no shared memory here: the claim files decide
                self._page = None

    @staticmethod
    def _key(namespace: str, release_key: str) -> int:
        # Processes that share the page are forks of one interpreter: one hash seed.
        return hash((namespace, release_key)) & 0xFFFF_FFFF_FFFF_FFFF

    def _slot(self, namespace: str, release_key: str | None) -> tuple[mmap.mmap, int, int] | None:
        """The page, the namespace's offset in it and the release's hash; None when there is
        nothing to mark (no page, a namespace the client does not read, no release key)."""
        page, offset = self._page, self._index.get(namespace)
        if page is None or offset is None or release_key is None:
            return None
        return page, offset, self._key(namespace, release_key)

    def taken_by_another(self, namespace: str, release_key: str | None) -> bool:
        """Whether another process of the family took this release less than
        :data:`_STALE_CLAIM` seconds ago (it writes it)."""
        slot = self._slot(namespace, release_key)
        if slot is None:
            return False
        page, offset, wanted = slot
        key: int
        taken_at: float
        pid: int
        key, taken_at, pid = self._SLOT.unpack_from(page, offset)
        return (
            key == wanted
            and pid != os.getpid()
            and 0.0 <= time.time() - taken_at < _STALE_CLAIM
            and _alive(pid)
        )

    def take(self, namespace: str, release_key: str | None) -> None:
        """Tell the family that this process writes this release (now)."""
        slot = self._slot(namespace, release_key)
        if slot is not None:
            page, offset, wanted = slot
            self._SLOT.pack_into(page, offset, wanted, time.time(), os.getpid())

    def give_up(self, namespace: str, release_key: str | None) -> None:
        """This process failed to write this release: siblings that hear of it may write it
        (as a failed writer's claim file is removed)."""
        slot = self._slot(namespace, release_key)
        if slot is None:
            return
        page, offset, wanted = slot
        key, _, pid = self._SLOT.unpack_from(page, offset)
        if key == wanted and pid == os.getpid():
            self._SLOT.pack_into(page, offset, 0, 0.0, 0)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a signal-0 probe: no I/O, never blocks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is not ours to signal
        return True
    return True


class DiskCache:
    """Reads and writes one client's cache files (blocking: call it from a worker thread).

    Reads never raise: a missing, unreadable or foreign file is ``None``. :meth:`save` raises
    :class:`OSError`; :class:`~aioapollo._core.cachewriter.CacheWriter` decides what that means.
    """

    def __init__(
        self, root: Path, app_id: str, cluster: str, answer: str, *, legacy: bool = False
    ) -> None:
        self._base = root / app_id / "config-cache"
        self._dir = self._base / answer[:_ANSWER_DIGITS]
        self._app_id = app_id
        self._cluster = cluster
        self._answer = answer
        self._legacy = legacy
        #: The directory was made (and tightened) by this object's first write.
        self._dir_ready = False
        #: Shared with the processes forked from where this cache was made (see
        #: :class:`SiblingClaims`); None: the claim files alone decide.
        self.siblings: SiblingClaims | None = None

    @classmethod
    def for_options(cls, options: ClientOptions) -> DiskCache | None:
        """The cache of a client with these options (``None`` when it has none)."""
        if options.cache_dir is None:
            return None
        cache = cls(
            options.cache_dir,
            options.app_id,
            options.cluster,
            answer_key(options),
            legacy=legacy_readable(options),
        )
        cache.siblings = SiblingClaims(tuple(options.namespaces))
        return cache

    @property
    def directory(self) -> Path:
        """The directory holding this client's cache files."""
        return self._dir

    def _name(self, namespace: str) -> str:
        return f"{self._app_id}+{self._cluster}+{namespace}.json".replace(os.sep, "_")

    def path(self, namespace: str) -> Path:
        """The file for one namespace."""
        return self._dir / self._name(namespace)

    def legacy_path(self, namespace: str) -> Path:
        """Where earlier versions kept that namespace's file (shared by every answer)."""
        return self._base / self._name(namespace)

    def load(self, namespace: str) -> CachedRelease | None:
        """Read a namespace's cached release, or ``None`` (missing, unreadable, corrupt).

        Falls back to the old layout's file when this one is missing and the options allow
        it (see :func:`legacy_readable`).
        """
        found = self._read(self.path(namespace), namespace, self._answer)
        if found is not None or not self._legacy:  # a bad new file is not replaced by an old one
            return found or None
        old = self._read(self.legacy_path(namespace), namespace, None)
        if not old:
            return None
        return CachedRelease(old.release_key, old.items, old.saved_at, legacy=True)

    def _read(
        self, path: Path, namespace: str, answer: str | None
    ) -> CachedRelease | Literal[False] | None:
        """The release in ``path``: None when the file is missing, False when it is bad."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cache file %s is unreadable (%s); ignoring it", path, exc.strerror)
            return False
        try:
            data = json.loads(raw)
            ok = (
                isinstance(data, dict)
                and data.get("format") == _FORMAT
                and data.get("appId") == self._app_id
                and data.get("cluster") == self._cluster
                and data.get("namespace") == namespace
                and (answer is None or data.get("answer") == answer)
                and isinstance(data.get("configurations"), dict)
                and all(isinstance(v, str) for v in data["configurations"].values())
            )
        except (ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            logger.warning("cache file %s is corrupt or not ours; ignoring it", path)
            return False
        key = data.get("releaseKey")
        saved = data.get("savedAt")
        return CachedRelease(
            key if isinstance(key, str) else None,
            data["configurations"],
            float(saved) if isinstance(saved, int | float) else 0.0,
        )

    def holds(self, namespace: str, release_key: str | None) -> bool:
        """Whether the file already holds this release (another worker wrote it first).

        Every worker of a server is notified of the same release at the same moment and would
        write the same file; reading its head is far cheaper than writing and syncing it again.
        """
        if release_key is None:
            return False
        marker = (
            f'"namespace":{json.dumps(namespace, ensure_ascii=False)},'
            f'"releaseKey":{json.dumps(release_key, ensure_ascii=False)},'
        ).encode()
        try:
            with open(self.path(namespace), "rb") as fh:
                head = fh.read(len(marker) + 1024)
        except OSError:
            return False
        return marker in head

    def save(
        self, namespace: str, release_key: str | None, items: Mapping[str, str], now: float
    ) -> bool:
        """Atomically write a namespace's release unless the file holds it already, or another
        process of the host is writing this very release now (see :meth:`_claim`).

        Returns whether a file was written; raises :class:`OSError` when it cannot be.
        """
        if self.holds(namespace, release_key):
            return False
        if not self._dir_ready:
            _private_dir(self._dir, tighten=(self._base, self._dir))
            self._dir_ready = True
        try:
            claimed = self._claim(namespace, release_key)
        except FileNotFoundError:  # the directory went away since: make it again
            _private_dir(self._dir, tighten=(self._base, self._dir))
            claimed = self._claim(namespace, release_key)
        if claimed is None:
            return False
        fd, tmp = claimed
        payload = {
            "format": _FORMAT,
            "appId": self._app_id,
            "cluster": self._cluster,
            "namespace": namespace,
            "releaseKey": release_key,
            "savedAt": now,
            "answer": self._answer,
            "configurations": dict(items),
        }
        try:
            with os.fdopen(fd, "wb") as fh:  # created with mode 0600
                fh.write(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(namespace))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def _claim(self, namespace: str, release_key: str | None) -> tuple[int, str] | None:
        """The temporary file to write a release into, or None: another process writes it.

        Every worker of a server hears of a release at the same moment, and each would write
        the same file while the others' writes are in flight (before any rename, the file's
        head does not show it yet). The temporary file of a release has a name of its own,
        created exclusively: the first worker writes, the others see the name taken and skip.
        If that worker fails, it removes the name and retries later, as any failed write. A
        name older than :data:`_STALE_CLAIM` seconds was left by a process that died while
        writing: the write goes ahead under a random name (the left name is never reused,
        so no two writers ever share a file).
        """
        if release_key is not None:
            digest = hashlib.blake2b(f"{namespace}\0{release_key}".encode(), digest_size=8)
            tmp = os.path.join(self._dir, f".tmp-{digest.hexdigest()}.json")
            try:
                return os.open(tmp, _CLAIM_FLAGS, 0o600), tmp
            except FileExistsError:
                try:
                    age = time.time() - os.stat(tmp).st_mtime
                except FileNotFoundError:  # renamed just now: the file holds the release
                    return None
                if age < _STALE_CLAIM:
                    return None
        return tempfile.mkstemp(dir=self._dir, prefix=".tmp-", suffix=".json")


def _private_dir(path: Path, tighten: tuple[Path, ...]) -> None:
    """Create ``path`` and any missing parent with mode 0700 (``mkdir(parents=True)`` would
    give the parents the umask's mode); tighten the ``tighten`` folders if open to others."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    for folder in tighten:
        if folder.stat().st_mode & 0o077:
            with contextlib.suppress(OSError):  # not ours to change: the files are 0600 anyway
                folder.chmod(0o700)
