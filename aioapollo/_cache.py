"""The local fallback cache: one JSON file per (app, cluster, namespace), written atomically.

Files live in ``{cache_dir}/{app_id}/config-cache/{app}+{cluster}+{namespace}.json`` with
mode 0600 in directories of mode 0700 (configs hold passwords). Writes go to a temporary file
in the same directory and are renamed over the target, so readers in other worker processes
see the old file or the new one, never a mix. A file that does not parse, or that belongs to
another app/cluster/namespace, is ignored with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CachedRelease", "DiskCache"]

logger = logging.getLogger("aioapollo")

_FORMAT = "aioapollo-cache/1"


@dataclass(frozen=True, slots=True)
class CachedRelease:
    """What one cache file holds."""

    release_key: str | None
    items: dict[str, str]
    saved_at: float


class DiskCache:
    """Reads and writes cache files. Errors degrade to memory-only; they never raise."""

    def __init__(self, root: Path, app_id: str, cluster: str) -> None:
        self._dir = root / app_id / "config-cache"
        self._app_id = app_id
        self._cluster = cluster
        self._disabled = False

    @property
    def directory(self) -> Path:
        """The directory holding this app's cache files."""
        return self._dir

    def path(self, namespace: str) -> Path:
        """The file for one namespace."""
        name = f"{self._app_id}+{self._cluster}+{namespace}.json".replace(os.sep, "_")
        return self._dir / name

    def load(self, namespace: str) -> CachedRelease | None:
        """Read a namespace's cached release, or ``None`` (missing, unreadable, corrupt)."""
        path = self.path(namespace)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cache file %s is unreadable (%s); ignoring it", path, exc.strerror)
            return None
        try:
            data = json.loads(raw)
            ok = (
                isinstance(data, dict)
                and data.get("format") == _FORMAT
                and data.get("appId") == self._app_id
                and data.get("cluster") == self._cluster
                and data.get("namespace") == namespace
                and isinstance(data.get("configurations"), dict)
                and all(isinstance(v, str) for v in data["configurations"].values())
            )
        except (ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            logger.warning("cache file %s is corrupt or not ours; ignoring it", path)
            return None
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
        """Atomically write a namespace's release unless the file holds it already.

        Returns whether a file was written; a failure logs one warning and disables the cache.
        """
        if self._disabled or self.holds(namespace, release_key):
            return False
        payload = {
            "format": _FORMAT,
            "appId": self._app_id,
            "cluster": self._cluster,
            "namespace": namespace,
            "releaseKey": release_key,
            "savedAt": now,
            "configurations": dict(items),
        }
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        target = self.path(namespace)
        try:
            _private_dir(self._dir)
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as fh:  # mkstemp creates the file with mode 0600
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            self._disabled = True
            logger.warning(
                "cannot write the config cache in %s (%s); continuing with memory only",
                self._dir,
                exc.strerror or type(exc).__name__,
            )
            return False
        return True


def _private_dir(path: Path) -> None:
    """Create ``path`` and any missing parent with mode 0700 (``mkdir(parents=True)`` would
    give the parents the umask's mode); tighten ``path`` itself if it is open to others."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    if path.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):  # not ours to change: the files are 0600 anyway
            path.chmod(0o700)
