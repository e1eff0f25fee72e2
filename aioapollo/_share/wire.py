"""The local leader/follower protocol: framing and messages (pure, no I/O).

Processes on one host that share a leader's long poll talk over a Unix-domain socket. Each
message is one frame::

    b"AAPO"  version (1 byte)  length (4 bytes, big-endian)  body (length bytes)

The body is a UTF-8 JSON object with a ``"type"`` field. The magic and the version come first
and are checked before the length is even read, so a peer speaking another version of this
protocol (or something else entirely) is reported as such and never misparsed: a future version
may change everything after its version byte. Any error leaves the stream unusable; the caller
closes the connection.

Messages (unknown fields are ignored, so a version may grow optional fields)::

    hello      follower -> leader   version, fingerprint, pid
    welcome    leader -> follower   leader_pid, fingerprint
    refuse     leader -> follower   reason
    release    leader -> follower   namespace, release_key, notification_id, messages,
                                    items, source, synced_at
    heartbeat  leader -> follower   leader_pid, healthy, last_poll_success,
                                    states {namespace: [notification_id, release_key]}
    resync     follower -> leader   (no fields)
    goodbye    leader -> follower   reason (the leader is closing cleanly: a handover, not
                                    a death)

Followers only ever send ``hello`` and ``resync``: a leader reads their frames with
:data:`MAX_FOLLOWER_FRAME` as the limit, so no local peer can make it buffer more.

Error messages name fields, namespaces and keys, never config values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeAlias

__all__ = [
    "MAGIC",
    "MAX_FOLLOWER_FRAME",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Decoder",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "Message",
    "Refuse",
    "Release",
    "Resync",
    "VersionMismatch",
    "Welcome",
    "WireError",
    "encode",
    "parse",
]

#: 2 added ``goodbye``. Versions never meet: the version is part of the group's name.
PROTOCOL_VERSION = 2
#: The largest body a frame may carry (a release holds a whole namespace).
MAX_FRAME = 256 * 1024 * 1024
#: The largest body a leader accepts from a follower (a hello or a resync: tens of bytes).
MAX_FOLLOWER_FRAME = 4096
MAGIC = b"AAPO"

_PREFIX = len(MAGIC) + 1  # magic and version: enough to tell whether we speak the same protocol
_HEADER = _PREFIX + 4


class WireError(ValueError):
    """Bytes or a message that this side of the protocol cannot accept."""


class VersionMismatch(WireError):
    """The peer frames messages with another protocol version.

    Attributes:
        version: The peer's version.
    """

    def __init__(self, version: int) -> None:
        super().__init__(f"peer speaks share protocol version {version}, not {PROTOCOL_VERSION}")
        self.version = version


def _dumps(msg: Mapping[str, Any], ensure_ascii: bool) -> bytes:
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=False)
    return text.encode("utf-8")


def encode(msg: Mapping[str, Any]) -> bytes:
    """One frame holding ``msg`` as a JSON object.

    Raises:
        WireError: The body would exceed :data:`MAX_FRAME`, or holds NaN or an infinity.
        TypeError: ``msg`` holds something JSON cannot represent.
    """
    try:
        body = _dumps(msg, ensure_ascii=False)
    except UnicodeEncodeError:
        # A lone surrogate (Apollo's JSON may carry one as an escape): escaping everything
        # keeps the body valid UTF-8 and the string intact.
        body = _dumps(msg, ensure_ascii=True)
    except ValueError:
        raise WireError("message holds NaN or an infinity, which JSON cannot carry") from None
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return b"".join((MAGIC, bytes((PROTOCOL_VERSION,)), len(body).to_bytes(4, "big"), body))


def _reject_constant(name: str) -> None:
    raise WireError(f"frame body holds {name}, which is not JSON")


class Decoder:
    """Splits a byte stream into messages, whatever the chunk boundaries.

    Bytes are appended to one buffer and each frame's body is decoded once, when it is
    complete, so a large frame arriving in many chunks costs time linear in its size.
    After an error, every later :meth:`feed` raises it again.
    """

    def __init__(self, *, max_frame: int | None = None) -> None:
        self._max_frame = MAX_FRAME if max_frame is None else max_frame
        self._buf = bytearray()
        self._body_len: int | None = None  # of the frame at the buffer's start, once known
        self._error: WireError | None = None

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete (non-zero at EOF means a truncated frame)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
        """Add received bytes; return the messages completed by them, in order.

        Raises:
            VersionMismatch: The peer frames with another protocol version.
            WireError: Bad magic, a frame over the size limit, or a body that is not a UTF-8
                JSON object. Messages completed earlier in the same call are dropped with the
                stream.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        messages: list[dict[str, Any]] = []
        pos = 0
        try:
            while True:
                if self._body_len is None:
                    self._check_prefix(buf, pos)
                    if len(buf) - pos < _HEADER:
                        break
                    self._body_len = int.from_bytes(buf[pos + _PREFIX : pos + _HEADER], "big")
                    if self._body_len > self._max_frame:
                        raise WireError(
                            f"frame of {self._body_len} bytes exceeds the"
                            f" {self._max_frame}-byte limit"
                        )
                end = pos + _HEADER + self._body_len
                if len(buf) < end:
                    break
                with memoryview(buf) as view:
                    messages.append(_parse_body(view[pos + _HEADER : end]))
                pos = end
                self._body_len = None
        except WireError as exc:
            self._error = exc
            self._buf = bytearray()
            raise
        if pos:
            # What is left arrived in this call (the frame completed first had begun earlier),
            # so the copy is bounded by ``len(data)``; it also drops a large frame's buffer.
            self._buf = buf[pos:]
        return messages

    @staticmethod
    def _check_prefix(buf: bytearray, pos: int) -> None:
        """Check magic and version as soon as their bytes arrive, before any length."""
        got = bytes(buf[pos : pos + _PREFIX])
        if not MAGIC.startswith(got[: len(MAGIC)]):
            raise WireError("stream does not start a share-protocol frame (bad magic)")
        if len(got) == _PREFIX and got[-1] != PROTOCOL_VERSION:
            raise VersionMismatch(got[-1])


