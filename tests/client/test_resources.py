"""Live resources (cfg.resource): built from config, rebuilt on change, drained, then closed."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from aioapollo import (
    ApolloClient,
    ErrorEvent,
    Hooks,
    LiveResource,
    NamespaceNotFoundError,
    NamespaceSnapshot,
    ResourceBuildError,
    SyncApolloClient,
)
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, FAST, ClientFactory

BASE = {"greeting": "hello", "timeout": "30", "db.url": "postgres://db/one", "db.size": "4"}


class Pool:
    """Stands in for a connection pool: records its settings and whether it was closed."""

    def __init__(self, url: str | None, size: int | None) -> None:
        self.url, self.size = url, size
        self.closed = asyncio.Event()

    async def aclose(self) -> None:
        self.closed.set()


class Builds:
    """An async ``build`` that counts its calls and can be told to fail."""

    def __init__(self) -> None:
        self.pools: list[Pool] = []
        self.fail: BaseException | None = None
        self.built = asyncio.Event()
        self.calls = 0

    async def __call__(self, values: NamespaceSnapshot) -> Pool:
        self.calls += 1
        await asyncio.sleep(0)  # a real build awaits (connects)
        if self.fail is not None:
            raise self.fail
        pool = Pool(values.get("db.url"), values.get_int("db.size"))
        self.pools.append(pool)
        self.built.set()
        return pool

    async def next(self) -> Pool:
        self.built.clear()
        await asyncio.wait_for(self.built.wait(), 10)
        return self.pools[-1]


class Errors(Hooks):
    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []
        self.seen = asyncio.Event()

    def on_error(self, event: ErrorEvent) -> None:
        if event.operation.startswith("resource:"):
            self.events.append(event)
            self.seen.set()


@pytest.fixture
async def client(server: ApolloTestServer, make_client: ClientFactory) -> ApolloClient:
    server.publish(APP, "application", BASE)
    return make_client()


async def test_a_change_of_a_watched_key_swaps_the_object_and_closes_the_old_one_after_use(
    server: ApolloTestServer, client: ApolloClient
) -> None:
    build = Builds()
    holder: LiveResource[Pool] = client.resource(build, prefixes=["db."], name="db")
    await client.start()
    async with holder.use() as first:
        assert (first.url, first.size) == ("postgres://db/one", 4)
        assert holder.generation == 1
        server.publish(APP, "application", {**BASE, "db.size": "8"})
        second = await build.next()
        # Swapped at once for new borrowers; the old one stays open while borrowed.
        async with holder.use() as now:
            assert now is second and now.size == 8
        assert holder.current is second and holder.generation == 2
        assert not first.closed.is_set()
        assert holder.stats().draining == 1
    await asyncio.wait_for(first.closed.wait(), 5)  # closed once its borrower is done
    assert holder.stats().draining == 0
    assert not second.closed.is_set()
    stats = client.stats()
    assert [r.as_dict() for r in stats.resources] == [
        {
            "name": "db",
            "generation": 2,
            "borrowed": 0,
            "draining": 0,
            "builds": 2,
            "failures": 0,
            "last_error": None,
        }
    ]
    assert "resources" in stats.as_dict()


async def test_other_keys_and_equal_values_do_not_rebuild(
    server: ApolloTestServer, client: ApolloClient
) -> None:
    build = Builds()
    holder = client.resource(build, keys=["db.url"])
    seen: asyncio.Queue[str] = asyncio.Queue()
    client.add_listener(lambda e: seen.put_nowait(",".join(sorted(e.changes))))
    await client.start()
    await holder.get()
    server.publish(APP, "application", {**BASE, "greeting": "hi"})
    server.publish(APP, "application", {**BASE, "greeting": "hi", "db.size": "9"})
    while "db.size" not in await asyncio.wait_for(seen.get(), 10):
        pass
    # A direct refresh with unchanged values does nothing either.
    assert await holder.refresh() is False
    assert build.calls == 1 and holder.generation == 1


async def test_an_old_object_still_borrowed_is_closed_when_grace_runs_out(
    server: ApolloTestServer, client: ApolloClient, caplog: pytest.LogCaptureFixture
) -> None:
    build = Builds()
    holder = client.resource(build, prefixes=["db."], grace=0.2)
    await client.start()
    async with holder.use() as first:
        server.publish(APP, "application", {**BASE, "db.url": "postgres://db/two"})
        await build.next()
        await asyncio.wait_for(first.closed.wait(), 5)  # while still borrowed
    assert "after grace" in caplog.text and "1 borrower(s)" in caplog.text


async def test_a_failing_rebuild_keeps_the_old_object_and_is_reported(
    server: ApolloTestServer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.publish(APP, "application", BASE)
    errors = Errors()
    client = make_client(hooks=[errors])
    build = Builds()
    holder = client.resource(build, prefixes=["db."], name="db")
    await client.start()
    first = await holder.get()
    build.fail = ValueError("cannot connect to postgres://user:s3cret@db/three")
    caplog.set_level(logging.INFO, "aioapollo")
    server.publish(APP, "application", {**BASE, "db.url": "postgres://user:s3cret@db/three"})
    await asyncio.wait_for(errors.seen.wait(), 10)
    event = errors.events[0]
    assert event.operation == "resource:db" and event.kind == "ResourceBuildError"
    assert isinstance(event.error, ResourceBuildError) and event.error.crash == "ValueError"
    assert isinstance(event.error.__cause__, ValueError)
    async with holder.use() as pool:
        assert pool is first and not first.closed.is_set()
    stats = client.stats()
    assert stats.resources[0].failures == 1 and stats.resources[0].last_error == "ValueError"
    assert stats.degraded is not None and "resource 'db' keeps generation 1" in stats.degraded
    assert "rebuild failed with ValueError; keeping generation 1" in caplog.text
    assert "s3cret" not in caplog.text  # neither the value nor the exception's message
    # The next good release builds again and clears the failure.
    build.fail = None
    server.publish(APP, "application", {**BASE, "db.url": "postgres://db/four"})
    fourth = await build.next()
    assert fourth.url == "postgres://db/four" and holder.current is fourth
    assert client.stats().degraded is None
    await asyncio.wait_for(first.closed.wait(), 5)


async def test_the_first_build_failing_raises_and_the_next_use_tries_again(
    client: ApolloClient,
) -> None:
    build = Builds()
    build.fail = OSError("refused")
    holder = client.resource(build)
    await client.start()
    with pytest.raises(ResourceBuildError, match="'Builds' failed with OSError") as info:
        async with holder.use():
            pass  # pragma: no cover
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(Exception, match="not built yet"):
        holder.current  # noqa: B018
    build.fail = None
    assert (await holder.get()).url == BASE["db.url"]


async def test_concurrent_first_uses_share_one_build(client: ApolloClient) -> None:
    build = Builds()
    holder = client.resource(build)
    await client.start()
    got = await asyncio.gather(*(holder.get() for _ in range(10)))
    assert build.calls == 1 and all(p is got[0] for p in got)


async def test_sync_build_custom_close_and_client_close_closes_everything(
    server: ApolloTestServer, client: ApolloClient
) -> None:
    closed: list[dict[str, str]] = []
    done = asyncio.Event()

    def close(obj: dict[str, str]) -> None:
        closed.append(obj)
        done.set()

    holder = client.resource(
        lambda values: dict(values.items), keys=["timeout"], close=close, name="cfg"
    )
    async with client:
        first = await holder.get()
        assert first == {"timeout": "30"}
        server.publish(APP, "application", {**BASE, "timeout": "45"})
        await asyncio.wait_for(done.wait(), 10)  # unborrowed: closed right after the swap
        assert holder.current == {"timeout": "45"} and holder.generation == 2
        assert closed == [{"timeout": "30"}]
    assert closed == [{"timeout": "30"}, {"timeout": "45"}]  # aclose() closed the current one
    with pytest.raises(Exception, match="is closed"):
        await holder.get()


async def test_lazy_start_builds_after_loading_and_unknown_namespaces_are_refused(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", BASE)
    client = make_client(lazy_start=True)
    holder = client.resource(lambda values: values.get("greeting"))
    assert await holder.get() == "hello"  # started the client
    with pytest.raises(NamespaceNotFoundError):
        client.resource(lambda values: None, namespaces=["nope"])
    with pytest.raises(TypeError, match="collections"):
        client.resource(lambda values: None, keys="db.url")
    with pytest.raises(ValueError, match="grace"):
        client.resource(lambda values: None, grace=-1)


async def test_namespaces_merge_with_the_first_winning(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "application", {"a": "1", "b": "1"})
    server.publish(APP, "extra", {"b": "2", "c": "2"})
    client = make_client(namespaces=["application", "extra"])
    holder = client.resource(lambda v: dict(v.items), namespaces=["extra", "application"])
    await client.start()
    assert await holder.get() == {"a": "1", "b": "2", "c": "2"}


class SyncPool:
    def __init__(self, size: int | None) -> None:
        self.size = size
        self.closed = threading.Event()
        self.thread = threading.current_thread().name

    def close(self) -> None:
        self.closed.set()


async def test_the_sync_flavour_rebuilds_on_the_listener_thread(server: ApolloTestServer) -> None:
    server.publish(APP, "application", BASE)
    built = threading.Event()
    pools: list[SyncPool] = []

    def build(values: NamespaceSnapshot) -> SyncPool:
        pools.append(SyncPool(values.get_int("db.size")))
        built.set()
        return pools[-1]

    def scenario() -> None:
        cfg = SyncApolloClient(APP, config_server=server.url, cache_dir=None, **FAST)
        holder = cfg.resource(build, keys=["db.size"])
        with pytest.raises(TypeError, match="plain functions"):
            cfg.resource(_async_build)
        with cfg:
            with holder.use() as first:
                assert first.size == 4
                built.clear()
                server.publish(APP, "application", {**BASE, "db.size": "6"})
                assert built.wait(10)
                with holder.use() as second:
                    assert second.size == 6 and second.thread != first.thread
                assert not first.closed.is_set()
            assert first.closed.is_set()  # the last borrower closed it on its way out
            assert cfg.stats().resources[0].generation == 2
        assert pools[-1].closed.is_set()  # close() closes the current one

    await asyncio.to_thread(scenario)


async def _async_build(values: NamespaceSnapshot) -> Any:
    return None
