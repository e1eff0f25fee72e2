"""pytest plugin (``pytest11`` entry point ``aioapollo``): opt-in Apollo test-server fixtures.

Installing aioapollo-client registers this plugin in every pytest run, but it only defines
fixtures, which do nothing until a test asks for them by name:

- ``apollo_server``: a started :class:`~aioapollo.testing.ApolloTestServer` with a 0.5 s
  long-poll hold, closed after the test. It serves from the test's event loop, so it is for
  ``async def`` tests (pytest-asyncio); a plain ``def`` test that requests it fails at once
  and names the next fixture.
- ``apollo_server_thread``: the same server on an event loop of its own, in a thread, for
  plain ``def`` tests (Starlette's ``TestClient``, Flask's and Django's test clients,
  :class:`~aioapollo.SyncApolloClient`). Needs no pytest-asyncio.
- ``apollo_server_factory``: an async callable ``await factory(**kwargs)`` that starts more
  servers (e.g. sharing ``store=apollo_server.store`` for failover tests); all are closed after
  the test.

The async fixtures need pytest-asyncio. Without it this module still imports, and they fail
with a message saying so.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from ._server import ApolloTestServer

__all__ = ["apollo_server", "apollo_server_factory", "apollo_server_thread"]

#: Long-poll hold of the fixture servers: short, so a 304 round trip does not slow tests down.
FIXTURE_HOLD_SECONDS = 0.5

ServerFactory = Callable[..., Awaitable[ApolloTestServer]]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised in projects without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

_MISSING = (
    "the aioapollo fixture {name!r} needs pytest-asyncio: pip install pytest-asyncio "
    "(a plain `def` test can use 'apollo_server_thread' instead, which does not)"
)

_SYNC_TEST = (
    "{test} is a plain `def` test, and the aioapollo fixture {name!r} serves from the event "
    "loop of async tests, which stands still while a sync test runs: every request to it "
    "would time out. Use 'apollo_server_thread' (the server on its own thread) in sync "
    "tests, or make the test `async def`"
)


def _refuse_sync_test(request: pytest.FixtureRequest, name: str) -> None:
    """Fail at once when a plain ``def`` test asks for a server that its idle loop would host."""
    function = getattr(request.node, "obj", None)
    if function is not None and not inspect.iscoroutinefunction(function):
        raise pytest.UsageError(_SYNC_TEST.format(test=request.node.name, name=name))


@pytest.fixture
def apollo_server_thread() -> Iterator[ApolloTestServer]:
    """A started Apollo test server (hold 0.5 s) on its own thread and event loop, for sync
    tests; closed after the test. ``publish``, ``inject`` and the other plain methods work
    from the test's thread."""
    with start_blocking_portal("asyncio") as portal:
        server = ApolloTestServer(hold_seconds=FIXTURE_HOLD_SECONDS)
        portal.call(server.start)
        try:
            yield server
        finally:
            portal.call(server.close)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``apollo`` marker, so ``--strict-markers`` suites may use it."""
    config.addinivalue_line(
        "markers", "apollo: the test runs against aioapollo's in-process Apollo test server"
    )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def apollo_server_factory(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[ServerFactory]:
        """Start test servers on demand; every one is closed after the test."""
        _refuse_sync_test(request, "apollo_server_factory")
        servers: list[ApolloTestServer] = []

        async def factory(**kwargs: Any) -> ApolloTestServer:
            kwargs.setdefault("hold_seconds", FIXTURE_HOLD_SECONDS)
            server = ApolloTestServer(**kwargs)
            await server.start()
            servers.append(server)
            return server

        try:
            yield factory
        finally:
            for server in reversed(servers):
                await server.close()

    @pytest_asyncio.fixture
    async def apollo_server(request: pytest.FixtureRequest) -> AsyncIterator[ApolloTestServer]:
        """A started Apollo test server (hold 0.5 s), closed after the test."""
        _refuse_sync_test(request, "apollo_server")
        async with ApolloTestServer(hold_seconds=FIXTURE_HOLD_SECONDS) as server:
            yield server

else:  # pragma: no cover - exercised in projects without pytest-asyncio

    @pytest.fixture
    def apollo_server_factory() -> ServerFactory:
        """Unavailable: needs pytest-asyncio."""
        raise pytest.UsageError(_MISSING.format(name="apollo_server_factory"))

    @pytest.fixture
    def apollo_server() -> ApolloTestServer:
        """Unavailable: needs pytest-asyncio."""
        raise pytest.UsageError(_MISSING.format(name="apollo_server"))