#: One decoder for every frame (``json.loads`` with an argument builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_body(body: memoryview) -> dict[str, Any]:
    try:
        text = str(body, "utf-8")
    except UnicodeDecodeError:
        raise WireError(f"frame body of {len(body)} bytes is not UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise WireError(
            f"frame body of {len(body)} bytes is not JSON ({exc.msg} at char {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise WireError(f"frame body is a JSON {type(value).__name__}, not an object")
    return value


# -- field checks -------------------------------------------------------------------------


def _get(msg: Mapping[str, Any], kind: str, key: str) -> Any:
    try:
        return msg[key]
    except KeyError:
        raise WireError(f"{kind}: missing field {key!r}") from None


def _int(msg: Mapping[str, Any], kind: str, key: str) -> int:
    value = _get(msg, kind, key)
    if type(value) is not int:  # bool is an int subclass; the wire never means it as one
        raise WireError(f"{kind}.{key}: expected an integer, got {type(value).__name__}")
    return value


def _pid(msg: Mapping[str, Any], kind: str, key: str) -> int:
    value = _int(msg, kind, key)
    if value <= 0:
        raise WireError(f"{kind}.{key}: a process id must be positive")
    return value


def _str(msg: Mapping[str, Any], kind: str, key: str) -> str:
    value = _get(msg, kind, key)
    if not isinstance(value, str):
        raise WireError(f"{kind}.{key}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(msg: Mapping[str, Any], kind: str, key: str) -> str | None:
    value = _get(msg, kind, key)
    if value is not None and not isinstance(value, str):
        raise WireError(f"{kind}.{key}: expected a string or null, got {type(value).__name__}")
    return value


def _bool(msg: Mapping[str, Any], kind: str, key: str) -> bool:
    value = _get(msg, kind, key)
    if not isinstance(value, bool):
        raise WireError(f"{kind}.{key}: expected a boolean, got {type(value).__name__}")
    return value


def _opt_time(msg: Mapping[str, Any], kind: str, key: str) -> float | None:
    value = _get(msg, kind, key)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise WireError(f"{kind}.{key}: expected a finite number or null")
    return float(value)


def _object(msg: Mapping[str, Any], kind: str, key: str) -> dict[str, Any]:
    value = _get(msg, kind, key)
    if not isinstance(value, dict):
        raise WireError(f"{kind}.{key}: expected an object, got {type(value).__name__}")
    return value


def _str_to_int(msg: Mapping[str, Any], kind: str, key: str) -> dict[str, int]:
    value = _object(msg, kind, key)
    for name, number in value.items():
        if type(number) is not int:
            raise WireError(f"{kind}.{key}: value of {name!r} is not an integer")
    return value


def _str_to_str(msg: Mapping[str, Any], kind: str, key: str) -> dict[str, str]:
    value = _object(msg, kind, key)
    for name, text in value.items():
        if not isinstance(text, str):  # says which key, never what the value was
            raise WireError(f"{kind}.{key}: value of {name!r} is not a string")
    return value


def _check_type(msg: Mapping[str, Any], kind: str) -> None:
    if msg.get("type") != kind:
        raise WireError(f"expected a {kind!r} message, got type {_type_name(msg)}")


def _type_name(msg: Mapping[str, Any]) -> str:
    kind = msg.get("type")
    return repr(kind[:40]) if isinstance(kind, str) else f"of {type(kind).__name__}"


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """A follower's first message: who it is and which client options it was built with."""

    TYPE: ClassVar[str] = "hello"

    fingerprint: str
    pid: int
    version: int = PROTOCOL_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "pid": self.pid,
        }

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        return cls(
            version=_int(msg, cls.TYPE, "version"),
            fingerprint=_str(msg, cls.TYPE, "fingerprint"),
            pid=_pid(msg, cls.TYPE, "pid"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """The leader accepts a follower."""

    TYPE: ClassVar[str] = "welcome"

    leader_pid: int
    fingerprint: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "leader_pid": self.leader_pid, "fingerprint": self.fingerprint}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        return cls(
            leader_pid=_pid(msg, cls.TYPE, "leader_pid"),
            fingerprint=_str(msg, cls.TYPE, "fingerprint"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reasoned:
    """A leader's message that carries only ``reason``, for the log (no secrets)."""

    TYPE: ClassVar[str]

    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "reason": self.reason}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        return cls(reason=_str(msg, cls.TYPE, "reason"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse(_Reasoned):
    """The leader turns a follower away."""

    TYPE: ClassVar[str] = "refuse"


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye(_Reasoned):
    """The leader closes cleanly (a recycled worker, a shutdown): elect a new one at once."""

    TYPE: ClassVar[str] = "goodbye"


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """One namespace's current release, as the leader holds it. ``items`` stays out of repr."""

    TYPE: ClassVar[str] = "release"

    namespace: str
    release_key: str | None
    notification_id: int
    messages: dict[str, int]
    items: dict[str, str] = field(repr=False)
    source: str
    synced_at: float | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "namespace": self.namespace,
            "release_key": self.release_key,
            "notification_id": self.notification_id,
            "messages": self.messages,
            "items": self.items,
            "source": self.source,
            "synced_at": self.synced_at,
        }

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        kind = cls.TYPE
        return cls(
            namespace=_str(msg, kind, "namespace"),
            release_key=_opt_str(msg, kind, "release_key"),
            notification_id=_int(msg, kind, "notification_id"),
            messages=_str_to_int(msg, kind, "messages"),
            items=_str_to_str(msg, kind, "items"),
            source=_str(msg, kind, "source"),
            synced_at=_opt_time(msg, kind, "synced_at"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """The leader's periodic state: its health and what it holds of every namespace.

    ``states`` maps each namespace to ``(notification_id, release_key)``; a follower that
    holds something else asks for a :class:`Resync`.
    """

    TYPE: ClassVar[str] = "heartbeat"

    leader_pid: int
    healthy: bool
    last_poll_success: float | None
    states: dict[str, tuple[int, str | None]]

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "leader_pid": self.leader_pid,
            "healthy": self.healthy,
            "last_poll_success": self.last_poll_success,
            "states": {ns: [nid, key] for ns, (nid, key) in self.states.items()},
        }

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        kind = cls.TYPE
        states: dict[str, tuple[int, str | None]] = {}
        for namespace, state in _object(msg, kind, "states").items():
            if not (
                isinstance(state, list)
                and len(state) == 2
                and type(state[0]) is int
                and (state[1] is None or isinstance(state[1], str))
            ):
                raise WireError(
                    f"{kind}.states: state of {namespace!r} is not"
                    " [notification_id, release_key or null]"
                )
            states[namespace] = (state[0], state[1])
        return cls(
            leader_pid=_pid(msg, kind, "leader_pid"),
            healthy=_bool(msg, kind, "healthy"),
            last_poll_success=_opt_time(msg, kind, "last_poll_success"),
            states=states,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Resync:
    """A follower asks the leader to send every namespace's release again."""

    TYPE: ClassVar[str] = "resync"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE}

    @classmethod
    def from_wire(cls, msg: Mapping[str, Any]) -> Self:
        _check_type(msg, cls.TYPE)
        return cls()


Message: TypeAlias = Hello | Welcome | Refuse | Release | Heartbeat | Resync | Goodbye

_KINDS: dict[str, type[Message]] = {
    kind.TYPE: kind for kind in (Hello, Welcome, Refuse, Release, Heartbeat, Resync, Goodbye)
}


def parse(msg: Mapping[str, Any]) -> Message:
    """The typed message for a decoded frame.

    Raises:
        WireError: An unknown ``type``, or a missing or mistyped field.
    """
    kind = msg.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {_type_name(msg)}")
    return cls.from_wire(msg)
