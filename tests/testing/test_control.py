"""The ``/__aioapollo__/`` control endpoints (what ``curl`` users and other processes drive)."""

from __future__ import annotations

from aioapollo._auth import sign
from aioapollo.testing import ApolloTestServer

from .conftest import Http

APP = "SampleApp"


async def test_publish_and_read_back(apollo_server: ApolloTestServer, http: Http) -> None:
    control = f"{apollo_server.url}/__aioapollo__"
    assert (await http.get(f"{control}/health")).json() == {
        "status": "UP",
        "url": apollo_server.url,
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
