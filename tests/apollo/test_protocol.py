"""Reply parsers reject anything a real config service would not send."""

import pytest

from aioapollo import ApolloResponseError
from aioapollo._apollo.protocol import parse_config, parse_notifications, parse_services


def test_full_sync() -> None:
    reply = parse_config(b'{"releaseKey":"r1","configurations":{"a":"1"},"cluster":"default"}')
    assert reply.release_key == "r1"
    assert reply.configurations == {"a": "1"}
    assert reply.changes is None


def test_incremental_sync() -> None:
    body = (
        b'{"releaseKey":"r2","configSyncType":"IncrementalSync","configurationChanges":['
        b'{"key":"a","newValue":"1","configurationChangeType":"ADDED"},'
        b'{"key":"c","configurationChangeType":"DELETED"}]}'
    )
    reply = parse_config(body)
    assert reply.configurations is None
    assert reply.changes == (("a", "1"), ("c", None))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b'{"releaseKey":"r1","configurations":{"a":"1"}',
        b"[]",
        b'{"configurations":{"a":"1"}}',
        b'{"releaseKey":"r1"}',
        b'{"releaseKey":"r1","configurations":{"a":1}}',
        b'{"releaseKey":"r1","configurations":["a"]}',
        b'{"releaseKey":"r1","configSyncType":"Weird","configurations":{}}',
        b'{"releaseKey":"r1","configSyncType":"IncrementalSync","configurationChanges":[{}]}',
        b"\xff\xfe",
    ],
)
def test_bad_config_replies_are_errors(body: bytes) -> None:
    with pytest.raises(ApolloResponseError):
        parse_config(body)


def test_error_messages_do_not_echo_values() -> None:
    with pytest.raises(ApolloResponseError) as info:
        parse_config(b'{"releaseKey":"r1","configurations":{"password":12345}}')
    assert "12345" not in str(info.value)


def test_notifications() -> None:
    notes = parse_notifications(
        b'[{"namespaceName":"application","notificationId":101,'
        b'"messages":{"details":{"app+default+application":101}}}]'
    )
    assert notes[0].namespace == "application"
    assert notes[0].notification_id == 101
    assert notes[0].messages == {"app+default+application": 101}


@pytest.mark.parametrize(
    "body", [b"{}", b'[{"namespaceName":"a"}]', b'[{"namespaceName":"a","notificationId":"1"}]']
)
def test_bad_notifications(body: bytes) -> None:
    with pytest.raises(ApolloResponseError):
        parse_notifications(body)


def test_services_strip_trailing_slash_and_skip_junk() -> None:
    body = (
        b'[{"appName":"APOLLO-CONFIGSERVICE","homepageUrl":"http://10.0.0.5:8080/"},'
        b'{"homepageUrl":null},{"homepageUrl":"ftp://x"}]'
    )
    assert parse_services(body) == ["http://10.0.0.5:8080"]
