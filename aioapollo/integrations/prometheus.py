"""Prometheus metrics for aioapollo clients (``pip install 'aioapollo-client[prometheus]'``).

``ApolloClient(..., hooks=[PrometheusHooks()])`` counts polls, fetches, changes and errors,
times polls and fetches, and keeps the last successful sync time, in the default registry or
the one you pass. Labels are app ids, namespaces, results and error kinds: never values.
Under gunicorn each worker has its own registry; use prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) to aggregate them. ``java_names=True`` also exports the Java
client's monitor metrics (``apollo_client_*``), so Java and Python services share dashboards.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "aioapollo.integrations.prometheus needs prometheus-client: "
        "pip install 'aioapollo-client[prometheus]'"
    ) from exc

from .._hooks import ChangeEvent, ErrorEvent, FetchEvent, Hooks, PollEvent, RoleEvent
from . import _java

__all__ = ["PrometheusHooks"]

#: Long polls are held up to 60 s by the server; fetches take milliseconds.
_POLL_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)
_FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class _Metrics:
    polls: Counter
    poll_seconds: Histogram
    fetches: Counter
    fetch_seconds: Histogram
    changes: Counter
    errors: Counter
    last_sync: Gauge
    roles: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str) -> _Metrics:
        return cls(
            polls=Counter(
                f"{prefix}_polls",
                "Long polls on /notifications/v2 by result (changed, unchanged, error).",
                ["app_id", "result"],
                registry=registry,
            ),
            poll_seconds=Histogram(
                f"{prefix}_poll_duration_seconds",
                "Duration of long polls (held by the server until a change or its timeout).",
                ["app_id"],
                buckets=_POLL_BUCKETS,
                registry=registry,
            ),
            fetches=Counter(
                f"{prefix}_fetches",
                "Requests to /configs by namespace and result (HTTP status, or error: no answer).",
                ["app_id", "namespace", "result"],
                registry=registry,
            ),
            fetch_seconds=Histogram(
                f"{prefix}_fetch_duration_seconds",
                "Duration of /configs requests.",
                ["app_id", "namespace"],
                buckets=_FETCH_BUCKETS,
                registry=registry,
            ),
            changes=Counter(
                f"{prefix}_changes",
                "Releases applied after the first load, by namespace.",
                ["app_id", "namespace"],
                registry=registry,
            ),
            errors=Counter(
                f"{prefix}_errors",
                "Failed polls, fetches and service discoveries, by error kind.",
                ["app_id", "operation", "kind"],
                registry=registry,
            ),
            last_sync=Gauge(
                f"{prefix}_last_sync_timestamp_seconds",
                "Unix time of the last successful exchange with Apollo (poll or fetch).",
                ["app_id"],
                registry=registry,
            ),
            roles=Counter(
                f"{prefix}_role_changes",
                "Sharing-group role changes (share_poll=True) by new role: 'leader' after a "
                "previous role of 'follower' is a failover this process took over.",
                ["app_id", "role", "previous"],
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class _JavaMetrics:
    """The Java client's names and labels (see ``_java``), one set per registry."""

    state: _java.JavaState
    exceptions: Counter
    item_num: Gauge
    first_load: Gauge
    not_found: Gauge
    timeout: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> _JavaMetrics:
        ns = [_java.NAMESPACE]
        return cls(
            state=_java.JavaState(),
            exceptions=Counter(
                _java.EXCEPTION_NUM, "Apollo client errors (Java client name).", registry=registry
            ),
            item_num=Gauge(
                _java.ITEM_NUM, "Keys held per namespace (Java client name).", ns, registry=registry
            ),
            first_load=Gauge(
                _java.FIRST_LOAD,
                "Milliseconds the namespace's first load took (Java client name).",
                ns,
                registry=registry,
            ),
            not_found=Gauge(
                _java.NOT_FOUND, "Namespaces Apollo answered 404 for.", registry=registry
            ),
            timeout=Gauge(_java.TIMEOUT, "Namespaces whose load timed out.", registry=registry),
        )


_JAVA_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _JavaMetrics] = (
    weakref.WeakKeyDictionary()
)

#: One set of metrics per registry, shared by every hook using it (a registry refuses to
#: register the same metric name twice).
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)


class PrometheusHooks(Hooks):
    """Hooks that record aioapollo metrics with prometheus-client.

    Several clients (and several ``PrometheusHooks``) may share a registry.

    Args:
        registry: Where to register the metrics (``prometheus_client.REGISTRY`` by default).
        prefix: The metric name prefix.
        java_names: Also export the Java client's monitor metrics under its names and
            labels (``apollo_client_exception_num_total``,
            ``apollo_client_namespace_item_num{namespace=...}``, ...; docs/observability.md).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "aioapollo",
        java_names: bool = False,
    ):
        registry = REGISTRY if registry is None else registry
        per_prefix = _BY_REGISTRY.setdefault(registry, {})
        if prefix not in per_prefix:
            per_prefix[prefix] = _Metrics.create(registry, prefix)
        self._m = per_prefix[prefix]
        self._java: _JavaMetrics | None = None
        if java_names:
            java = _JAVA_BY_REGISTRY.get(registry)
            if java is None:
                java = _JAVA_BY_REGISTRY[registry] = _JavaMetrics.create(registry)
            self._java = java

    def on_poll(self, event: PollEvent) -> None:
        """Count and time the poll; a success updates the last sync time."""
        if event.error is not None:
            result = "error"
        else:
            result = "changed" if event.status == 200 else "unchanged"
            self._m.last_sync.labels(event.app_id).set(time.time())
        self._m.polls.labels(event.app_id, result).inc()
        self._m.poll_seconds.labels(event.app_id).observe(event.duration)

    def on_fetch(self, event: FetchEvent) -> None:
        """Count and time the fetch; a success updates the last sync time."""
        result = "error" if event.status is None else str(event.status)
        if event.error is None:
            self._m.last_sync.labels(event.app_id).set(time.time())
        self._m.fetches.labels(event.app_id, event.namespace, result).inc()
        self._m.fetch_seconds.labels(event.app_id, event.namespace).observe(event.duration)
        java = self._java
        if java is not None:
            if java.state.fetched(event):
                java.first_load.labels(event.namespace).set(
                    java.state.first_load_ms[event.namespace]
                )
            java.not_found.set(java.state.not_found)
            java.timeout.set(java.state.timeout)

    def on_change(self, event: ChangeEvent) -> None:
        """Count releases applied after the first load."""
        if not event.initial:
            self._m.changes.labels(event.app_id, event.namespace).inc()
        java = self._java
        if java is not None and java.state.changed(event):
            java.item_num.labels(event.namespace).set(java.state.item_num[event.namespace])

    def on_error(self, event: ErrorEvent) -> None:
        """Count the error by operation and kind."""
        self._m.errors.labels(event.app_id, event.operation, event.kind).inc()
        if self._java is not None and self._java.state.counts(event):
            self._java.exceptions.inc()

    def on_role(self, event: RoleEvent) -> None:
        """Count sharing-role changes (elections and failovers)."""
        self._m.roles.labels(event.app_id, event.role, event.previous).inc()
