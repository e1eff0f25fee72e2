"""OpenTelemetry metrics for aioapollo clients (``pip install 'aioapollo-client[otel]'``).

Depends on ``opentelemetry-api`` only: without an SDK configured by the application every
instrument is a no-op. ``ApolloClient(..., hooks=[OpenTelemetryHooks()])`` records, under the
meter ``aioapollo``: ``aioapollo.polls``, ``aioapollo.poll.duration``, ``aioapollo.fetches``,
``aioapollo.fetch.duration``, ``aioapollo.changes``, ``aioapollo.errors`` and the gauge
``aioapollo.last_sync``. Attributes are app ids, namespaces, results and error kinds: never
values. ``java_names=True`` also records the Java client's monitor metrics under its meter
``apollo-client`` and names (``apollo_client_*``), so Java and Python services share dashboards.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping

try:
    from opentelemetry import metrics
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "aioapollo.integrations.otel needs opentelemetry-api: pip install 'aioapollo-client[otel]'"
    ) from exc

from .._hooks import ChangeEvent, ErrorEvent, FetchEvent, Hooks, PollEvent, RoleEvent
from .._version import __version__
from . import _java

__all__ = ["OpenTelemetryHooks"]

APP_ID = "aioapollo.app_id"
NAMESPACE = "aioapollo.namespace"
RESULT = "aioapollo.result"
OPERATION = "aioapollo.operation"
ERROR_TYPE = "error.type"


class _Instruments:
    """The instruments of one meter provider, shared by every hook using it (the SDK keeps
    the first of two same-named instruments, and with it only the first gauge callback)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.polls = meter.create_counter(
            "aioapollo.polls", unit="{poll}", description="Long polls by result"
        )
        self.poll_duration = meter.create_histogram(
            "aioapollo.poll.duration", unit="s", description="Duration of long polls"
        )
        self.fetches = meter.create_counter(
            "aioapollo.fetches", unit="{request}", description="/configs requests by result"
        )
        self.fetch_duration = meter.create_histogram(
            "aioapollo.fetch.duration", unit="s", description="Duration of /configs requests"
        )
        self.changes = meter.create_counter(
            "aioapollo.changes", unit="{release}", description="Releases applied after start"
        )
        self.errors = meter.create_counter(
            "aioapollo.errors", unit="{error}", description="Failed polls, fetches, discoveries"
        )
        self.roles = meter.create_counter(
            "aioapollo.role_changes",
            unit="{change}",
            description="Sharing-group role changes (elections and failovers)",
        )
        #: Unix time of the last successful exchange, per app id.
        self.last_sync: dict[str, float] = {}
        meter.create_observable_gauge(
            "aioapollo.last_sync",
            callbacks=[self._observe_last_sync],
            unit="s",
            description="Unix time of the last successful exchange with Apollo",
        )

    def _observe_last_sync(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(t, {APP_ID: app}) for app, t in self.last_sync.items()]


class _JavaInstruments:
    """The Java client's instruments (see ``_java``) on its meter, one set per provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.state = _java.JavaState()
        self.exceptions = meter.create_counter(
            _java.EXCEPTION_NUM, unit="1", description="Apollo client errors"
        )
        state = self.state

        def per_namespace(values: Mapping[str, float]) -> metrics.CallbackT:
            def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
                return [metrics.Observation(v, {_java.NAMESPACE: n}) for n, v in values.items()]

            return observe

        def count(read: str) -> metrics.CallbackT:
            def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
                return [metrics.Observation(getattr(state, read))]

            return observe

        meter.create_observable_gauge(
            _java.ITEM_NUM,
            callbacks=[per_namespace(state.item_num)],
            unit="1",
            description="Keys held",
        )
        meter.create_observable_gauge(
            _java.FIRST_LOAD,
            callbacks=[per_namespace(state.first_load_ms)],
            unit="ms",
            description="Duration of the namespace's first load",
        )
        meter.create_observable_gauge(
            _java.NOT_FOUND, callbacks=[count("not_found")], unit="1", description="404s"
        )
        meter.create_observable_gauge(
            _java.TIMEOUT, callbacks=[count("timeout")], unit="1", description="Timeouts"
        )


_JAVA_BY_PROVIDER: weakref.WeakKeyDictionary[metrics.MeterProvider, _JavaInstruments] = (
    weakref.WeakKeyDictionary()
)

_BY_PROVIDER: weakref.WeakKeyDictionary[metrics.MeterProvider, _Instruments] = (
    weakref.WeakKeyDictionary()
)


class OpenTelemetryHooks(Hooks):
    """Hooks that record aioapollo metrics through the OpenTelemetry metrics API.

    Several clients (and several ``OpenTelemetryHooks``) may share a meter provider.

    Args:
        meter_provider: The provider to get the ``aioapollo`` meter from (the global one,
            set by the application's SDK setup, by default).
        java_names: Also record the Java client's monitor metrics, under its meter
            ``apollo-client`` and names (docs/observability.md).
    """

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None, *, java_names: bool = False
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        instruments = _BY_PROVIDER.get(provider)
        if instruments is None:
            meter = metrics.get_meter("aioapollo", __version__, meter_provider=provider)
            instruments = _BY_PROVIDER[provider] = _Instruments(meter)
        self._i = instruments
        self._java: _JavaInstruments | None = None
        if java_names:
            java = _JAVA_BY_PROVIDER.get(provider)
            if java is None:
                meter = metrics.get_meter(_java.JAVA_METER, meter_provider=provider)
                java = _JAVA_BY_PROVIDER[provider] = _JavaInstruments(meter)
            self._java = java

    def on_poll(self, event: PollEvent) -> None:
        """Count and time the poll; a success updates the last sync time."""
        if event.error is not None:
            result = "error"
        else:
            result = "changed" if event.status == 200 else "unchanged"
            self._i.last_sync[event.app_id] = time.time()
        self._i.polls.add(1, {APP_ID: event.app_id, RESULT: result})
        self._i.poll_duration.record(event.duration, {APP_ID: event.app_id})

    def on_fetch(self, event: FetchEvent) -> None:
        """Count and time the fetch; a success updates the last sync time."""
        result = "error" if event.status is None else str(event.status)
        if event.error is None:
            self._i.last_sync[event.app_id] = time.time()
        attributes = {APP_ID: event.app_id, NAMESPACE: event.namespace}
        self._i.fetches.add(1, {**attributes, RESULT: result})
        self._i.fetch_duration.record(event.duration, attributes)
        if self._java is not None:
            self._java.state.fetched(event)

    def on_change(self, event: ChangeEvent) -> None:
        """Count releases applied after the first load."""
        if not event.initial:
            self._i.changes.add(1, {APP_ID: event.app_id, NAMESPACE: event.namespace})
        if self._java is not None:
            self._java.state.changed(event)

    def on_error(self, event: ErrorEvent) -> None:
        """Count the error by operation and kind."""
        self._i.errors.add(
            1, {APP_ID: event.app_id, OPERATION: event.operation, ERROR_TYPE: event.kind}
        )
        if self._java is not None and self._java.state.counts(event):
            self._java.exceptions.add(1)

    def on_role(self, event: RoleEvent) -> None:
        """Count sharing-role changes (elections and failovers)."""
        self._i.roles.add(
            1,
            {
                APP_ID: event.app_id,
                "aioapollo.role": event.role,
                "aioapollo.previous": event.previous,
            },
        )
