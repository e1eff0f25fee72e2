"""What sharing needs of its client besides the store (the engine provides it)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["SharingHost"]


class SharingHost(Protocol):
    """What sharing needs of its client besides the store: polling Apollo from this process
    (a leader, or a follower whose leader is silent) and the client's health."""

    def start_polling(self) -> None:
        """Start polling Apollo from this process (idempotent)."""

    async def stop_polling(self) -> None:
        """Stop polling Apollo from this process (idempotent)."""

    def healthy(self) -> bool:
        """Whether this client (as a leader) is healthy."""

    def own_poll_time(self) -> float | None:
        """Epoch seconds of this process's own last successful long poll."""
