"""The leader/follower framing and messages (pure functions, no sockets)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from aioapollo._share import wire as _sharewire
from aioapollo._share.wire import (
    MAGIC,
    PROTOCOL_VERSION,
    Decoder,
    Heartbeat,
    Hello,
    Message,
    Refuse,
    Release,
    Resync,
    VersionMismatch,
    Welcome,
    WireError,
    encode,
    parse,
)

SECRET = "s3cr3t-value"

MESSAGES: list[Message] = [
    Hello(fingerprint="f" * 64, pid=4242),
    Welcome(leader_pid=17, fingerprint="f" * 64),
    Refuse(reason="fingerprint differs"),
    Release(
        namespace="application",
        release_key="20250101-abc+def",
        notification_id=-1,
        messages={"app+default+application": 101},
        items={"greeting": "héllo 你好", "password": SECRET, "empty": ""},
        source="remote",
        synced_at=1_700_000_000.25,
    ),
    Release(
        namespace="db.json",
        release_key=None,
        notification_id=7,
        messages={},
        items={},
        source="cache",
        synced_at=None,
    ),
    Heartbeat(
        leader_pid=17,
        healthy=True,
        last_poll_success=None,
        states={"application": (101, "k1"), "db.json": (-1, None)},
    ),
    Heartbeat(leader_pid=17, healthy=False, last_poll_success=12.5, states={}),
    Resync(),
]


def _frame(version: int, body: bytes) -> bytes:
    return MAGIC + bytes((version,)) + len(body).to_bytes(4, "big") + body


def _stream() -> bytes:
    return b"".join(encode(m.to_wire()) for m in MESSAGES)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    (decoded,) = Decoder().feed(encode(message.to_wire()))
    assert parse(decoded) == message
    assert type(message).from_wire(decoded) == message


def test_frame_header_is_magic_version_length() -> None:
    frame = encode({"type": "resync"})
    body = b'{"type":"resync"}'
    assert frame == MAGIC + bytes((PROTOCOL_VERSION,)) + len(body).to_bytes(4, "big") + body


def test_every_split_point_of_a_stream() -> None:
    stream = _stream()
    expected = [m.to_wire() for m in MESSAGES]
    for cut in range(len(stream) + 1):
        decoder = Decoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == expected, cut
        assert decoder.pending == 0


def test_byte_at_a_time_and_random_chunks() -> None:
    stream = _stream()
    expected = [m.to_wire() for m in MESSAGES]
    decoder = Decoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == expected
    rng = random.Random(7)
    for _ in range(200):
        decoder, got, pos = Decoder(), [], 0
        while pos < len(stream):
            step = rng.randint(0, 40)
            got += decoder.feed(memoryview(stream)[pos : pos + step])
            pos += step
        assert got == expected


def test_many_frames_in_one_chunk() -> None:
    frames = [encode({"type": "resync", "n": n}) for n in range(1000)]
    assert Decoder().feed(b"".join(frames)) == [{"type": "resync", "n": n} for n in range(1000)]


def test_truncated_frame_stays_pending() -> None:
    frame = encode(Resync().to_wire())
    decoder = Decoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.pending == len(frame) - 1  # what a caller sees at EOF: a truncated frame


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, 255])
def test_other_version_is_detected_before_the_length(version: int) -> None:
    decoder = Decoder()
    assert decoder.feed(MAGIC) == []
    with pytest.raises(VersionMismatch) as info:
        decoder.feed(bytes((version,)))  # no length yet: a future header may differ after it
    assert info.value.version == version
    assert isinstance(info.value, WireError)
    assert str(version) in str(info.value)


def test_version_mismatch_after_good_frames() -> None:
    stream = encode(Resync().to_wire()) + _frame(PROTOCOL_VERSION + 1, b'{"type":"resync"}')
    with pytest.raises(VersionMismatch):
        Decoder().feed(stream)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n", b"X", b"AAPX\x01", b"\x00\x00\x00\x10", b"AAP1\x01\x00\x00\x00\x02{}"],
)
def test_garbage_is_refused_at_the_first_wrong_byte(garbage: bytes) -> None:
    with pytest.raises(WireError, match="bad magic") as info:
        Decoder().feed(garbage)
    assert not isinstance(info.value, VersionMismatch)


def test_error_is_sticky() -> None:
    decoder = Decoder()
    with pytest.raises(WireError):
        decoder.feed(b"nonsense")
    with pytest.raises(WireError, match="bad magic"):
        decoder.feed(encode(Resync().to_wire()))  # the stream is broken: no resynchronising


def test_oversized_frame_is_refused_from_its_header() -> None:
    header = MAGIC + bytes((PROTOCOL_VERSION,)) + (_sharewire.MAX_FRAME + 1).to_bytes(4, "big")
    with pytest.raises(WireError, match="exceeds"):
        Decoder().feed(header)  # refused before a single body byte is buffered
    limit = Decoder(max_frame=16)
    assert limit.feed(_frame(PROTOCOL_VERSION, b'{"type":"a"}')) == [{"type": "a"}]
    with pytest.raises(WireError, match="exceeds the 16-byte limit"):
        limit.feed(_frame(PROTOCOL_VERSION, b'{"type":"resync"}'))


def test_encode_refuses_oversized_and_non_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sharewire, "MAX_FRAME", 20)
    assert Decoder().feed(encode({"a": "x"})) == [{"a": "x"}]
    with pytest.raises(WireError, match="exceeds"):
        encode({"a": "x" * 20})
    with pytest.raises(WireError, match="NaN"):
        encode({"t": float("nan")})


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b'{"a":1}{', "not JSON"),
        (b"[1,2]", "JSON list, not an object"),
        (b'"text"', "JSON str, not an object"),
        (b"null", "JSON NoneType, not an object"),
        (b'{"t":NaN}', "NaN"),
        (b'{"t":-Infinity}', "Infinity"),
        (b'{"a":"\xff"}', "not UTF-8"),
        ('{"a":1}'.encode("utf-16"), "not UTF-8"),  # json.loads alone would accept UTF-16
        (b'\xef\xbb\xbf{"a":1}', "not JSON"),  # a BOM
    ],
)
def test_bad_bodies(body: bytes, match: str) -> None:
    with pytest.raises(WireError, match=match):
        Decoder().feed(_frame(PROTOCOL_VERSION, body))


def test_error_messages_never_hold_values() -> None:
    body = json.dumps({"a": SECRET, "b": [SECRET]}).encode()
    with pytest.raises(WireError) as info:
        Decoder().feed(_frame(PROTOCOL_VERSION, body[:-1]))
    assert SECRET not in str(info.value)
    wire = MESSAGES[3].to_wire()
    with pytest.raises(WireError) as info:
        Release.from_wire({**wire, "items": {"password": [SECRET]}})
    assert "'password'" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(MESSAGES[3])


def test_lone_surrogate_survives() -> None:
    # Apollo's JSON may escape a lone surrogate; Python keeps it in the str.
    release = Release(
        namespace="n",
        release_key="k",
        notification_id=1,
        messages={},
        items={"odd": "a\ud800b", "cjk": "你好"},
        source="remote",
        synced_at=None,
    )
    frame = encode(release.to_wire())
    frame[len(MAGIC) + 5 :].decode("utf-8")  # the body is still valid UTF-8
    (decoded,) = Decoder().feed(frame)
    assert Release.from_wire(decoded) == release


def _release_wire(**changes: Any) -> dict[str, Any]:
    return {**MESSAGES[3].to_wire(), **changes}


def _heartbeat_wire(**changes: Any) -> dict[str, Any]:
    return {**MESSAGES[5].to_wire(), **changes}


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        ({"type": "hello", "version": "1", "fingerprint": "f", "pid": 1}, "hello.version"),
        ({"type": "hello", "version": 1, "fingerprint": 5, "pid": 1}, "hello.fingerprint"),
        ({"type": "hello", "version": 1, "fingerprint": "f", "pid": True}, "hello.pid"),
        ({"type": "hello", "version": 1, "fingerprint": "f", "pid": 0}, "must be positive"),
        ({"type": "hello", "version": 1, "pid": 1}, "missing field 'fingerprint'"),
        ({"type": "welcome", "leader_pid": 1.5, "fingerprint": "f"}, "welcome.leader_pid"),
        ({"type": "refuse", "reason": None}, "refuse.reason"),
        ({"type": "refuse"}, "missing field 'reason'"),
        (_release_wire(namespace=None), "release.namespace"),
        (_release_wire(release_key=3), "release.release_key"),
        (_release_wire(notification_id="7"), "release.notification_id"),
        (_release_wire(notification_id=False), "release.notification_id"),
        (_release_wire(messages=[]), "release.messages"),
        (_release_wire(messages={"k": "1"}), "release.messages"),
        (_release_wire(items={"k": 1}), "release.items: value of 'k'"),
        (_release_wire(items="k=v"), "release.items"),
        (_release_wire(source=None), "release.source"),
        (_release_wire(synced_at="now"), "release.synced_at"),
        (_release_wire(synced_at=True), "release.synced_at"),
        (_release_wire(synced_at=1e999), "release.synced_at"),
        (_heartbeat_wire(healthy=1), "heartbeat.healthy"),
        (_heartbeat_wire(last_poll_success=[]), "heartbeat.last_poll_success"),
        (_heartbeat_wire(states=[]), "heartbeat.states"),
        (_heartbeat_wire(states={"a": [1]}), "state of 'a'"),
        (_heartbeat_wire(states={"a": [1, 2]}), "state of 'a'"),
        (_heartbeat_wire(states={"a": ["1", None]}), "state of 'a'"),
        (_heartbeat_wire(states={"a": {"id": 1}}), "state of 'a'"),
        ({"type": "gossip"}, "unknown message type 'gossip'"),
        ({"type": 3}, "unknown message type of int"),
        ({}, "unknown message type of NoneType"),
    ],
)
def test_wrong_fields_are_refused(wire: dict[str, Any], match: str) -> None:
    with pytest.raises(WireError, match=match):
        parse(wire)


def test_from_wire_checks_the_type_and_ignores_unknown_fields() -> None:
    with pytest.raises(WireError, match="expected a 'welcome' message, got type 'hello'"):
        Welcome.from_wire(MESSAGES[0].to_wire())
    assert parse({"type": "resync", "added_in_a_later_release": 1}) == Resync()
    assert parse(_release_wire(synced_at=5)) == Release.from_wire(_release_wire(synced_at=5.0))


def test_a_50_mb_frame_in_64_kib_chunks() -> None:
    items = {f"key{n}": chr(ord("a") + n % 26) * 100_000 for n in range(500)}
    release = Release(
        namespace="big",
        release_key="k",
        notification_id=1,
        messages={},
        items=items,
        source="remote",
        synced_at=None,
    )
    stream = encode(release.to_wire()) + encode(Resync().to_wire())
    assert len(stream) > 50_000_000
    decoder = Decoder()
    got: list[dict[str, Any]] = []
    chunk = 64 * 1024
    view = memoryview(stream)
    for pos in range(0, len(stream), chunk):
        got += decoder.feed(view[pos : pos + chunk])
    assert [parse(m) for m in got] == [release, Resync()]
    assert decoder.pending == 0
