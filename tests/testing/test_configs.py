"""``GET /configs/{appId}/{cluster}/{namespace}`` against the protocol doc, sections 1 and 3."""

from __future__ import annotations

import re

import pytest

from aioapollo.testing import ApolloTestServer

from .conftest import Http

APP = "SampleApp"
KEY_FORMAT = re.compile(r"\d{14}-[0-9a-f]{16}")


async def test_full_sync_shape(apollo_server: ApolloTestServer, http: Http) -> None:
    key = apollo_server.publish(APP, "application", {"timeout": "100", "db.url": "jdbc:x"})
    reply = await http.get(f"{apollo_server.url}/configs/{APP}/default/application")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert KEY_FORMAT.fullmatch(key)
    # Exactly these fields: Gson leaves null fields (configSyncType, changes) out.
    assert reply.json() == {
        "appId": APP,
        "cluster": "default",
        "namespaceName": "application",
        "configurations": {"timeout": "100", "db.url": "jdbc:x"},
        "releaseKey": key,
    }


async def test_release_keys_are_unique(apollo_server: ApolloTestServer) -> None:
    keys = {apollo_server.publish(APP, "application", {"n": str(i)}) for i in range(50)}
    assert len(keys) == 50


async def test_304_with_empty_body_when_key_matches(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    key = apollo_server.publish(APP, "application", {"a": "1"})
    url = f"{apollo_server.url}/configs/{APP}/default/application"
    reply = await http.get(f"{url}?releaseKey={key}&ip=10.0.0.1")
    assert reply.status == 304
    assert reply.body == b""
    assert reply.headers.get("Content-Length", "0") == "0"
    assert (await http.get(f"{url}?releaseKey=20200101000000-0000000000000000")).status == 200
    # Spring's defaultValue "-1" also replaces an empty value: a full reply.
    assert (await http.get(f"{url}?releaseKey=")).status == 200


async def test_404_for_unknown_and_unreleased(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.create_namespace(APP, "later")
    for namespace in ("nope", "later"):
        reply = await http.get(f"{apollo_server.url}/configs/{APP}/default/{namespace}")
        assert reply.status == 404
        body = reply.json()
        assert body["status"] == 404
        assert body["message"] == (
            f"Could not load configurations with appId: {APP}, clusterName: default, "
            f"namespace: {namespace}"
        )


async def test_delete_release_gives_404(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    apollo_server.delete_release(APP, "application")
    assert (await http.get(f"{apollo_server.url}/configs/{APP}/default/application")).status == 404
    with pytest.raises(KeyError):
        apollo_server.delete_release(APP, "application")


async def test_properties_suffix_and_case_reply_with_sent_name(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "FX.apollo", {"k": "v"})
    for sent in ("FX.apollo", "fx.APOLLO", "FX.apollo.properties", "fx.apollo.PROPERTIES"):
        reply = await http.get(f"{apollo_server.url}/configs/{APP}/default/{sent}")
        assert reply.status == 200, sent
        assert reply.json()["namespaceName"] == sent
        assert reply.json()["configurations"] == {"k": "v"}
    # Only .properties is stripped.
    assert (
        await http.get(f"{apollo_server.url}/configs/{APP}/default/FX.apollo.json")
    ).status == 404


async def test_non_properties_namespace_is_one_content_key(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    text = '{"url": "jdbc:mysql://db", "pool": 5}'
    apollo_server.publish(APP, "datasource.json", text)
    reply = await http.get(f"{apollo_server.url}/configs/{APP}/default/datasource.json")
    assert reply.json()["configurations"] == {"content": text}
    with pytest.raises(ValueError, match="non-properties"):
        apollo_server.publish(APP, "application", "raw text")


async def test_public_namespace_merged_under_own(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    public_key = apollo_server.publish(
        "PublicOwner", "TEST1.shared", {"a": "public", "b": "public"}, public=True
    )
    url = f"{apollo_server.url}/configs/{APP}/default/TEST1.shared"
    only_public = (await http.get(url)).json()
    assert only_public["releaseKey"] == public_key
    assert only_public["configurations"] == {"a": "public", "b": "public"}
    assert only_public["cluster"] == "default"

    own_key = apollo_server.publish(APP, "test1.SHARED", {"b": "own", "c": "own"})
    merged = (await http.get(url)).json()
    assert merged["releaseKey"] == f"{own_key}+{public_key}"
    assert merged["configurations"] == {"a": "public", "b": "own", "c": "own"}
    # The owner itself only gets its own release.
    owner = (await http.get(f"{apollo_server.url}/configs/PublicOwner/default/TEST1.shared")).json()
    assert owner["releaseKey"] == public_key


async def test_plus_in_query_is_a_space_but_2b_is_a_plus(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    public_key = apollo_server.publish("PublicOwner", "ns", {"a": "1"}, public=True)
    own_key = apollo_server.publish(APP, "ns", {"b": "2"})
    url = f"{apollo_server.url}/configs/{APP}/default/ns"
    raw_plus = await http.get(f"{url}?releaseKey={own_key}+{public_key}")
    assert raw_plus.status == 200  # the server read "own public", which never matches
    assert apollo_server.requests[-1].query["releaseKey"] == f"{own_key} {public_key}"
    escaped = await http.get(f"{url}?releaseKey={own_key}%2B{public_key}")
    assert escaped.status == 304
    assert apollo_server.requests[-1].raw_path.endswith(f"{own_key}%2B{public_key}")


async def test_no_app_id_placeholder_gets_only_public(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    key = apollo_server.publish("Owner", "common", {"a": "1"}, public=True)
    apollo_server.publish("Owner", "application", {"own": "x"})
    base = f"{apollo_server.url}/configs/ApolloNoAppIdPlaceHolder/default"
    assert (await http.get(f"{base}/common")).json()["releaseKey"] == key
    assert (await http.get(f"{base}/application")).status == 404


async def test_cluster_then_data_center_then_default(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    default_key = apollo_server.publish(APP, "application", {"where": "default"})
    base = f"{apollo_server.url}/configs/{APP}"
    reply = (await http.get(f"{base}/SHAJQ/application?dataCenter=SHAOY")).json()
    assert (reply["cluster"], reply["releaseKey"]) == ("default", default_key)

    dc_key = apollo_server.publish(APP, "application", {"where": "dc"}, cluster="SHAOY")
    reply = (await http.get(f"{base}/SHAJQ/application?dataCenter=SHAOY")).json()
    assert (reply["cluster"], reply["releaseKey"]) == ("SHAOY", dc_key)
    assert reply["configurations"] == {"where": "dc"}

    cluster_key = apollo_server.publish(APP, "application", {"where": "cluster"}, cluster="SHAJQ")
    reply = (await http.get(f"{base}/SHAJQ/application?dataCenter=SHAOY")).json()
    assert (reply["cluster"], reply["releaseKey"]) == ("SHAJQ", cluster_key)
    # An empty dataCenter counts as none; an unknown cluster falls back to default.
    reply = (await http.get(f"{base}/other/application?dataCenter=")).json()
    assert (reply["cluster"], reply["releaseKey"]) == ("default", default_key)
    # The reply's cluster is the asked one when only a public release was found.
    apollo_server.publish("Owner", "pub", {"a": "1"}, public=True)
    assert (await http.get(f"{base}/SHAJQ/pub")).json()["cluster"] == "SHAJQ"


async def test_gray_release_by_ip_and_label(apollo_server: ApolloTestServer, http: Http) -> None:
    main_key = apollo_server.publish(APP, "application", {"v": "main"})
    gray_key = apollo_server.publish(
        APP, "application", {"v": "gray"}, gray_ips=["10.0.0.1"], gray_labels=["canary"]
    )
    url = f"{apollo_server.url}/configs/{APP}/default/application"
    by_ip = (await http.get(f"{url}?ip=10.0.0.1")).json()
    assert by_ip["releaseKey"] == gray_key
    assert by_ip["configurations"] == {"v": "gray"}
    # The gray release lives in the branch's own child cluster, which the reply names.
    assert KEY_FORMAT.fullmatch(by_ip["cluster"])
    assert (await http.get(f"{url}?ip=10.0.0.2&label=canary")).json()["releaseKey"] == gray_key
    assert (await http.get(f"{url}?ip=10.0.0.2&label=other")).json()["releaseKey"] == main_key
    # Without ip the server uses X-Forwarded-For (first entry), else the socket address.
    forwarded = await http.get(url, headers={"X-Forwarded-For": "10.0.0.1, 10.9.9.9"})
    assert forwarded.json()["releaseKey"] == gray_key
    assert (await http.get(url)).json()["releaseKey"] == main_key
    # Another app does not match a rule made for this app.
    apollo_server.publish("Owner", "pub", {"v": "main"}, public=True)
    apollo_server.publish("Owner", "pub", {"v": "gray"}, gray_ips=["*"])
    pub = f"{apollo_server.url}/configs/{APP}/default/pub"
    assert (await http.get(pub)).json()["configurations"] == {"v": "main"}
    apollo_server.publish("Owner", "pub", {"v": "gray"}, gray_ips=["*"], gray_client_app_id=APP)
    assert (await http.get(pub)).json()["configurations"] == {"v": "gray"}


async def test_gray_wildcard_label_and_clear(apollo_server: ApolloTestServer, http: Http) -> None:
    main_key = apollo_server.publish(APP, "application", {"v": "main"})
    gray_key = apollo_server.publish(APP, "application", {"v": "gray"}, gray_labels=["*"])
    url = f"{apollo_server.url}/configs/{APP}/default/application"
    # A "*" label matches every client, even one that sent no label (like Apollo's DTO).
    assert (await http.get(url)).json()["releaseKey"] == gray_key
    # A normal publish leaves the gray release as it is.
    main_key = apollo_server.publish(APP, "application", {"v": "main2"})
    assert (await http.get(url)).json()["releaseKey"] == gray_key
    apollo_server.clear_gray(APP, "application")
    assert (await http.get(url)).json()["releaseKey"] == main_key


async def test_incremental_sync(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.incremental_sync = True
    old = apollo_server.publish(APP, "application", {"keep": "1", "change": "a", "drop": "x"})
    new = apollo_server.publish(APP, "application", {"keep": "1", "change": "b", "add": "y"})
    url = f"{apollo_server.url}/configs/{APP}/default/application"
    reply = (await http.get(f"{url}?releaseKey={old}")).json()
    assert "configurations" not in reply
    assert reply["configSyncType"] == "IncrementalSync"
    assert reply["releaseKey"] == new
    changes = {c["key"]: c for c in reply["configurationChanges"]}
    assert changes == {
        "add": {"key": "add", "newValue": "y", "configurationChangeType": "ADDED"},
        "change": {"key": "change", "newValue": "b", "configurationChangeType": "MODIFIED"},
        "drop": {"key": "drop", "configurationChangeType": "DELETED"},
    }
    # Unknown key (or none): a full sync.
    for query in ("?releaseKey=20200101000000-0000000000000000", ""):
        full = (await http.get(url + query)).json()
        assert "configSyncType" not in full
        assert full["configurations"] == {"keep": "1", "change": "b", "add": "y"}


async def test_incremental_sync_with_merged_key(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.incremental_sync = True
    public_key = apollo_server.publish("Owner", "ns", {"a": "1", "b": "1"}, public=True)
    own_key = apollo_server.publish(APP, "ns", {"b": "own"})
    apollo_server.publish("Owner", "ns", {"a": "2", "b": "1"}, public=True)
    url = f"{apollo_server.url}/configs/{APP}/default/ns?releaseKey={own_key}%2B{public_key}"
    reply = (await http.get(url)).json()
    assert reply["configSyncType"] == "IncrementalSync"
    assert reply["configurationChanges"] == [
        {"key": "a", "newValue": "2", "configurationChangeType": "MODIFIED"}
    ]


async def test_messages_param_is_accepted(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    messages = "%7B%22details%22%3A%7B%22SampleApp%2Bdefault%2Bapplication%22%3A101%7D%7D"
    url = f"{apollo_server.url}/configs/{APP}/default/application?messages={messages}"
    assert (await http.get(url)).status == 200
    recorded = apollo_server.requests[-1].query["messages"]
    assert recorded == '{"details":{"SampleApp+default+application":101}}'


async def test_other_methods_and_paths(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    post = await http.request("POST", f"{apollo_server.url}/configs/{APP}/default/application")
    assert post.status == 400  # GlobalDefaultExceptionHandler maps "method not supported" to 400
    assert post.json()["exception"].endswith("HttpRequestMethodNotSupportedException")
    for path in ("/configs/SampleApp/default", "/nothing/here", "/configs/SampleApp/default/a/b"):
        assert (await http.get(apollo_server.url + path)).status == 404, path


async def test_every_json_reply_says_utf8_like_the_config_service(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "application", {"k": "v"})
    apollo_server.set_secret("Locked", "s")
    base = apollo_server.url
    urls = {
        f"{base}/configs/{APP}/default/application": 200,
        f"{base}/configs/{APP}/default/never": 404,
        f"{base}/configs/bad%20app/default/application": 400,  # InvalidAppId
        f"{base}/configs/Locked/default/application": 401,
        f"{base}/notifications/v2?appId={APP}&cluster=default&notifications=x": 400,
        f"{base}/services/config": 200,
        f"{base}/services/admin": 200,
        f"{base}/nothing/here": 404,
        f"{base}/__aioapollo__/health": 200,
        f"{base}/__aioapollo__/nothing": 404,
    }
    for url, status in urls.items():
        reply = await http.get(url)
        assert reply.status == status, url
        assert reply.headers["Content-Type"] == "application/json;charset=UTF-8", url
        reply.json()
