"""``/configfiles`` (protocol doc section 4) and the meta service ``/services/config`` (2)."""

from __future__ import annotations

import pytest

from aioapollo.testing import ApolloTestServer
from aioapollo.testing._resolve import properties_text

from .conftest import Http

APP = "SampleApp"


async def test_properties_form(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"timeout": "100", "url": "jdbc:mysql://h/db?a=b"})
    reply = await http.get(f"{apollo_server.url}/configfiles/{APP}/default/application.properties")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain;charset=UTF-8"
    assert reply.body == b"timeout=100\nurl=jdbc\\:mysql\\://h/db?a\\=b\n"


def test_java_properties_escaping() -> None:
    items = {
        "a key": " lead  inner ",
        "k=:#!": "v=:#!",
        "tab\tnl\n": "cr\rff\f\\",
        "ünï": "中文 ✓",
        "": "",
    }
    assert properties_text(items) == (
        "a\\ key=\\ lead  inner \n"
        "k\\=\\:\\#\\!=v\\=\\:\\#\\!\n"
        "tab\\tnl\\n=cr\\rff\\f\\\\\n"
        "ünï=中文 ✓\n"
        "=\n"
    )


async def test_json_form_and_public_merge(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish("Owner", "shared", {"a": "pub", "b": "pub"}, public=True)
    apollo_server.publish(APP, "shared", {"b": "own"})
    reply = await http.get(f"{apollo_server.url}/configfiles/json/{APP}/default/shared")
    assert reply.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert reply.json() == {"a": "pub", "b": "own"}
    text = await http.get(f"{apollo_server.url}/configfiles/{APP}/default/shared")
    assert sorted(text.body.decode().splitlines()) == ["a=pub", "b=own"]


@pytest.mark.parametrize(
    ("namespace", "content_type"),
    [
        ("db.json", "application/json;charset=UTF-8"),
        ("app.yaml", "application/yaml;charset=UTF-8"),
        ("app.YML", "application/yaml;charset=UTF-8"),
        ("beans.xml", "application/xml;charset=UTF-8"),
        ("notes.txt", "text/plain;charset=UTF-8"),
    ],
)
async def test_raw_form(
    apollo_server: ApolloTestServer, http: Http, namespace: str, content_type: str
) -> None:
    text = "line one\nline: two ü\n"
    apollo_server.publish(APP, namespace, text)
    reply = await http.get(f"{apollo_server.url}/configfiles/raw/{APP}/default/{namespace}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.body.decode() == text
    as_json = await http.get(f"{apollo_server.url}/configfiles/json/{APP}/default/{namespace}")
    assert as_json.json() == {"content": text}


async def test_raw_of_properties_is_properties_text(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "application", {"a": "1"})
    reply = await http.get(f"{apollo_server.url}/configfiles/raw/{APP}/default/application")
    assert reply.headers["Content-Type"] == "text/plain;charset=UTF-8"
    assert reply.body == b"a=1\n"


async def test_not_found_is_404_with_empty_body(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.publish(APP, "keys.json", {"not": "content"})
    for path in (
        f"/configfiles/{APP}/default/missing",
        f"/configfiles/json/{APP}/default/missing",
        f"/configfiles/raw/{APP}/default/missing.json",
        f"/configfiles/raw/{APP}/default/keys.json",  # no "content" key to send
    ):
        reply = await http.get(apollo_server.url + path)
        assert (reply.status, reply.body) == (404, b""), path


async def test_configfiles_gray_and_fallback(apollo_server: ApolloTestServer, http: Http) -> None:
    apollo_server.publish(APP, "application", {"v": "main"})
    apollo_server.publish(APP, "application", {"v": "dc"}, cluster="DC")
    apollo_server.publish(APP, "application", {"v": "gray"}, gray_labels=["canary"])
    base = f"{apollo_server.url}/configfiles/json/{APP}"
    assert (await http.get(f"{base}/x/application")).json() == {"v": "main"}
    assert (await http.get(f"{base}/x/application?dataCenter=DC")).json() == {"v": "dc"}
    assert (await http.get(f"{base}/default/application?label=canary")).json() == {"v": "gray"}


async def test_meta_service_lists_this_server(apollo_server: ApolloTestServer, http: Http) -> None:
    reply = await http.get(f"{apollo_server.url}/services/config?appId={APP}&ip=10.0.0.1")
    assert reply.status == 200
    assert reply.json() == [
        {
            "appName": "APOLLO-CONFIGSERVICE",
            "instanceId": f"127.0.0.1:apollo-configservice:{apollo_server.port}",
            "homepageUrl": f"{apollo_server.url}/",
        }
    ]
    # Any method works (@RequestMapping); the admin and meta lists are empty here.
    assert (await http.request("POST", f"{apollo_server.url}/services/config")).status == 200
    assert (await http.get(f"{apollo_server.url}/services/admin")).json() == []
    assert (await http.get(f"{apollo_server.url}/services/meta")).json() == []


async def test_meta_service_lists_configured_instances(
    apollo_server: ApolloTestServer, http: Http
) -> None:
    apollo_server.config_services = ["http://10.0.0.5:8080", "http://10.0.0.6:8081/"]
    reply = await http.get(f"{apollo_server.url}/services/config")
    assert [(s["instanceId"], s["homepageUrl"]) for s in reply.json()] == [
        ("10.0.0.5:apollo-configservice:8080", "http://10.0.0.5:8080/"),
        ("10.0.0.6:apollo-configservice:8081", "http://10.0.0.6:8081/"),
    ]
    apollo_server.config_services = []
    assert (await http.get(f"{apollo_server.url}/services/config")).json() == []
    apollo_server.config_services = None
    assert len((await http.get(f"{apollo_server.url}/services/config")).json()) == 1
