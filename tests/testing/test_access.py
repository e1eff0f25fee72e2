"""Access keys and appId validation: the ``ClientAuthenticationFilter`` (protocol doc 6 and 9)."""

from __future__ import annotations

import pytest

from aioapollo._apollo.auth import sign
from aioapollo.testing import ApolloTestServer

from ..apollo.test_auth import VECTORS
from .conftest import Http


def app_of(path: str) -> str:
    if path.startswith("/configs/"):
        return path.split("/")[2]
    return "SampleApp"


@pytest.mark.parametrize(("timestamp", "path", "secret", "signature"), VECTORS)
async def test_protocol_doc_vectors_are_accepted(
    apollo_server: ApolloTestServer,
    http: Http,
    timestamp: str,
    path: str,
    secret: str,
    signature: str,
) -> None:
    app_id = app_of(path)
    apollo_server.publish(app_id, "application", {"a": "1"})
    apollo_server.set_secret(app_id, secret)
    apollo_server.clock = lambda: int(timestamp) + 59_999  # just inside the 60 s tolerance
    headers = {"Authorization": f"Apollo {app_id}:{signature}", "Timestamp": timestamp}
    reply = await http.get(apollo_server.url + path, headers=headers)
    assert reply.status in (200, 304), reply.body
    assert apollo_server.requests[-1].raw_path == path
    # One character off in the signed target: rejected.
    tampered = path.replace("application", "applicatioN", 1)
    assert (await http.get(apollo_server.url + tampered, headers=headers)).status == 401
    # The same signature at the tolerance edge: |skew| must be strictly below 60 s.
    apollo_server.clock = lambda: int(timestamp) + 60_000
    reply = await http.get(apollo_server.url + path, headers=headers)
    assert reply.status == 401
    assert reply.json()["message"] == "RequestTimeTooSkewed"
    apollo_server.clock = lambda: int(timestamp) - 59_999
    assert (await http.get(apollo_server.url + path, headers=headers)).status in (200, 304)


async def test_unsigned_and_wrong_signatures(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish("app", "application", {"a": "1"})
    apollo_server.set_secret("app", "secret")
    apollo_server.clock = lambda: 1_700_000_000_000
    path = "/configs/app/default/application"
    url = apollo_server.url + path
    no_headers = await http.get(url)
    assert no_headers.status == 401
    assert no_headers.json() == {
        "timestamp": no_headers.json()["timestamp"],
        "status": 401,
        "error": "Unauthorized",
        "message": "RequestTimeTooSkewed",  # a missing Timestamp parses as 0
        "path": path,
    }
    good = sign("1700000000000", path, "secret")
    for authorization in (f"Apollo app:{good[:-2]}", "Apollo app", f"Apollo:{good}x", ""):
        headers = {"Authorization": authorization, "Timestamp": "1700000000000"}
        reply = await http.get(url, headers=headers)
        assert reply.status == 401, authorization
        assert reply.json()["message"] == "Unauthorized"
    # Only the part after the first ':' is checked: the appId in front is not.
    headers = {"Authorization": f"Whatever other-app:{good}", "Timestamp": "1700000000000"}
    assert (await http.get(url, headers=headers)).status == 200
    bad_stamp = {"Authorization": f"Apollo app:{good}", "Timestamp": "17e11"}
    assert (await http.get(url, headers=bad_stamp)).json()["message"] == "RequestTimeTooSkewed"


async def test_any_of_several_secrets_and_case_insensitive_app(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish("App", "application", {"a": "1"})
    apollo_server.set_secret("APP", ["old", "new"])
    path = "/configs/App/default/application"
    for secret in ("old", "new"):
        stamp = str(apollo_server.clock())
        headers = {"Authorization": f"Apollo App:{sign(stamp, path, secret)}", "Timestamp": stamp}
        assert (await http.get(apollo_server.url + path, headers=headers)).status == 200
    apollo_server.set_secret("App", None)
    assert (await http.get(apollo_server.url + path)).status == 200


async def test_signature_covers_the_query_exactly_as_sent(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish("app", "application", {"a": "1"})
    apollo_server.set_secret("app", "s")
    stamp = str(apollo_server.clock())
    signed = "/configs/app/default/application?ip=1.2.3.4&label=a%20b"
    headers = {"Authorization": f"Apollo app:{sign(stamp, signed, 's')}", "Timestamp": stamp}
    assert (await http.get(apollo_server.url + signed, headers=headers)).status == 200
    # Same decoded parameters, different bytes on the wire: rejected.
    for variant in (
        "/configs/app/default/application?ip=1.2.3.4&label=a+b",
        "/configs/app/default/application?label=a%20b&ip=1.2.3.4",
    ):
        assert (await http.get(apollo_server.url + variant, headers=headers)).status == 401
    # An empty query adds no "?" to the signed string.
    bare = "/configs/app/default/application"
    headers = {"Authorization": f"Apollo app:{sign(stamp, bare, 's')}", "Timestamp": stamp}
    assert (await http.get(apollo_server.url + bare + "?", headers=headers)).status == 200


async def test_all_covered_paths_need_a_signature(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish("app", "application", {"a": "1"})
    apollo_server.set_secret("app", "s")
    for path in (
        "/configs/app/default/application",
        "/configfiles/app/default/application",
        "/configfiles/json/app/default/application",
        "/configfiles/raw/app/default/application",
        "/notifications/v2?appId=app&cluster=default&notifications=%5B%5D",
    ):
        assert (await http.get(apollo_server.url + path)).status == 401, path
    # The meta service is not covered.
    assert (await http.get(apollo_server.url + "/services/config?appId=app")).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/configs/bad%20app/default/application",
        "/configs/.hidden/default/application",
        "/configs/%C3%BC/default/application",
        "/configs/app",
        "/configfiles/raw/bad$app/default/x.json",
        "/notifications/v2?cluster=default&notifications=%5B%5D",
        "/notifications/v2?appId=%20&cluster=default&notifications=%5B%5D",
    ],
)
async def test_invalid_app_id_is_400_even_without_secret(
    apollo_server: ApolloTestServer, http: Http, path: str
) -> None:
    reply = await http.get(apollo_server.url + path)
    assert reply.status == 400
    assert reply.json()["message"] == "InvalidAppId"
    assert reply.json()["error"] == "Bad Request"


async def test_valid_odd_app_ids_pass(apollo_server: ApolloTestServer, http: Http) -> None:
    for app_id in ("a.b-c_d", "-x", "_", "9"):
        apollo_server.publish(app_id, "application", {"a": "1"})
        reply = await http.get(f"{apollo_server.url}/configs/{app_id}/default/application")
        assert reply.status == 200, app_id
