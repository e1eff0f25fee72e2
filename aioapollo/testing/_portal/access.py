"""OpenAPI consumers: the tokens the portal accepts and what each may do."""

from __future__ import annotations

from .core import PortalCore
from .model import Consumer

__all__ = ["AccessMixin"]


class AccessMixin(PortalCore):
    """Consumers and their tokens."""

    def add_consumer(self, consumer: Consumer) -> None:
        """Accept ``consumer.token`` (replacing a consumer with the same token)."""
        if not consumer.token:
            raise ValueError("a token must not be empty")
        with self.store.lock:
            self._consumers[consumer.token] = consumer

    def consumer(self, token: str | None) -> Consumer | None:
        """The consumer holding ``token``."""
        with self.store.lock:
            return self._consumers.get(token or "")

    @property
    def has_consumers(self) -> bool:
        with self.store.lock:
            return bool(self._consumers)
