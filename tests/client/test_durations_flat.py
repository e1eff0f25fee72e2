"""``get_duration`` and YAML/JSON namespaces read as flat dotted keys (issue 18 §5)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from aioapollo import ConfigValueError, NamespaceSnapshot, Source, SyncApolloClient
from aioapollo._apollo.parsing import parse_content
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory


def snap(items: dict[str, str], fmt: str = "properties", **kw: Any) -> NamespaceSnapshot:
    data, error = parse_content(fmt, items, None)
    return NamespaceSnapshot(
        f"ns.{fmt}" if fmt != "properties" else "application",
        fmt,
        items,
        release_key="r1",
        source=Source.REMOTE,
        fetched_at=0.0,
        data=data,
        parse_error=error,
        **kw,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("2d", timedelta(days=2)),
        ("1.5s", timedelta(seconds=1.5)),
        ("1h 30m 15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("1H30M", timedelta(hours=1, minutes=30)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("1m30s500ms", timedelta(minutes=1, seconds=30, milliseconds=500)),
        (" 45s ", timedelta(seconds=45)),
        ("pt1h30m", timedelta(hours=1, minutes=30)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2W", timedelta(weeks=2)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("-PT5S", timedelta(seconds=-5)),
        ("P1D", timedelta(days=1)),
    ],
)
def test_get_duration_reads(text: str, expected: timedelta) -> None:
    assert snap({"d": text}).get_duration("d") == expected


@pytest.mark.parametrize(
    "text",
    ["30", "", "  ", "1x", "h", "1h30", "30m1h", "1s1s", "P", "PT", "P1Y", "P1M", "1 hour", "-5s"],
)
def test_get_duration_refuses_everything_else(text: str) -> None:
    with pytest.raises(ConfigValueError) as info:
        snap({"d": text}).get_duration("d")
    message = str(info.value)
    assert "application/d" in message and "'1h30m'" in message and "PT90S" in message
    # The value itself is never shown: the message is the key, then the accepted forms.
    assert message.startswith("application/d: value is not a valid duration (e.g. ")


def test_get_duration_default_when_missing() -> None:
    assert snap({}).get_duration("d") is None
    assert snap({}).get_duration("d", timedelta(seconds=3)) == timedelta(seconds=3)


async def test_clients_get_duration(
    server: ApolloTestServer, make_client: ClientFactory, make_sync: Any
) -> None:
    server.publish(APP, "application", {"ttl": "1h30m", "bad": "soon"})
    client = make_client()
    await client.start()
    assert await client.get_duration("ttl") == timedelta(hours=1, minutes=30)
    assert await client.get_duration("missing", timedelta(seconds=1)) == timedelta(seconds=1)
    with pytest.raises(ConfigValueError, match="application/bad"):
        await client.get_duration("bad")
    cfg: SyncApolloClient = make_sync(cache_dir=None)
    await asyncio.to_thread(cfg.start)
    assert cfg.get_duration("ttl") == timedelta(hours=1, minutes=30)


YAML = """\
server:
  port: 8080
  ratio: 1.5
  debug: true
  hosts: [a, b]
  timeout: 1h30m
  nothing: null
  empty: {}
users:
  - name: ann
    admin: false
"""


def test_yaml_as_properties() -> None:
    s = snap({"content": YAML}, "yaml")
    flat = s.as_properties()
    assert dict(flat.items) == {
        "server.port": "8080",
        "server.ratio": "1.5",
        "server.debug": "true",
        "server.hosts[0]": "a",
        "server.hosts[1]": "b",
        "server.timeout": "1h30m",
        "server.nothing": "",
        "users[0].name": "ann",
        "users[0].admin": "false",
    }
    assert flat.get_int("server.port") == 8080
    assert flat.get_bool("server.debug") is True
    assert flat.get_duration("server.timeout") == timedelta(hours=1, minutes=30)
    assert (flat.format, flat.release_key, flat.source) == ("properties", "r1", Source.REMOTE)
    assert s.as_properties() is flat  # made once per release
    assert s.get("server.port") is None  # opt-in: the snapshot itself is unchanged


def test_json_as_properties_and_other_formats() -> None:
    assert snap({"content": '{"a": {"b": [1, {"c": null}]}}'}, "json").as_properties().items == {
        "a.b[0]": "1",
        "a.b[1].c": "",
    }
    props = snap({"x": "1"})
    assert props.as_properties() is props
    with pytest.raises(ValueError, match="only yaml, yml and json"):
        snap({"content": "<a/>"}, "xml").as_properties()
    assert dict(snap({"content": "- just\n- a list\n"}, "yml").as_properties().items) == {}


def test_yaml_as_properties_keeps_last_good_text() -> None:
    good = snap({"content": YAML}, "yaml")
    data, error = parse_content("yaml", {"content": "server: [unclosed"}, good.data)
    bad = NamespaceSnapshot(
        "ns.yaml",
        "yaml",
        {"content": "server: [unclosed"},
        release_key="r2",
        source=Source.REMOTE,
        fetched_at=0.0,
        data=data,
        parse_error=error,
    )
    flat = bad.as_properties()
    assert flat.get("server.port") == "8080"
    assert flat.parse_error is not None and "line" in flat.parse_error


async def test_client_yaml_namespace_as_properties(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    server.publish(APP, "app.yaml", YAML)
    client = make_client(namespaces=["application", "app.yaml"])
    await client.start()
    flat = (await client.namespace("app.yaml")).as_properties()
    assert flat.get_int("server.port") == 8080
    assert flat.name == "app.yaml"
