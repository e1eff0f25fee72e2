"""Workers of one host write each release to the disk cache once between them.

Every worker hears of a release at the same moment. A worker that finds the release's
temporary file taken (another one is writing it now) skips its own write; a temporary file
left by a writer that died is not waited on for ever. Workers forked from the process that
built the client see a sibling's claim in shared memory first, without any file system call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from aioapollo._apollo.cache import _STALE_CLAIM, DiskCache, SiblingClaims
from aioapollo._core.cachewriter import CacheWriter

from .._support import wait_until
from .._workers import Child, Report
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


async def _sibling_takes(siblings: SiblingClaims, release_key: str, *, ago: float = 0.0) -> Child:
    """A forked sibling that took ``release_key`` of application (``ago`` seconds ago) and
    lives on (writing it, as far as anyone can tell) until killed."""

    def body(report: Report) -> None:
        real = time.time
        time.time = lambda: real() - ago  # in the child only
        siblings.take("application", release_key)
        report({"took": release_key})
        time.sleep(60)

    child = Child(body)
    assert (await child.next()) == {"took": release_key}
    return child


async def _kill(child: Child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert await child.exit_code() == -signal.SIGKILL


async def test_a_release_a_forked_sibling_took_is_seen_in_shared_memory(tmp_path: Path) -> None:
    cache = _cache(tmp_path)  # built before the fork, as a preforking server's app is
    siblings = cache.siblings
    assert siblings is not None
    sibling = await _sibling_takes(siblings, "r2")
    assert siblings.taken_by_another("application", "r2")
    assert not siblings.taken_by_another("application", "r3")  # another release
    assert not siblings.taken_by_another("unknown", "r2")  # not a namespace of the client
    assert not siblings.taken_by_another("application", None)  # no key: the files decide
    assert not cache.directory.exists()  # nothing of this touched the file system
    await _kill(sibling)  # killed before it wrote r2: its claim stops counting at once
    assert not siblings.taken_by_another("application", "r2")
    siblings.take("application", "r3")
    assert not siblings.taken_by_another("application", "r3")  # our own: retries go ahead


async def test_a_claim_taken_long_ago_is_not_honoured(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.siblings is not None
    sibling = await _sibling_takes(cache.siblings, "r2", ago=_STALE_CLAIM + 1)
    assert not cache.siblings.taken_by_another("application", "r2")  # alive, but stuck
    await _kill(sibling)


async def test_the_cache_writer_leaves_a_release_a_sibling_took_to_that_sibling(
    tmp_path: Path,
) -> None:
    cache = _cache(tmp_path)
    assert cache.siblings is not None
    sibling = await _sibling_takes(cache.siblings, "r2")
    writer = CacheWriter(cache)
    writer.open()
    writer.submit("application", "r2", ITEMS, 1.0)
    await writer.aclose(5)
    assert cache.load("application") is None  # the sibling writes it
    assert writer.pending == ()
    writer = CacheWriter(cache)
    writer.open()
    writer.submit("application", "r3", ITEMS, 2.0)  # a release nobody took: written here
    await writer.aclose(5)
    loaded = cache.load("application")
    assert loaded is not None and loaded.release_key == "r3"
    assert not cache.siblings.taken_by_another("application", "r3")
    await _kill(sibling)


async def _seen_taken_by_a_sibling(siblings: SiblingClaims, release_key: str) -> bool:
    """Whether a forked sibling sees ``release_key`` of application as taken by another."""

    def body(report: Report) -> None:
        report({"taken": siblings.taken_by_another("application", release_key)})

    child = Child(body)
    taken = (await child.next())["taken"]
    assert await child.exit_code() == 0
    assert isinstance(taken, bool)
    return taken


async def test_a_release_is_marked_as_its_write_starts_not_while_listeners_run(
    tmp_path: Path,
) -> None:
    """Marked at submit(), a release would be lost to every worker if the marking one died
    or closed while its listeners ran: the others would have dropped it already."""
    cache = _cache(tmp_path)
    assert cache.siblings is not None
    listeners_done = asyncio.Event()
    writer = CacheWriter(cache, picked_up=listeners_done.wait, waiting=lambda: True)
    writer.open()
    writer.submit("application", "r2", ITEMS, 1.0)
    await wait_until(lambda: writer.holding)  # waiting for the listeners to take the event
    assert not await _seen_taken_by_a_sibling(cache.siblings, "r2")
    listeners_done.set()
    await wait_until(lambda: cache.load("application") is not None)
    assert await _seen_taken_by_a_sibling(cache.siblings, "r2")  # written: others drop it
    await writer.aclose(5)


async def test_a_failed_write_gives_its_claim_up(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache directory cannot be made under a file")
    cache = cache_of(blocker / "cache", "http://127.0.0.1:1")
    assert cache.siblings is not None
    writer = CacheWriter(cache, retry_initial=60)
    writer.open()
    writer.submit("application", "r2", ITEMS, 1.0)
    await wait_until(lambda: writer.failing)
    assert writer.pending == ("application",)  # kept, to retry
    assert not await _seen_taken_by_a_sibling(cache.siblings, "r2")  # a sibling may write it
    await writer.aclose(0)
