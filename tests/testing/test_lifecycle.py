"""ApolloTestServer lifecycle: start/close rules, ports, the request log limit."""

from __future__ import annotations

import pytest

from aioapollo.testing import ApolloTestServer

from .conftest import Http


async def test_start_and_close_rules() -> None:
    server = ApolloTestServer()
    assert "new" in repr(server)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    assert server.config_services == []
    async with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert repr(server) == f"<ApolloTestServer {server.url}>"
        assert server.config_services == [server.url]
        assert not server.closing
        with pytest.raises(RuntimeError, match="started"):
            await server.start()
    assert server.closing
    await server.close()
    with pytest.raises(RuntimeError, match="closed"):
        await server.start()
    never_started = ApolloTestServer()
    await never_started.close()
    with pytest.raises(RuntimeError, match="closed"):
        await never_started.start()


async def test_port_in_use(apollo_server: ApolloTestServer) -> None:
    clash = ApolloTestServer(port=apollo_server.port)
    with pytest.raises(OSError):
        await clash.start()
    await clash.close()


async def test_request_log_limit(http: Http) -> None:
    async with ApolloTestServer(max_requests=3) as server:
        for index in range(5):
            await http.get(f"{server.url}/services/config?n={index}")
        assert [r.query["n"] for r in server.requests] == ["2", "3", "4"]
        server.requests.clear()  # a copy: the log is untouched
        assert len(server.requests) == 3
        server.clear_requests()
        assert server.requests == []


def test_public_surface_of_aioapollo_testing() -> None:
    import aioapollo.testing as testing

    public = {name for name in dir(testing) if not name.startswith(("_", "@"))}
    assert public == set(testing.__all__)
    assert list(testing.__all__) == sorted(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name).__module__.startswith("aioapollo.testing."), name
