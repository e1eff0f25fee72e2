"""Small public types of the test server: recorded requests and injected faults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_GARBAGE", "Fault", "OpenApiExchange", "RecordedRequest"]

#: Body sent by a ``garbage`` fault given as ``True``: not JSON, not UTF-8.
DEFAULT_GARBAGE = b"\x00\xff<html>not json{{"


@dataclass(eq=False)
class RecordedRequest:
    """One request the server received (control endpoints are not recorded).

    Attributes:
        method: HTTP method.
        path: The path, percent-decoded.
        raw_path: Path and query exactly as sent on the wire (what a signature covers).
        query: Query parameters decoded form-style (``+`` is a space), first value of each.
        headers: The request headers (case-insensitive mapping).
        time: When it arrived (``time.time()``).
        remote: The peer address.
        status: The status answered; ``None`` while in progress, or when no response was
            sent (a dropped or hung connection).
        fault: The fault applied to it, if any.
    """

    method: str
    path: str
    raw_path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = field(repr=False)
    time: float
    remote: str | None = None
    status: int | None = None
    fault: Fault | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``GET /__aioapollo__/requests`` returns a list of these)."""
        return {
            "method": self.method,
            "path": self.path,
            "rawPath": self.raw_path,
            "query": dict(self.query),
            "headers": dict(self.headers.items()),
            "time": self.time,
            "remote": self.remote,
            "status": self.status,
            "fault": self.fault is not None,
        }


Matcher = str | Callable[[RecordedRequest], bool]


