"""The Java client's monitor metrics (apollo-client 2.4+), kept from aioapollo's hooks.

The Java client exports, under these names, to Prometheus (a registry of its own) and to
OpenTelemetry (the meter ``apollo-client``), labelled by ``namespace`` where per namespace:

- ``apollo_client_exception_num``: a counter of the client's errors;
- ``apollo_client_namespace_item_num``: keys held, per namespace;
- ``apollo_client_namespace_first_load_time_spend_in_ms``: how long the first load took;
- ``apollo_client_namespace_not_found`` / ``apollo_client_namespace_timeout``: how many
  namespaces got a 404 / timed out.

``apollo_client_namespace_usage`` (reads per namespace) is left out on purpose: aioapollo's
read path is a dict lookup that never calls hooks. The thread-pool metrics have no
counterpart here. Both adapters keep the values in a :class:`JavaState` and export them.
"""

from __future__ import annotations

import threading

from .._exceptions import ApolloNotFoundError, ApolloTimeoutError
from .._hooks import ChangeEvent, ErrorEvent, FetchEvent

__all__ = [
    "EXCEPTION_NUM",
    "FIRST_LOAD",
    "ITEM_NUM",
    "JAVA_METER",
    "NAMESPACE",
    "NOT_FOUND",
    "TIMEOUT",
    "JavaState",
]

EXCEPTION_NUM = "apollo_client_exception_num"
ITEM_NUM = "apollo_client_namespace_item_num"
FIRST_LOAD = "apollo_client_namespace_first_load_time_spend_in_ms"
NOT_FOUND = "apollo_client_namespace_not_found"
TIMEOUT = "apollo_client_namespace_timeout"
#: The Java client's label (and OpenTelemetry attribute) for the namespace.
NAMESPACE = "namespace"
#: The meter the Java client's OpenTelemetry exporter records under.
JAVA_METER = "apollo-client"


class JavaState:
    """What the Java-named gauges show, updated from hook events (no config values)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.item_num: dict[str, int] = {}
        self.first_load_ms: dict[str, float] = {}
        self._not_found: set[tuple[str, str]] = set()
        self._timeout: set[tuple[str, str]] = set()

    @property
    def not_found(self) -> int:
        """How many namespaces got a 404 from ``/configs``."""
        return len(self._not_found)

    @property
    def timeout(self) -> int:
        """How many namespaces had a ``/configs`` request time out."""
        return len(self._timeout)

    def fetched(self, event: FetchEvent) -> bool:
        """Record a fetch; True when it set a namespace's first load time."""
        key = (event.app_id, event.namespace)
        with self._lock:
            if isinstance(event.error, ApolloNotFoundError):
                self._not_found.add(key)
            elif isinstance(event.error, ApolloTimeoutError):
                self._timeout.add(key)
            if event.error is None and event.namespace not in self.first_load_ms:
                self.first_load_ms[event.namespace] = event.duration * 1000.0
                return True
        return False

    def changed(self, event: ChangeEvent) -> bool:
        """Record a namespace's new size; True if it is known."""
        if event.size is None:
            return False
        with self._lock:
            self.item_num[event.namespace] = event.size
        return True

    @staticmethod
    def counts(event: ErrorEvent) -> bool:
        """Whether an error counts as one of the Java client's exceptions (every one does)."""
        return True
