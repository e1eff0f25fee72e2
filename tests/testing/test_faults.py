"""Fault injection: status, delay, drop, reset mid-body, garbage, hang; in Python and over HTTP."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from aioapollo.testing import ApolloTestServer, Fault

from .conftest import Http, notifications_query

APP = "SampleApp"


async def raw_get(server: ApolloTestServer, target: str) -> bytes:
    """One HTTP/1.1 request on a fresh socket; returns everything read until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def config_url(apollo_server: ApolloTestServer) -> str:
    apollo_server.publish(APP, "application", {"a": "1"})
    return f"{apollo_server.url}/configs/{APP}/default/application"


async def test_status_fault_for_next_n_requests(
    apollo_server: ApolloTestServer, http: Http, config_url: str
) -> None:
    fault = apollo_server.inject("/configs/", times=2, status=503, body="busy")
    for _ in range(2):
        reply = await http.get(config_url)
        assert (reply.status, reply.body) == (503, b"busy")
    assert (await http.get(config_url)).status == 200
    assert fault.hits == 2
    assert fault.exhausted
    assert apollo_server.faults == []
    assert [r.status for r in apollo_server.requests] == [503, 503, 200]
    assert [r.fault is fault for r in apollo_server.requests] == [True, True, False]


async def test_matching_by_prefix_method_and_predicate(
    apollo_server: ApolloTestServer, http: Http, config_url: str
) -> None:
    apollo_server.inject("/notifications/", status=500)
    apollo_server.inject("/configs/", method="POST", status=502)
    apollo_server.inject(lambda r: r.query.get("ip") == "6.6.6.6", times=None, status=418)
    assert (await http.get(config_url)).status == 200
    for _ in range(3):
        assert (await http.get(config_url + "?ip=6.6.6.6")).status == 418
    assert len(apollo_server.faults) == 3
    apollo_server.clear_faults()
    assert (await http.get(config_url + "?ip=6.6.6.6")).status == 200


async def test_delay_then_normal_answer(
    apollo_server: ApolloTestServer, http: Http, config_url: str
) -> None:
    apollo_server.inject("/configs/", delay=0.3)
    started = time.monotonic()
    reply = await http.get(config_url)
    assert reply.status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await http.get(config_url)
    assert time.monotonic() - started < 0.3


async def test_drop_closes_without_a_response(
    apollo_server: ApolloTestServer, config_url: str
) -> None:
    apollo_server.inject("/configs/", drop=True)
    assert await raw_get(apollo_server, f"/configs/{APP}/default/application") == b""
    assert apollo_server.requests[-1].status is None
    assert (await raw_get(apollo_server, f"/configs/{APP}/default/application")).startswith(
        b"HTTP/1.1 200"
    )


async def test_drop_seen_by_aiohttp(apollo_server: ApolloTestServer, config_url: str) -> None:
    # aiohttp retries an idempotent request once on a closed connection: two drops fail it.
    apollo_server.inject("/configs/", drop=True, times=2)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(config_url) as resp:
                await resp.read()


async def test_reset_mid_body(apollo_server: ApolloTestServer, config_url: str) -> None:
    apollo_server.inject("/configs/", reset=True)
    raw = await raw_get(apollo_server, f"/configs/{APP}/default/application")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 4096" in head
    assert 0 < len(body) < 4096
    apollo_server.inject("/configs/", reset=True)
    async with aiohttp.ClientSession() as session, session.get(config_url) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_garbage_body(apollo_server: ApolloTestServer, http: Http, config_url: str) -> None:
    apollo_server.inject("/configs/", garbage=True)
    apollo_server.inject("/configs/", garbage="[1,")
    first = await http.get(config_url)
    assert first.status == 200
    with pytest.raises(ValueError):
        first.json()
    assert (await http.get(config_url)).body == b"[1,"


async def test_hang_until_client_gives_up_or_server_closes(http: Http) -> None:
    server = ApolloTestServer()
    await server.start()
    server.publish(APP, "application", {"a": "1"})
    url = f"{server.url}/configs/{APP}/default/application"
    server.inject("/configs/", hang=True, times=2)
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(asyncio.TimeoutError):
        async with http.session.get(url, timeout=timeout) as resp:
            await resp.read()
    hung = asyncio.create_task(raw_get(server, f"/configs/{APP}/default/application"))
    async with asyncio.timeout(5):
        await server.wait_for_request(lambda r: len(server.requests) == 2)
    started = time.monotonic()
    await server.close()
    assert await hung == b""  # dropped on close, never answered
    assert time.monotonic() - started < 3


async def test_delay_interrupted_by_close(http: Http) -> None:
    server = ApolloTestServer()
    await server.start()
    server.inject("/", delay=30)
    hung = asyncio.create_task(raw_get(server, "/services/config"))
    async with asyncio.timeout(5):
        await server.wait_for_request(lambda r: r.path == "/services/config")
    await server.close()
    assert await hung == b""


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="one thing"):
        Fault(status=500, drop=True)
    with pytest.raises(ValueError, match="needs"):
        Fault()
    with pytest.raises(ValueError, match="times"):
        Fault(status=500, times=0)
    with pytest.raises(ValueError, match="body goes with status"):
        Fault(drop=True, body="x")
    assert Fault(delay=1, hang=True).hang
    with pytest.raises(ValueError, match="cut_after must be a positive"):
        Fault(cut_after=0)
    for kind in ({"reset": True}, {"garbage": True}, {"hang": True}):
        with pytest.raises(ValueError, match="cut_after goes with status or drop"):
            Fault(cut_after=1, **kind)
    assert Fault(cut_after=1).status == 504  # nginx's answer at proxy_read_timeout
    assert (Fault(cut_after=1, status=502).status, Fault(cut_after=1, drop=True).status) == (
        502,
        None,
    )


