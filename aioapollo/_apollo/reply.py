"""One HTTP response as the protocol code sees it (no aiohttp: both halves of the transport
use it, the half that imports aiohttp and the half that does not)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """Status, body and the server's ``Date`` (for clock-skew diagnosis) of one response."""

    status: int
    body: bytes
    server_time: float | None
    #: Whether the request carried access-key headers (tells a 401's cause apart).
    signed: bool = False
