"""Escaping, naming and request-building rules (pure functions)."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from aioapollo._apollo.protocol import config_target, notifications_target
from aioapollo._apollo.wire import (
    build_query,
    form_escape,
    namespace_format,
    path_escape,
    strip_properties,
)


def test_form_escape_encodes_plus_and_json() -> None:
    assert form_escape("a+b c") == "a%2Bb+c"
    assert form_escape('{"k":1}') == "%7B%22k%22%3A1%7D"
    assert form_escape("-_.*") == "-_.*"


def test_path_escape_keeps_plus_and_encodes_space() -> None:
    assert path_escape("a b+c") == "a%20b+c"


def test_build_query_skips_none() -> None:
    assert build_query([("a", "1"), ("b", None), ("c", "x y")]) == "a=1&c=x+y"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("application", "properties"),
        ("db.json", "json"),
        ("a.YAML", "yaml"),
        ("a.yml", "yml"),
        ("x.xml", "xml"),
        ("t.txt", "txt"),
        ("FX.apollo", "properties"),
        ("application.properties", "properties"),
    ],
)
def test_namespace_format(name: str, fmt: str) -> None:
    assert namespace_format(name) == fmt


def test_strip_properties_any_case_only_that_suffix() -> None:
    assert strip_properties("application.properties") == "application"
    assert strip_properties("App.PROPERTIES") == "App"
    assert strip_properties("foo.json") == "foo.json"


def test_config_target_encodes_merged_release_key_and_messages() -> None:
    target = config_target(
        "SampleApp",
        "default",
        "application",
        release_key="k1+k2",
        data_center=None,
        ip="10.1.2.3",
        label="gray",
        messages={"SampleApp+default+application": 101},
    )
    path, _, query = target.partition("?")
    assert path == "/configs/SampleApp/default/application"
    assert "+" not in query.replace("%2B", "")  # every literal + is escaped
    parsed = parse_qs(query)
    assert parsed["releaseKey"] == ["k1+k2"]
    assert json.loads(parsed["messages"][0]) == {"details": {"SampleApp+default+application": 101}}
    assert parsed["label"] == ["gray"]


def test_notifications_target_has_no_label_and_valid_json() -> None:
    target = notifications_target(
        "app", "default", [("application", -1), ("db.json", 7)], data_center="dc", ip=None
    )
    parts = urlsplit(target)
    assert parts.path == "/notifications/v2"
    query = parse_qs(parts.query)
    assert "label" not in query and "ip" not in query
    assert query["dataCenter"] == ["dc"]
    assert json.loads(query["notifications"][0]) == [
        {"namespaceName": "application", "notificationId": -1},
        {"namespaceName": "db.json", "notificationId": 7},
    ]
