"""The disk cache under bad files and loose permissions.

A corrupt, truncated, empty or foreign cache file is ignored with a warning and replaced by
the next good fetch; the cache directories are 0700 and the files 0600 whatever the umask.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioapollo import ApolloClient, Source
from aioapollo.testing import ApolloTestServer

from .._support import dead_url, wait_until
from ..conftest import APP, FAST, Events, cache_of

GOOD = {
    "format": "aioapollo-cache/1",
    "appId": APP,
    "cluster": "default",
    "namespace": "application",
    "releaseKey": "r1",
    "savedAt": 0,
    "configurations": {"greeting": "cached"},
}

BAD_FILES: dict[str, bytes] = {
    "corrupt": b"\x00\xff\xfe not json at all",
    "truncated": json.dumps(GOOD).encode()[:40],
    "empty": b"",
    "foreign-app": json.dumps({**GOOD, "appId": "someone-else"}).encode(),
    "foreign-answer": json.dumps({**GOOD, "answer": "f" * 64}).encode(),  # copied across
    "foreign-format": b"greeting=cached\ntimeout=30\n",  # a Java client .properties cache
    "wrong-types": json.dumps({**GOOD, "configurations": {"greeting": 5}}).encode(),
}


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("kind", list(BAD_FILES))
async def test_bad_cache_file_is_ignored_then_rewritten_by_the_next_good_fetch(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = dead_url()  # Apollo is down at start: the client must look at the cache
    cache = cache_of(tmp_path, url)
    cache.directory.mkdir(parents=True, mode=0o700)
    cache.path("application").write_bytes(BAD_FILES[kind])
    events = Events()
    client = ApolloClient(APP, config_server=url, cache_dir=tmp_path, allow_empty=True, **FAST)
    client.on_change(events)
    async with client:
        warnings = [r for r in caplog.records if "corrupt or not ours" in r.message]
        assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
        assert client.sources["application"] is Source.NONE  # nothing trusted from the file
        assert await client.get("greeting") is None
        port = int(url.rsplit(":", 1)[1])
        async with ApolloTestServer(hold_seconds=0.5, port=port) as server:
            server.publish(APP, "application", {"greeting": "fresh"})
            await events.next(timeout=8)
            assert await client.get("greeting") == "fresh"
            await wait_until(lambda: cache.load("application") is not None)
    restored = cache.load("application")
    assert restored is not None and restored.items == {"greeting": "fresh"}
    assert stat.S_IMODE(cache.path("application").stat().st_mode) == 0o600


async def test_cache_dirs_and_files_are_private_whatever_the_umask(
    server: ApolloTestServer, tmp_path: Path, umask_zero: None
) -> None:
    root = tmp_path / "missing" / "cache"  # does not exist yet: created on the first save
    async with ApolloClient(APP, config_server=server.url, cache_dir=root, **FAST):
        pass
    folder = cache_of(root, server.url).directory  # root/APP/config-cache/<answer>
    files = list(folder.iterdir())
    assert [f.name for f in files] == [f"{APP}+default+application.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    for created in (folder, folder.parent, folder.parent.parent, root, root.parent):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700, created


async def test_a_cache_dir_open_to_others_is_tightened(
    server: ApolloTestServer, tmp_path: Path
) -> None:
    folder = cache_of(tmp_path, server.url).directory
    folder.mkdir(parents=True)
    for opened in (folder, folder.parent):  # the answer's folder and config-cache
        opened.chmod(0o777)
    async with ApolloClient(APP, config_server=server.url, cache_dir=tmp_path, **FAST):
        pass
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == [f"{APP}+default+application.json"]
