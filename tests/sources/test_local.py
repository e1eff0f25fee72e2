"""local_dir=: namespaces read from files in the export layout, watched, Apollo never asked;
with both watchers (watchfiles and the stat poll), in a forked worker too."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, LocalFileError, Source, SyncApolloClient
from aioapollo._sources import watch
from aioapollo.testing import ApolloTestServer

from .._support import dead_url, wait_until, write
from .._workers import Child
from ..conftest import APP, FAST, Events

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@pytest.fixture(params=["watchfiles", "poll"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both watchers: watchfiles (the `local` extra) and the stdlib stat poll."""
    monkeypatch.setattr(watch, "default_backend", lambda: request.param)
    yield request.param


def export(root: Path) -> Path:
    """An export's env directory: DEV/default/application and DEV/default/db.json."""
    write(root / "DEV/default/application", 'greeting: "hello"\ntimeout: "30"\n')
    write(root / "DEV/default/db.json", '{"pool": 5}\n')
    return root / "DEV"


async def test_reads_the_export_layout_never_asks_apollo_and_applies_edits_within_a_second(
    backend: str, server: ApolloTestServer, tmp_path: Path
) -> None:
    env_dir = export(tmp_path / "export")
    client = ApolloClient(
        APP,
        namespaces=["application", "db.json"],
        config_server=server.url,  # given, and never asked
        local_dir=env_dir,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    events = Events.of(client)
    async with client:
        assert client.get_nowait("greeting") == "hello"
        assert (await client.namespace("db.json")).data == {"pool": 5}
        assert dict(client.sources) == {"application": Source.LOCAL, "db.json": Source.LOCAL}
        assert client.stats().namespaces["application"].source is Source.LOCAL
        began = time.monotonic()
        write(env_dir / "default/application", 'greeting: "hi"\ntimeout: "30"\n')
        event = await events.next(timeout=1.0)
        took = time.monotonic() - began
        assert took < 1.0, took
        assert {k: c.new_value for k, c in event.changes.items()} == {"greeting": "hi"}
        assert client.get_nowait("greeting") == "hi"
        write(env_dir / "default/db.json", '{"pool": 6}\n')
        event = await events.next(timeout=1.0)
        assert (await client.namespace("db.json")).data == {"pool": 6}
    assert server.requests == []
    assert not (tmp_path / "cache").exists()


async def test_a_bad_edit_keeps_the_last_good_values_with_one_warning(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_dir = export(tmp_path)
    # db.json is the tick: each step edits it after application (see _next_scan)
    client = ApolloClient(
        APP, namespaces=["application", "db.json"], local_dir=env_dir, cache_dir=None
    )
    events = Events.of(client)
    async with client:
        path = env_dir / "default/application"
        with caplog.at_level(logging.WARNING, "aioapollo"):
            for _ in range(3):  # the same problem is said once, however often it is seen
                await _next_scan(env_dir, events, lambda: write(path, 'greeting: "broken\n  - [\n'))
        said = [r.getMessage() for r in caplog.records]
        warned = [m for m in said if "keeping its last good" in m]
        assert len(warned) == 1 and str(path) in warned[0] and "YAML" in warned[0]
        assert client.get_nowait("greeting") == "hello"
        # a number: export files hold strings only
        await _next_scan(env_dir, events, lambda: write(path, "greeting: 30\n"))
        assert client.get_nowait("greeting") == "hello"
        await _next_scan(env_dir, events, path.unlink)  # deleted: kept, said
        assert client.get_nowait("greeting") == "hello"
        assert "no file for it" in caplog.text
        write(path, 'greeting: "fixed"\n')
        event = await events.next(timeout=1.0)
        assert event.changes["greeting"].new_value == "fixed"
        assert client.get_nowait("timeout") is None


async def _next_scan(env_dir: Path, events: Events, edit: Callable[[], object]) -> None:
    """Edit application, then wait until the files were read again: a scan reads every
    namespace at once, so the one that delivers a later edit of db.json (the tick) read the
    edit too; the tick's event is the next one, so application changed nothing."""
    edit()
    pool = next(_ticks)
    write(env_dir / "default/db.json", f'{{"pool": {pool}}}\n')
    event = await events.next(timeout=2.0)
    assert event.namespace == "db.json"
    assert event.snapshot.data == {"pool": pool}


_ticks = itertools.count(100)


async def test_cluster_directory_default_fallback_and_flat_directory(tmp_path: Path) -> None:
    write(tmp_path / "env/default/application", 'where: "default"\n')
    write(tmp_path / "env/SH/application", 'where: "SH"\n')
    write(tmp_path / "env/default/other", 'where: "default other"\n')
    write(tmp_path / "flat/application", 'where: "flat"\n')
    cases = [
        ({"cluster": "SH"}, tmp_path / "env", "SH"),
        ({"cluster": "BJ"}, tmp_path / "env", "default"),  # Apollo's fallback cluster
        ({}, tmp_path / "env/SH", "SH"),  # pointing at a cluster directory: flat
        ({}, tmp_path / "flat", "flat"),  # a ConfigMap mount
    ]
    for options, root, expected in cases:
        client = ApolloClient(APP, local_dir=root, cache_dir=None, **options)
        async with client:
            assert client.get_nowait("where") == expected


async def test_a_missing_namespace_fails_start_unless_allow_empty(tmp_path: Path) -> None:
    env_dir = export(tmp_path / "export")
    client = ApolloClient(APP, namespaces=["application", "nope"], local_dir=env_dir)
    with pytest.raises(LocalFileError) as raised:
        await client.start()
    assert "'nope'" in str(raised.value) and "no file for it" in str(raised.value)
    top = ApolloClient(APP, local_dir=tmp_path / "export")  # the export's top: a hint
    with pytest.raises(LocalFileError, match=r"point at DIR/<env>"):
        await top.start()
    write(tmp_path / "bad/application", "[1, 2]\n")
    bad = ApolloClient(APP, local_dir=tmp_path / "bad")
    with pytest.raises(LocalFileError, match="a mapping of key: value"):
        await bad.start()
    empty = ApolloClient(
        APP, namespaces=["application", "nope"], local_dir=env_dir, allow_empty=True
    )
    async with empty:
        assert empty.sources["nope"] is Source.NONE
        assert empty.get_nowait("greeting") == "hello"


def test_no_server_is_needed_and_from_env_reads_the_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="local_dir="):
        ApolloClient(APP)
    for name in ("APOLLO_META", "APOLLO_CONFIG_SERVICE", "APOLLO_CONFIGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ID", APP)
    monkeypatch.setenv("APOLLO_LOCAL_DIR", str(tmp_path / "l"))
    monkeypatch.setenv("APOLLO_OVERRIDES_DIR", str(tmp_path / "o"))
    monkeypatch.setenv("APOLLO_BOOTSTRAP_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("APOLLO_RESOLVE_PLACEHOLDERS", "yes")
    options = ApolloClient.from_env().options
    assert options.local_dir == tmp_path / "l" and options.overrides == tmp_path / "o"
    assert options.bootstrap_dir == tmp_path / "b" and options.resolve_placeholders is True
    monkeypatch.setenv("APOLLO_RESOLVE_PLACEHOLDERS", "maybe")
    with pytest.raises(ValueError, match="APOLLO_RESOLVE_PLACEHOLDERS"):
        ApolloClient.from_env()


async def test_share_poll_is_not_used_with_local_dir(tmp_path: Path) -> None:
    client = ApolloClient(
        APP, local_dir=export(tmp_path), share_poll=True, share_dir=tmp_path / "share"
    )
    async with client:
        assert client.stats().role == "solo"
        assert client.stats().group is None  # never joined a sharing group
    assert not (tmp_path / "share").exists()


def test_sync_client_with_local_dir(backend: str, tmp_path: Path) -> None:
    env_dir = export(tmp_path)
    seen: list[Any] = []
    changed = threading.Event()
    with SyncApolloClient(APP, local_dir=env_dir, cache_dir=None) as client:
        client.on_change(lambda event: (seen.append(event), changed.set()))
        assert client.get("greeting") == "hello"
        write(env_dir / "default/application", 'greeting: "sync"\n')
        assert changed.wait(1.0)
        assert client.get("greeting") == "sync"


async def test_a_forked_worker_watches_the_files_itself(backend: str, tmp_path: Path) -> None:
    """A preforking server's shape: loaded in the parent, started again in the worker, which
    follows edits on its own (the parent's watcher does not survive the fork)."""
    env_dir = export(tmp_path)
    client = ApolloClient(APP, local_dir=env_dir, cache_dir=None)
    await client.start()
    await client.aclose()
    client = ApolloClient(APP, local_dir=env_dir, cache_dir=None)
    await client.start()  # the parent's, running when the worker forks

    async def worker(report: Any) -> None:
        events = Events.of(client)
        assert client.get_nowait("greeting") == "hello"  # inherited
        await client.start()
        report({"started": client.state.value, "source": client.sources["application"].value})
        # The edit below is a plain (truncating) write: under load a watcher may see it
        # half done first and then whole. What matters is when the whole edit arrives.
        value = None
        while value != "from the file":
            event = await events.next(timeout=5.0)
            value = event.changes["greeting"].new_value if "greeting" in event.changes else None
        report({"value": value, "at": time.time()})
        await client.aclose()

    child = Child.running(worker)
    assert await child.next() == {"started": "running", "source": "local"}
    written = time.time()
    write(env_dir / "default/application", 'greeting: "from the file"\n')
    message = await child.next()
    assert message["value"] == "from the file"
    assert message["at"] - written < 1.0
    assert await child.exit_code() == 0
    # The parent's own watcher follows the file too.
    await wait_until(lambda: client.get_nowait("greeting") == "from the file", timeout=2.0)
    await client.aclose()


async def test_a_dead_server_does_not_matter(tmp_path: Path) -> None:
    client = ApolloClient(APP, local_dir=export(tmp_path), config_server=dead_url())
    async with client:
        assert client.get_nowait("timeout") == "30"
