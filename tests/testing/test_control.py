"""The ``/__aioapollo__/`` control endpoints (what ``curl`` users and other processes drive)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from aioapollo._apollo.auth import sign
from aioapollo.testing import ApolloTestServer

from .conftest import Http, notifications_query

APP = "SampleApp"


async def test_publish_and_read_back(apollo_server: ApolloTestServer, http: Http) -> None:
    control = f"{apollo_server.url}/__aioapollo__"
    assert (await http.get(f"{control}/health")).json() == {
        "status": "UP",
        "url": apollo_server.url,
        "heldPolls": 0,
    }
    reply = await http.request(
        "POST",
        f"{control}/publish",
        json={"appId": APP, "namespace": "application", "items": {"k": "v"}},
    )
    assert reply.status == 200
    key = reply.json()["releaseKey"]
    config = (await http.get(f"{apollo_server.url}/configs/{APP}/default/application")).json()
    assert (config["releaseKey"], config["configurations"]) == (key, {"k": "v"})

    await http.request(
        "POST",
        f"{control}/publish",
        json={"appId": APP, "namespace": "db.yaml", "content": "a: 1\n", "cluster": "c1"},
    )
    raw = await http.get(f"{apollo_server.url}/configfiles/raw/{APP}/c1/db.yaml")
    assert raw.body == b"a: 1\n"

    await http.request(
        "POST",
        f"{control}/publish",
        json={
            "appId": "Owner",
            "namespace": "shared",
            "items": {"p": "1"},
            "public": True,
        },
    )
    await http.request(
        "POST",
        f"{control}/publish",
        json={"appId": APP, "namespace": "application", "items": {"k": "g"}, "grayIps": ["*"]},
    )
    assert (await http.get(f"{apollo_server.url}/configfiles/json/{APP}/x/shared")).json() == {
        "p": "1"
    }
    assert (await http.get(f"{apollo_server.url}/configfiles/json/{APP}/x/application")).json() == {
        "k": "g"
    }
    assert (await http.request("DELETE", f"{control}/gray/{APP}/default/application")).status == 200
    assert (
        await http.request("DELETE", f"{control}/releases/{APP}/default/application")
    ).json() == {"deleted": True}
    assert (await http.get(f"{apollo_server.url}/configs/{APP}/default/application")).status == 404
    missing = await http.request("DELETE", f"{control}/releases/{APP}/default/application")
    assert missing.status == 404


async def test_namespaces_secrets_and_settings(apollo_server: ApolloTestServer, http: Http) -> None:
    control = f"{apollo_server.url}/__aioapollo__"
    created = await http.request(
        "POST", f"{control}/namespaces", json={"appId": APP, "namespace": "FX.Apollo"}
    )
    assert created.json() == {"namespace": "FX.Apollo"}
    assert apollo_server.store.canonical(APP, "fx.apollo") == "FX.Apollo"

    await http.request("PUT", f"{control}/secrets/{APP}", json={"secret": "s3"})
    path = f"/configs/{APP}/default/FX.Apollo"
    assert (await http.get(apollo_server.url + path)).status == 401
    stamp = str(apollo_server.clock())
    headers = {"Authorization": f"Apollo {APP}:{sign(stamp, path, 's3')}", "Timestamp": stamp}
    assert (await http.get(apollo_server.url + path, headers=headers)).status == 404
    await http.request("DELETE", f"{control}/secrets/{APP}")
    assert (await http.get(apollo_server.url + path)).status == 404

    settings = await http.request(
        "PUT",
        f"{control}/settings",
        json={"holdSeconds": 2, "incrementalSync": True, "configServices": ["http://h:1"]},
    )
    assert settings.json() == {
        "holdSeconds": 2.0,
        "incrementalSync": True,
        "timeToleranceSeconds": 60.0,
        "configServices": ["http://h:1"],
    }
    assert apollo_server.hold_seconds == 2.0
    assert apollo_server.incremental_sync is True
    assert (await http.get(f"{control}/settings")).json() == settings.json()
    bad = await http.request("PUT", f"{control}/settings", json={"holdSeconds": "x"})
    assert bad.status == 400


async def test_requests_log(apollo_server: ApolloTestServer, http: Http) -> None:
    control = f"{apollo_server.url}/__aioapollo__/requests"
    await http.get(f"{apollo_server.url}/configs/{APP}/default/application?ip=1.2.3.4&x=a+b")
    await http.get(f"{apollo_server.url}/services/config")
    log = (await http.get(control)).json()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", f"/configs/{APP}/default/application", 404),
        ("GET", "/services/config", 200),
    ]
    assert log[0]["rawPath"] == f"/configs/{APP}/default/application?ip=1.2.3.4&x=a+b"
    assert log[0]["query"] == {"ip": "1.2.3.4", "x": "a b"}
    assert (await http.get(control + "?path=/services")).json()[0]["path"] == "/services/config"
    await http.request("DELETE", control)
    assert (await http.get(control)).json() == []
    assert apollo_server.requests == []


async def test_control_errors(apollo_server: ApolloTestServer, http: Http) -> None:
    control = f"{apollo_server.url}/__aioapollo__"
    for method, path, body in (
        ("POST", "/publish", {"appId": APP, "namespace": "application"}),
        ("POST", "/publish", {"appId": APP, "namespace": "a", "items": {}, "content": "x"}),
        ("POST", "/publish", {"appId": APP, "namespace": "application", "content": "text"}),
        ("POST", "/publish", {"namespace": "application", "items": {"a": "1"}}),
        ("POST", "/publish", {"appId": APP, "namespace": "n", "items": {"a": 1}}),
    ):
        reply = await http.request(method, control + path, json=body)
        assert reply.status == 400, body
        assert reply.json()["error"]
    not_json = await http.request("POST", control + "/publish", data=b"{nope")
    assert not_json.status == 400
    assert (await http.get(control + "/nothing")).status == 404
    assert (await http.request("PATCH", control + "/faults")).status == 404


TOKEN_HEADER = "X-Aioapollo-Control-Token"


async def test_loopback_needs_no_token(apollo_server: ApolloTestServer, http: Http) -> None:
    assert apollo_server.control_token is None
    assert (await http.get(f"{apollo_server.url}/__aioapollo__/health")).status == 200


async def test_off_loopback_the_control_api_needs_the_token(
    http: Http, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    # Bound to every address; reached through 127.0.0.1, but the bind address decides.
    async with ApolloTestServer(host="0.0.0.0") as server:
        token = server.control_token
        assert token is not None and len(token) >= 20
        assert token.isalnum()  # safe as a flag value: never starts with "-"
        control = f"{server.url}/__aioapollo__"
        body = {"appId": APP, "namespace": "application", "items": {"k": "v"}}
        for headers in ({}, {TOKEN_HEADER: "wrong"}, {TOKEN_HEADER: token[:-1]}):
            reply = await http.request("POST", f"{control}/publish", json=body, headers=headers)
            assert reply.status == 401, headers
            assert TOKEN_HEADER in reply.json()["error"]
            assert token not in reply.body.decode()
        assert server.store.release(APP, "application") is None
        assert (await http.get(f"{control}/health")).status == 401
        ok = await http.request(
            "POST", f"{control}/publish", json=body, headers={TOKEN_HEADER: token}
        )
        assert ok.status == 200
        # Apollo's own endpoints stay as Apollo has them (access keys are their protection).
        assert (await http.get(f"{server.url}/configs/{APP}/default/application")).status == 200
        assert token not in repr(server)
    assert token not in caplog.text


async def test_a_given_token_is_required_on_loopback_too(http: Http) -> None:
    with pytest.raises(ValueError, match="empty"):
        ApolloTestServer(control_token="")
    async with ApolloTestServer(control_token="t0k") as srv:
        assert srv.control_token == "t0k"
        health = f"{srv.url}/__aioapollo__/health"
        assert (await http.get(health)).status == 401
        assert (await http.get(health, headers={TOKEN_HEADER: "t0k"})).status == 200
    async with ApolloTestServer(host="localhost") as local:
        assert local.control_token is None


async def test_health_counts_the_clients_still_polling(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.hold_seconds = 30
    apollo_server.publish(APP, "application", {"k": "v"})
    last = apollo_server.store.notification_ids([f"{APP}+default+application"])
    poll_url = f"{apollo_server.url}/notifications/v2?" + notifications_query(
        APP, [("application", last[f"{APP}+default+application"])]
    )
    health = f"{apollo_server.url}/__aioapollo__/health"
    poll = asyncio.create_task(http.get(poll_url))
    async with asyncio.timeout(5):
        await apollo_server.wait_for_polls(1)
    assert (await http.get(health)).json()["heldPolls"] == 1
    poll.cancel()  # the client gives up: its connection closes, the server still holds it
    with contextlib.suppress(asyncio.CancelledError):
        await poll
    async with asyncio.timeout(5):
        while (await http.get(health)).json()["heldPolls"] != 0:  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.02)
    assert apollo_server.held_polls == 1  # held until its hold ends; only the live count fell


async def test_the_control_root_lists_every_endpoint(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    # `aioapollo serve` logs this URL as the control API's; it answered 404.
    reply = await http.get(f"{apollo_server.url}/__aioapollo__/")
    assert reply.status == 200
    listed = reply.json()["endpoints"]
    assert "GET /__aioapollo__/health" in listed and len(listed) == len(set(listed))
    for endpoint in listed:  # each one is routed: nothing listed is missing
        method, path = endpoint.split()
        path = path.replace("{appId}", APP).replace("{cluster}", "default")
        path = path.replace("{namespace}", "application")
        answer = await http.request(method, apollo_server.url + path, json={})
        assert "no control endpoint" not in answer.body.decode(), endpoint
    assert (await http.get(f"{apollo_server.url}/__aioapollo__")).status == 200
