"""OpenTelemetry metrics for aioapollo clients (``pip install 'aioapollo[otel]'``).

Depends on ``opentelemetry-api`` only: without an SDK configured by the application every
instrument is a no-op. ``ApolloClient(..., hooks=[OpenTelemetryHooks()])`` records, under the
meter ``aioapollo``: ``aioapollo.polls``, ``aioapollo.poll.duration``, ``aioapollo.fetches``,
``aioapollo.fetch.duration``, ``aioapollo.changes``, ``aioapollo.errors`` and the gauge
``aioapollo.last_sync``. Attributes are app ids, namespaces, results and error kinds: never
values.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

try:
    from opentelemetry import metrics
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "aioapollo.integrations.otel needs opentelemetry-api: pip install 'aioapollo[otel]'"
    ) from exc

from .._hooks import ChangeEvent, ErrorEvent, FetchEvent, Hooks, PollEvent
from .._version import __version__

__all__ = ["OpenTelemetryHooks"]

APP_ID = "aioapollo.app_id"
NAMESPACE = "aioapollo.namespace"
RESULT = "aioapollo.result"
OPERATION = "aioapollo.operation"
ERROR_TYPE = "error.type"


class OpenTelemetryHooks(Hooks):
    """Hooks that record aioapollo metrics through the OpenTelemetry metrics API.

    Args:
        meter_provider: The provider to get the ``aioapollo`` meter from (the global one,
            set by the application's SDK setup, by default).
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("aioapollo", __version__, meter_provider=meter_provider)
        self._polls = meter.create_counter(
            "aioapollo.polls", unit="{poll}", description="Long polls by result"
        )
        self._poll_duration = meter.create_histogram(
            "aioapollo.poll.duration", unit="s", description="Duration of long polls"
        )
        self._fetches = meter.create_counter(
            "aioapollo.fetches", unit="{request}", description="/configs requests by result"
        )
        self._fetch_duration = meter.create_histogram(
            "aioapollo.fetch.duration", unit="s", description="Duration of /configs requests"
        )
        self._changes = meter.create_counter(
            "aioapollo.changes", unit="{release}", description="Releases applied after start"
        )
        self._errors = meter.create_counter(
            "aioapollo.errors", unit="{error}", description="Failed polls, fetches, discoveries"
        )
        self._last_sync: dict[str, float] = {}
        meter.create_observable_gauge(
            "aioapollo.last_sync",
            callbacks=[self._observe_last_sync],
            unit="s",
            description="Unix time of the last successful exchange with Apollo",
        )

    def _observe_last_sync(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(t, {APP_ID: app}) for app, t in self._last_sync.items()]

    def on_poll(self, event: PollEvent) -> None:
        """Count and time the poll; a success updates the last sync time."""
        if event.error is not None:
            result = "error"
        else:
            result = "changed" if event.status == 200 else "unchanged"
            self._last_sync[event.app_id] = time.time()
        self._polls.add(1, {APP_ID: event.app_id, RESULT: result})
        self._poll_duration.record(event.duration, {APP_ID: event.app_id})

    def on_fetch(self, event: FetchEvent) -> None:
        """Count and time the fetch; a success updates the last sync time."""
        result = "error" if event.status is None else str(event.status)
        if event.error is None:
            self._last_sync[event.app_id] = time.time()
        attributes = {APP_ID: event.app_id, NAMESPACE: event.namespace}
        self._fetches.add(1, {**attributes, RESULT: result})
        self._fetch_duration.record(event.duration, attributes)

    def on_change(self, event: ChangeEvent) -> None:
        """Count releases applied after the first load."""
        if not event.initial:
            self._changes.add(1, {APP_ID: event.app_id, NAMESPACE: event.namespace})

    def on_error(self, event: ErrorEvent) -> None:
        """Count the error by operation and kind."""
        self._errors.add(
            1, {APP_ID: event.app_id, OPERATION: event.operation, ERROR_TYPE: event.kind}
        )
