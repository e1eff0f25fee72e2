"""Prometheus and OpenTelemetry adapters, fed by a real client against the test server."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from aioapollo import ChangeEvent, Hooks, PollEvent
from aioapollo.integrations.otel import OpenTelemetryHooks
from aioapollo.integrations.prometheus import PrometheusHooks
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from ..conftest import APP, ClientFactory, Events


class Seen(Hooks):
    """Counts what the client reported, so a test knows when the adapters saw it too."""

    def __init__(self) -> None:
        self.ok_polls = 0
        self.changes = 0
        self.poll_errors = 0

    def on_poll(self, event: PollEvent) -> None:
        if event.ok:
            self.ok_polls += 1
        else:
            self.poll_errors += 1

    def on_change(self, event: ChangeEvent) -> None:
        self.changes += not event.initial


async def exercise(server: ApolloTestServer, make_client: ClientFactory, hooks: Hooks) -> None:
    """Start, see a poll, one publish, one failed fetch attempt and one failed poll."""
    seen = Seen()
    events = Events()
    server.inject(f"/configs/{APP}/default/application", status=500, times=1)
    client = make_client(hooks=[hooks, seen])
    client.on_change(events)
    await client.start()
    await wait_until(lambda: seen.ok_polls >= 1)
    server.publish(APP, "application", {"greeting": "s3cret-value", "timeout": "30"})
    await events.next()
    await wait_until(lambda: seen.changes == 1)
    server.inject("/notifications/v2", status=503, times=1)
    await wait_until(lambda: seen.poll_errors == 1)
    await client.aclose()


async def test_prometheus_hooks(server: ApolloTestServer, make_client: ClientFactory) -> None:
    registry = CollectorRegistry()
    await exercise(server, make_client, PrometheusHooks(registry))

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, {"app_id": APP, **labels})
        return 0.0 if found is None else found

    ok_polls = value("aioapollo_polls_total", result="unchanged") + value(
        "aioapollo_polls_total", result="changed"
    )
    assert ok_polls >= 1
    assert value("aioapollo_polls_total", result="error") == 1
    assert value("aioapollo_fetches_total", namespace="application", result="500") == 1
    assert value("aioapollo_fetches_total", namespace="application", result="200") >= 2
    assert value("aioapollo_changes_total", namespace="application") == 1
    assert value("aioapollo_errors_total", operation="fetch", kind="ApolloHTTPStatusError:500") == 1
    assert value("aioapollo_errors_total", operation="poll", kind="ApolloHTTPStatusError:503") == 1
    assert value("aioapollo_fetch_duration_seconds_count", namespace="application") >= 3
    assert value("aioapollo_poll_duration_seconds_count") == ok_polls + 1
    assert value("aioapollo_last_sync_timestamp_seconds") > 1.7e9
    assert b"s3cret-value" not in generate_latest(registry)


def test_prometheus_hooks_share_a_registry() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusHooks(registry), PrometheusHooks(registry)  # no duplicate error
    first.on_change(ChangeEvent("a", "ns", frozenset({"k"}), "r", _remote(), initial=False))
    second.on_change(ChangeEvent("a", "ns", frozenset({"k"}), "r", _remote(), initial=False))
    assert registry.get_sample_value("aioapollo_changes_total", {"app_id": "a", "namespace": "ns"})
    assert (
        registry.get_sample_value("aioapollo_changes_total", {"app_id": "a", "namespace": "ns"})
        == 2
    )
    PrometheusHooks(registry, prefix="other")  # another prefix registers its own metrics
    assert (
        registry.get_sample_value("other_changes_total", {"app_id": "a", "namespace": "ns"}) is None
    )


def _remote() -> Any:
    from aioapollo import Source

    return Source.REMOTE


async def test_opentelemetry_hooks(server: ApolloTestServer, make_client: ClientFactory) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        await exercise(server, make_client, OpenTelemetryHooks(provider))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "aioapollo"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # histograms
                    points.setdefault(metric.name, []).append((dict(point.attributes), value))

    def total(name: str, **attrs: str) -> float:
        return sum(v for a, v in points.get(name, []) if attrs.items() <= a.items())

    app = {"aioapollo.app_id": APP}
    assert total("aioapollo.polls", **app, **{"aioapollo.result": "error"}) == 1
    assert total("aioapollo.polls", **app) >= 2  # at least one ok, one failed
    assert total("aioapollo.fetches", **{"aioapollo.result": "500"}) == 1
    assert total("aioapollo.changes", **{"aioapollo.namespace": "application"}) == 1
    assert total("aioapollo.errors", **{"aioapollo.operation": "poll"}) == 1
    assert total("aioapollo.errors", **{"error.type": "ApolloHTTPStatusError:500"}) == 1
    assert total("aioapollo.fetch.duration") >= 3  # 500, 200 at start, 200 after publish
    assert total("aioapollo.poll.duration") == total("aioapollo.polls")
    assert total("aioapollo.last_sync", **app) > 1.7e9
    assert "s3cret-value" not in repr(points)


def test_opentelemetry_without_sdk_is_a_noop() -> None:
    hooks = OpenTelemetryHooks()  # the API's default provider: no SDK, nothing recorded
    hooks.on_poll(PollEvent(APP, "http://x", 0.1, 304))


@pytest.mark.parametrize(
    ("module", "hidden", "extra"),
    [
        ("aioapollo.integrations.prometheus", "prometheus_client", "prometheus"),
        ("aioapollo.integrations.otel", "opentelemetry", "otel"),
    ],
)
def test_missing_extra_names_it(
    module: str, hidden: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=rf"pip install 'aioapollo-client\[{extra}\]'"):
        importlib.import_module(module)


def test_opentelemetry_hooks_share_a_provider() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        OpenTelemetryHooks(provider).on_poll(PollEvent("app-a", "http://x", 0.1, 304))
        OpenTelemetryHooks(provider).on_poll(PollEvent("app-b", "http://x", 0.1, 200))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    synced = {
        point.attributes["aioapollo.app_id"]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "aioapollo.last_sync"
        for point in metric.data.data_points
    }
    assert synced == {"app-a", "app-b"}  # both hooks' gauges are observed


async def failover(make_client: ClientFactory, share_dir: Any, hooks: Hooks) -> None:
    """A leader, a follower reporting to ``hooks``; the leader leaves, the follower leads."""
    leader = make_client(share_poll=True, share_dir=share_dir)
    follower = make_client(share_poll=True, share_dir=share_dir, hooks=[hooks])
    await leader.start()
    await follower.start()
    await leader.aclose()
    await wait_until(lambda: follower.stats().role == "leader")
    await follower.aclose()


async def test_role_changes_are_counted(make_client: ClientFactory, tmp_path: Any) -> None:
    registry = CollectorRegistry()
    await failover(make_client, tmp_path / "share", PrometheusHooks(registry))

    def value(role: str, previous: str) -> float:
        labels = {"app_id": APP, "role": role, "previous": previous}
        return registry.get_sample_value("aioapollo_role_changes_total", labels) or 0.0

    assert value("follower", "solo") == 1  # joined at start
    assert value("leader", "follower") == 1  # took over: a failover

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        await failover(make_client, tmp_path / "share2", OpenTelemetryHooks(provider))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    changes = [
        dict(point.attributes)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "aioapollo.role_changes"
        for point in metric.data.data_points
    ]
    assert {(c["aioapollo.role"], c["aioapollo.previous"]) for c in changes} == {
        ("follower", "solo"),
        ("leader", "follower"),
    }


async def java_exercise(server: ApolloTestServer, make_client: ClientFactory, hooks: Hooks) -> None:
    """A start with two namespaces, one of them unknown to Apollo (404), then one error."""
    seen = Seen()
    server.publish(APP, "application", {"a": "1", "b": "2", "c": "s3cret-value"})
    client = make_client(
        namespaces=["application", "missing"], allow_empty=True, hooks=[hooks, seen]
    )
    await client.start()
    await wait_until(lambda: seen.ok_polls >= 1)
    server.inject("/notifications/v2", status=503, times=1)
    await wait_until(lambda: seen.poll_errors == 1)
    await client.aclose()


async def test_prometheus_java_names(server: ApolloTestServer, make_client: ClientFactory) -> None:
    registry = CollectorRegistry()
    await java_exercise(server, make_client, PrometheusHooks(registry, java_names=True))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("apollo_client_namespace_item_num", namespace="application") == 3
    first_load = value(
        "apollo_client_namespace_first_load_time_spend_in_ms", namespace="application"
    )
    assert first_load is not None and 0 < first_load < 5000
    assert value("apollo_client_namespace_not_found") == 1
    assert value("apollo_client_namespace_timeout") == 0
    errors = value("apollo_client_exception_num_total")
    assert errors is not None and errors >= 2  # the 404 fetch(es) and the failed poll
    assert value("aioapollo_polls_total", app_id=APP, result="error") == 1  # ours stay too
    assert b"s3cret-value" not in generate_latest(registry)
    # Off by default: a registry of plain hooks has none of them.
    plain = CollectorRegistry()
    PrometheusHooks(plain)
    assert b"apollo_client" not in generate_latest(plain)


async def test_opentelemetry_java_names(
    server: ApolloTestServer, make_client: ClientFactory
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        await java_exercise(server, make_client, OpenTelemetryHooks(provider, java_names=True))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("apollo_client"):
                    assert scope.scope.name == "apollo-client"
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    points.setdefault(metric.name, []).append((dict(point.attributes), value))
    items = {a["namespace"]: v for a, v in points["apollo_client_namespace_item_num"]}
    assert items == {"application": 3, "missing": 0}  # an empty start holds no keys
    assert points["apollo_client_namespace_not_found"] == [({}, 1)]
    assert points["apollo_client_namespace_timeout"] == [({}, 0)]
    [(_, first_load)] = [
        p
        for p in points["apollo_client_namespace_first_load_time_spend_in_ms"]
        if p[0] == {"namespace": "application"}
    ]
    assert 0 < first_load < 5000
    assert sum(v for _, v in points["apollo_client_exception_num"]) >= 2
    assert "s3cret-value" not in repr(points)