@dataclass(eq=False)
class Fault:
    """Make the next ``times`` matching requests misbehave.

    At most one of ``status``, ``drop``, ``reset``, ``garbage`` and ``hang`` may be set;
    ``delay`` may be combined with any of them (it comes first). A fault with only ``delay``
    answers normally after the delay.

    ``cut_after`` puts a reverse proxy with that read timeout in front of the server (nginx's
    ``proxy_read_timeout``, a load balancer's idle timeout): the request is answered normally,
    unless no answer is ready ``cut_after`` seconds after it arrived; then the proxy gives up
    and answers ``status`` (504 by default, as nginx does; 502 as some load balancers do) or,
    with ``drop``, closes the connection. A long poll held longer than ``cut_after`` therefore
    ends in a 504 instead of its 304, while a poll woken by a release earlier is answered.

    Attributes:
        match: A path prefix (compared with the decoded path) or a predicate on the
            :class:`RecordedRequest`.
        method: Only requests with this method match (any when ``None``).
        times: How many requests it applies to; ``None`` for every one until cleared.
        status: Answer with this status code and ``body`` (empty by default).
        body: The body sent with ``status``.
        delay: Seconds to wait before answering.
        drop: Close the connection without sending anything.
        reset: Send the status line, headers and part of a body, then close.
        garbage: Answer 200 with this body (``True``: a default non-JSON body).
        hang: Never answer; the connection is closed when the server closes.
        cut_after: Seconds after which a proxy in front cuts a request still unanswered
            (see above); combines with ``status`` (default 504), ``body``, ``drop`` and
            ``delay`` (which counts against it, as a slow upstream would).
        hits: How many requests it has been applied to so far.
    """

    match: Matcher = "/"
    method: str | None = None
    times: int | None = 1
    status: int | None = None
    body: str | bytes | None = field(default=None, repr=False)
    delay: float | None = None
    drop: bool = False
    reset: bool = False
    garbage: bytes | str | bool | None = field(default=None, repr=False)
    hang: bool = False
    cut_after: float | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        kinds = [
            name
            for name, on in (
                ("status", self.status is not None),
                ("drop", self.drop),
                ("reset", self.reset),
                ("garbage", self.garbage not in (None, False)),
                ("hang", self.hang),
            )
            if on
        ]
        if len(kinds) > 1:
            raise ValueError(f"a fault does one thing, got {' and '.join(kinds)}")
        if not kinds and self.delay is None and self.cut_after is None:
            raise ValueError("a fault needs status, drop, reset, garbage, hang, delay or cut_after")
        if self.cut_after is not None:
            if not self.cut_after > 0:
                raise ValueError("cut_after must be a positive number of seconds")
            if kinds not in ([], ["status"], ["drop"]):
                raise ValueError("cut_after goes with status or drop only")
            if not kinds:
                self.status = 504  # what nginx answers at its proxy_read_timeout
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"invalid status {self.status}")
        if self.body is not None and self.status is None:
            raise ValueError("body goes with status")

    @property
    def exhausted(self) -> bool:
        """Whether it has been applied ``times`` times already."""
        return self.times is not None and self.hits >= self.times

    def matches(self, request: RecordedRequest) -> bool:
        """Whether this fault applies to ``request`` (ignoring ``times``)."""
        if self.method is not None and self.method.upper() != request.method:
            return False
        if isinstance(self.match, str):
            return request.path.startswith(self.match)
        return self.match(request)

    def garbage_body(self) -> bytes:
        """The body a ``garbage`` fault sends."""
        if isinstance(self.garbage, bytes):
            return self.garbage
        if isinstance(self.garbage, str):
            return self.garbage.encode()
        return DEFAULT_GARBAGE

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from the JSON body of ``POST /__aioapollo__/faults``.

        Keys: ``path`` (prefix, default ``/``), ``method``, ``times`` (``null`` = always),
        ``status``, ``body``, ``delay``, ``drop``, ``reset``, ``garbage`` (text or ``true``),
        ``hang``, ``cutAfter``.
        """
        unknown = set(data) - {
            "path",
            "method",
            "times",
            "status",
            "body",
            "delay",
            "drop",
            "reset",
            "garbage",
            "hang",
            "cutAfter",
        }
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        path = data.get("path", "/")
        if not isinstance(path, str):
            raise ValueError("path must be a string")
        return cls(
            match=path,
            method=_opt(data, "method", str),
            times=_opt(data, "times", int) if "times" in data else 1,
            status=_opt(data, "status", int),
            body=_opt(data, "body", str),
            delay=None if data.get("delay") is None else float(data["delay"]),
            drop=bool(data.get("drop", False)),
            reset=bool(data.get("reset", False)),
            garbage=_garbage(data.get("garbage")),
            hang=bool(data.get("hang", False)),
            cut_after=_seconds(data, "cutAfter"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (a predicate matcher shows as ``null``)."""
        kind = next(
            (
                name
                for name, on in (
                    ("cut", self.cut_after is not None),
                    ("status", self.status is not None),
                    ("drop", self.drop),
                    ("reset", self.reset),
                    ("garbage", self.garbage not in (None, False)),
                    ("hang", self.hang),
                )
                if on
            ),
            "delay",
        )
        return {
            "path": self.match if isinstance(self.match, str) else None,
            "method": self.method,
            "times": self.times,
            "hits": self.hits,
            "kind": kind,
            "status": self.status,
            "delay": self.delay,
            "cutAfter": self.cut_after,
        }


def _opt(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"{name} must be {kind.__name__}")
    return value


def _seconds(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    return float(value)


def _garbage(value: Any) -> str | bool | None:
    if value is None or isinstance(value, (str, bool)):
        return value
    raise ValueError("garbage must be a string or true")


@dataclass(frozen=True)
class OpenApiExchange:
    """One OpenAPI request and its answer, as given to ``ApolloTestServer.openapi_observer``.

    Attributes:
        operation: The ``operationId`` it was routed to (``None``: no such endpoint).
        method: The HTTP method.
        path: The decoded path.
        query: The query parameters.
        request: The JSON body sent, if any.
        status: The status answered.
        response: The JSON body answered, if any.
    """

    operation: str | None
    method: str
    path: str
    query: dict[str, str]
    request: Any = field(repr=False)
    status: int
    response: Any = field(repr=False)
