"""pytest plugin (``pytest11`` entry point ``aioapollo``): opt-in Apollo test-server fixtures.

Installing aioapollo registers this plugin in every pytest run, but it only defines fixtures,
which do nothing until a test asks for them by name:

- ``apollo_server``: a started :class:`~aioapollo.testing.ApolloTestServer` with a 0.5 s
  long-poll hold, closed after the test.
- ``apollo_server_factory``: an async callable ``await factory(**kwargs)`` that starts more
  servers (e.g. sharing ``store=apollo_server.store`` for failover tests); all are closed after
  the test.

The fixtures are async and need pytest-asyncio. Without it this module still imports, and the
fixtures fail with a message saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ._server import ApolloTestServer

__all__ = ["apollo_server", "apollo_server_factory"]

#: Long-poll hold of the fixture servers: short, so a 304 round trip does not slow tests down.
FIXTURE_HOLD_SECONDS = 0.5

ServerFactory = Callable[..., Awaitable[ApolloTestServer]]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised in projects without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

_MISSING = (
    "the aioapollo fixture {name!r} needs pytest-asyncio: pip install pytest-asyncio "
    "(or aioapollo-client[test])"
)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``apollo`` marker, so ``--strict-markers`` suites may use it."""
    config.addinivalue_line(
        "markers", "apollo: the test runs against aioapollo's in-process Apollo test server"
    )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def apollo_server_factory() -> AsyncIterator[ServerFactory]:
        """Start test servers on demand; every one is closed after the test."""
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
    async def apollo_server() -> AsyncIterator[ApolloTestServer]:
        """A started Apollo test server (hold 0.5 s), closed after the test."""
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