async def test_faults_over_http(
    apollo_server: ApolloTestServer, http: Http, config_url: str
) -> None:
    control = f"{apollo_server.url}/__aioapollo__/faults"
    created = await http.request(
        "POST", control, json={"path": "/configs/", "times": 2, "status": 500, "body": "x"}
    )
    assert created.status == 200
    assert created.json()["kind"] == "status"
    listed = (await http.get(control)).json()
    assert listed == [
        {
            "path": "/configs/",
            "method": None,
            "times": 2,
            "hits": 0,
            "kind": "status",
            "status": 500,
            "delay": None,
            "cutAfter": None,
        }
    ]
    assert (await http.get(config_url)).status == 500
    assert (await http.get(control)).json()[0]["hits"] == 1
    # Control requests are neither faulted nor recorded.
    await http.request("POST", control, json={"path": "/", "times": None, "drop": True})
    assert (await http.get(control)).status == 200
    assert (await http.request("DELETE", control)).json() == {"cleared": True}
    assert (await http.get(config_url)).status == 200
    bad: object
    for bad in (
        {"status": 500, "drop": True},
        {"nope": 1},
        {"times": "x", "drop": True},
        {"cutAfter": "1"},
        {"cutAfter": 1, "hang": True},
        [],
    ):
        reply = await http.request("POST", control, json=bad)
        assert reply.status == 400, bad
        assert "error" in reply.json()
    assert [r.path for r in apollo_server.requests] == [f"/configs/{APP}/default/application"] * 2


def held_poll_url(server: ApolloTestServer) -> str:
    """A long poll that is up to date, so the server holds it (SampleApp/application)."""
    server.publish(APP, "application", {"a": "1"})
    (notification_id,) = server.store.notification_ids({f"{APP}+default+application"}).values()
    query = notifications_query(APP, [("application", notification_id)])
    return f"{server.url}/notifications/v2?{query}"


@pytest.mark.parametrize(("status", "expected"), [(None, 504), (502, 502)])
async def test_cut_after_ends_held_polls_like_a_proxy(
    apollo_server: ApolloTestServer, http: Http, status: int | None, expected: int
) -> None:
    apollo_server.hold_seconds = 30
    url = held_poll_url(apollo_server)
    fault = apollo_server.inject("/", times=None, cut_after=0.3, status=status)
    started = time.monotonic()
    reply = await http.get(url)
    elapsed = time.monotonic() - started
    assert reply.status == expected
    assert reply.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{expected} ".encode() in reply.body
    assert 0.3 <= elapsed < 3
    assert apollo_server.held_polls == 0  # the cut poll is no longer held
    assert apollo_server.requests[-1].status == expected
    # A quick answer goes through the same proxy untouched.
    configs = await http.get(f"{apollo_server.url}/configs/{APP}/default/application")
    assert configs.status == 200
    assert fault.hits == 2 and fault.to_json()["kind"] == "cut"


async def test_cut_after_passes_answers_ready_in_time(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    url = held_poll_url(apollo_server)
    apollo_server.inject("/notifications/v2", times=None, cut_after=5)
    reply = await http.get(url)  # the 0.5 s hold ends before the proxy's 5 s
    assert (reply.status, reply.body) == (304, b"")
    apollo_server.hold_seconds = 30
    poll = asyncio.create_task(http.get(url))
    async with asyncio.timeout(5):
        await apollo_server.wait_for_polls(1)
    apollo_server.publish(APP, "application", {"a": "2"})  # wakes the poll before the cut
    reply = await asyncio.wait_for(poll, 5)
    assert reply.status == 200 and reply.json()[0]["namespaceName"] == "application"


async def test_cut_after_with_a_body_and_a_delay_that_counts_against_it(
    apollo_server: ApolloTestServer, http: Http, config_url: str
) -> None:
    apollo_server.inject("/configs/", cut_after=0.2, delay=5, body="upstream timed out")
    started = time.monotonic()
    reply = await http.get(config_url)
    assert (reply.status, reply.body) == (504, b"upstream timed out")
    assert time.monotonic() - started < 3


async def test_cut_after_drop_closes_the_connection(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.hold_seconds = 30
    url = held_poll_url(apollo_server)
    # aiohttp resends the GET once on a closed connection; the resent poll is cut too.
    fault = apollo_server.inject("/notifications/v2", times=None, cut_after=0.2, drop=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await http.get(url)
    assert fault.hits == 2
    assert [r.status for r in apollo_server.requests if r.fault is fault] == [None, None]
    assert apollo_server.held_polls == 0


async def test_cut_after_over_http(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.hold_seconds = 30
    url = held_poll_url(apollo_server)
    control = f"{apollo_server.url}/__aioapollo__/faults"
    body = {"path": "/notifications/v2", "times": None, "cutAfter": 0.2, "status": 502}
    created = (await http.request("POST", control, json=body)).json()
    assert (created["kind"], created["cutAfter"], created["status"]) == ("cut", 0.2, 502)
    assert (await http.get(url)).status == 502
