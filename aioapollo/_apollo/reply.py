"""One HTTP response as the protocol code sees it (no aiohttp: both halves of the transport
use it, the half that imports aiohttp and the half that does not)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

__all__ = ["Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """Status, body and the server's ``Date`` (for clock-skew diagnosis) of one response."""

    status: int
    body: bytes
    #: The ``Date`` header as sent (parsed only when a 401 is diagnosed: see ``server_time``).
    date: str | None
    #: Whether the request carried access-key headers (tells a 401's cause apart).
    signed: bool = False

    @property
    def server_time(self) -> float | None:
        """The server's clock (epoch seconds) from its ``Date`` header, if it sent a valid one."""
        if not self.date:
            return None
        try:
            return email.utils.parsedate_to_datetime(self.date).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
