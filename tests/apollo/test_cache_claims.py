"""Workers of one host write each release to the disk cache once between them.

Every worker hears of a release at the same moment. A worker that finds the release's
temporary file taken (another one is writing it now) skips its own write; a temporary file
left by a writer that died is not waited on for ever.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from aioapollo._apollo.cache import _STALE_CLAIM, DiskCache

from ..conftest import cache_of

ITEMS = {"greeting": "hello"}


def _cache(tmp_path: Path) -> DiskCache:
    return cache_of(tmp_path / "cache", "http://127.0.0.1:1")


def _temporaries(cache: DiskCache) -> list[str]:
    return sorted(p.name for p in cache.directory.iterdir() if p.name.startswith(".tmp-"))


def test_a_release_another_worker_is_writing_is_not_written_again(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.save("application", "r1", ITEMS, 1.0)
    other = _cache(tmp_path)  # another worker of the host, writing r2 right now
    claim = other._claim("application", "r2")
    assert claim is not None
    fd, name = claim
    try:
        assert not cache.save("application", "r2", {"greeting": "new"}, 2.0)
        loaded = cache.load("application")  # still r1, whole
        assert loaded is not None and loaded.release_key == "r1"
        # Another release is not held up by it.
        assert cache.save("application", "r3", {"greeting": "newer"}, 3.0)
    finally:
        os.close(fd)
        os.unlink(name)
    loaded = cache.load("application")
    assert loaded is not None and loaded.release_key == "r3"
    assert _temporaries(cache) == []


def test_a_temporary_file_left_by_a_dead_writer_does_not_stop_the_write(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.save("application", "r1", ITEMS, 1.0)
    claim = cache._claim("application", "r2")
    assert claim is not None
    fd, name = claim
    os.write(fd, b'{"half')  # the writer died here
    os.close(fd)
    old = time.time() - _STALE_CLAIM - 5
    os.utime(name, (old, old))
    assert cache.save("application", "r2", {"greeting": "new"}, 2.0)
    loaded = cache.load("application")
    assert loaded is not None and loaded.release_key == "r2"
    assert loaded.items == {"greeting": "new"}
    # Written under a name of its own: the dead writer's file is left as it was.
    assert _temporaries(cache) == [Path(name).name]
    assert Path(name).read_bytes() == b'{"half'


def test_a_cache_directory_removed_while_running_is_made_again(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.save("application", "r1", ITEMS, 1.0)
    for path in cache.directory.iterdir():
        path.unlink()
    cache.directory.rmdir()
    assert cache.save("application", "r2", ITEMS, 2.0)
    loaded = cache.load("application")
    assert loaded is not None and loaded.release_key == "r2"
    assert (cache.directory.stat().st_mode & 0o777) == 0o700


def test_a_release_without_a_key_is_written_under_a_random_name(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.save("application", None, ITEMS, 1.0)
    assert cache.save("application", None, ITEMS, 2.0)  # no key: never known to be held
    loaded = cache.load("application")
    assert loaded is not None and loaded.items == ITEMS and loaded.saved_at == 2.0
    assert _temporaries(cache) == []
