"""ApolloProvider with the real openfeature-sdk and flagd's evaluator (issue 18 §1).

Everything goes through the SDK (``api.set_provider``, ``api.get_client()``, hooks, event
handlers) against the in-process Apollo test server over loopback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import queue
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import ProviderStatus

from aioapollo import ClientState, NamespaceNotFoundError, NamespaceUnavailableError
from aioapollo.integrations.openfeature import ApolloProvider
from aioapollo.testing import ApolloTestServer

from ..conftest import APP, ClientFactory

FLAGS = {
    "new-checkout": {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]},
    },
    "banner": {
        "state": "ENABLED",
        "variants": {"red": "red", "blue": "blue"},
        "defaultVariant": "red",
        "targeting": {"fractional": [["red", 50], ["blue", 50]]},
    },
    "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 100}, "defaultVariant": "low"},
}


class Events:
    """SDK event handlers run on the SDK's thread pool: a queue per event kind."""

    def __init__(self) -> None:
        self.queues: dict[ProviderEvent, queue.Queue[EventDetails]] = {}
        for kind in ProviderEvent:
            q: queue.Queue[EventDetails] = queue.Queue()
            self.queues[kind] = q
            api.add_handler(kind, q.put)

    async def next(self, kind: ProviderEvent, timeout: float = 10.0) -> EventDetails:
        while True:
            details = await asyncio.to_thread(self.queues[kind].get, True, timeout)
            # Skip what a handler is told at once about the SDK's default no-op provider.
            if details.provider_name == "aioapollo":
                return details

    def none(self, kind: ProviderEvent) -> bool:
        return self.queues[kind].empty()


@pytest.fixture(autouse=True)
def _clean_sdk() -> Iterator[None]:
    yield
    api.shutdown()  # providers, handlers, hooks and context are global to the SDK


@pytest.fixture
def events() -> Events:
    return Events()


class Recorder(Hook):
    def __init__(self) -> None:
        self.resolved: list[FlagEvaluationDetails[Any]] = []
        self.errors: list[Exception] = []

    def after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints
    ) -> None:
        self.resolved.append(details)

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        self.errors.append(exception)


async def started(provider: ApolloProvider, events: Events) -> None:
    """Set the provider as the SDK's, start it on this loop, and wait for READY."""
    api.set_provider(provider)  # its initialize() waits (on the SDK's thread) for start()
    assert api.get_client().get_provider_status() is ProviderStatus.NOT_READY
    await provider.start()
    # READY by the time start() returns (not only once the SDK's thread gets to it).
    assert api.get_client().get_provider_status() is ProviderStatus.READY
    await events.next(ProviderEvent.PROVIDER_READY)


async def test_plain_mode_types_errors_and_metadata(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(
        APP,
        "application",
        {
            "dark-mode": "true",
            "greeting": "hello",
            "max-items": " 42 ",
            "ratio": "0.25",
            "layout": '{"columns": 3}',
            "broken": '{"columns": ',
            "scalar": "7",
            "nan": "nan",
        },
    )
    client = make_client()
    provider = ApolloProvider(client)
    await started(provider, events)
    assert provider._owns  # it started the client, so it closes it
    of = api.get_client()
    recorder = Recorder()
    of.add_hooks([recorder])
    release_key = client.snapshot().release_key
    assert release_key

    details = of.get_boolean_details("dark-mode", False)
    assert (details.value, details.reason, details.error_code) == (True, Reason.STATIC, None)
    assert details.variant == release_key
    assert details.flag_metadata == {
        "namespace": "application",
        "releaseKey": release_key,
        "source": "remote",
    }
    assert of.get_string_value("greeting", "x") == "hello"
    assert of.get_integer_value("max-items", 0) == 42
    assert of.get_float_value("ratio", 0.0) == 0.25
    assert of.get_object_value("layout", {}) == {"columns": 3}
    assert await of.get_boolean_value_async("dark-mode", False) is True
    assert await of.get_integer_value_async("max-items", 0) == 42
    assert (await of.get_object_details_async("layout", {})).variant == release_key

    def failed(details: FlagEvaluationDetails[Any], default: Any, code: ErrorCode) -> None:
        assert (details.value, details.error_code, details.reason) == (default, code, "ERROR")
        assert "hello" not in (details.error_message or "")  # never a value

    failed(of.get_boolean_details("greeting", False), False, ErrorCode.TYPE_MISMATCH)
    failed(of.get_integer_details("ratio", 1), 1, ErrorCode.TYPE_MISMATCH)
    failed(of.get_float_details("nan", 1.5), 1.5, ErrorCode.TYPE_MISMATCH)
    failed(of.get_object_details("broken", {"d": 1}), {"d": 1}, ErrorCode.PARSE_ERROR)
    failed(of.get_object_details("scalar", []), [], ErrorCode.TYPE_MISMATCH)
    failed(of.get_string_details("nope", "dflt"), "dflt", ErrorCode.FLAG_NOT_FOUND)
    details = await of.get_boolean_details_async("greeting", True)
    failed(details, True, ErrorCode.TYPE_MISMATCH)
    assert len(recorder.errors) == 7 and recorder.resolved  # the SDK's hooks saw both kinds
    assert recorder.resolved[0].variant == release_key

    await provider.aclose()
    assert client.state is ClientState.CLOSED


async def test_configuration_changed_on_every_release(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "application", {"a": "1", "b": "2"})
    client = make_client()
    async with ApolloProvider(client) as provider:
        api.set_provider(provider)  # the client runs: initialize() returns at once
        await events.next(ProviderEvent.PROVIDER_READY)
        server.publish(APP, "application", {"a": "1", "b": "3", "c": "4"})
        changed = await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        assert changed.flags_changed == ["b", "c"]
        assert changed.metadata["releaseKey"] == client.snapshot().release_key
        assert api.get_client().get_integer_value("c", 0) == 4
        server.publish(APP, "application", {"a": "1"})
        changed = await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        assert changed.flags_changed == ["b", "c"]
        assert api.get_client().get_integer_details("c", 0).error_code == "FLAG_NOT_FOUND"


async def test_yaml_namespace_flags_are_flat_keys(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "features.yaml", "checkout:\n  enabled: true\n  limit: 5\n")
    client = make_client(namespaces=["features.yaml"])
    await started(ApolloProvider(client, namespace="features.yaml"), events)
    of = api.get_client()
    assert of.get_boolean_value("checkout.enabled", False) is True
    server.publish(APP, "features.yaml", "checkout:\n  enabled: true\n  limit: 6\n")
    changed = await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["checkout.limit"]
    assert of.get_integer_value("checkout.limit", 0) == 6


async def test_cached_values_are_stale_until_apollo_answers(
    server: ApolloTestServer, make_client: ClientFactory, events: Events, tmp_path: Path
) -> None:
    first = make_client()
    await first.start()  # fills the disk cache
    await first.aclose()
    server.inject("/", times=None, status=503)  # Apollo is down
    client = make_client()
    provider = ApolloProvider(client)
    api.set_provider(provider)
    await provider.start()  # from the cache
    await events.next(ProviderEvent.PROVIDER_READY)  # the SDK's, as initialize() returned
    of = api.get_client()
    # The SDK's READY follows initialize(): STALE comes with the first evaluation.
    details = of.get_string_details("greeting", "x")
    assert (details.value, details.reason) == ("hello", Reason.CACHED)
    stale = await events.next(ProviderEvent.PROVIDER_STALE)
    assert "disk cache" in (stale.message or "")
    assert of.get_provider_status() is ProviderStatus.STALE
    assert details.flag_metadata["source"] == "cache"
    server.clear_faults()
    server.publish(APP, "application", {"greeting": "back"})
    await events.next(ProviderEvent.PROVIDER_READY)  # Apollo answers again
    await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert of.get_provider_status() is ProviderStatus.READY
    details = of.get_string_details("greeting", "x")
    assert (details.value, details.reason) == ("back", Reason.STATIC)
    await provider.aclose()


async def test_error_when_start_fails(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.inject("/", times=None, status=503)
    provider = ApolloProvider(make_client(cache_dir=None, start_timeout=1.0))
    api.set_provider(provider)
    with pytest.raises(NamespaceUnavailableError):
        await provider.start()
    error = await events.next(ProviderEvent.PROVIDER_ERROR)
    assert "could not load" in (error.message or "")
    of = api.get_client()
    assert of.get_provider_status() is ProviderStatus.ERROR
    details = of.get_boolean_details("x", True)
    assert (details.value, details.error_code) == (True, ErrorCode.PROVIDER_NOT_READY)


async def test_initialize_gives_up_then_start_recovers(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    provider = ApolloProvider(make_client(), ready_timeout=0.2)
    api.set_provider(provider)  # nobody starts the client within 0.2 s
    error = await events.next(ProviderEvent.PROVIDER_ERROR)
    assert "provider.start()" in (error.message or "")
    await provider.start()
    await events.next(ProviderEvent.PROVIDER_READY)
    assert api.get_client().get_string_value("greeting", "x") == "hello"
    await provider.aclose()


async def test_a_running_client_is_followed_not_owned(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    client = make_client()
    await client.start()
    provider = ApolloProvider(client)
    await asyncio.to_thread(api.set_provider_and_wait, provider)  # already running: at once
    assert api.get_client().get_string_value("greeting", "x") == "hello"
    await asyncio.to_thread(api.shutdown)
    assert client.state is ClientState.RUNNING  # not the provider's to close
    with pytest.raises(ValueError):
        client.remove_listener(provider._on_release)  # the provider no longer listens


async def test_targeting_mode(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "flags.json", json.dumps({"flags": FLAGS}))
    client = make_client(namespaces=["application", "flags.json"])
    await started(ApolloProvider(client, flags_namespace="flags.json"), events)
    of = api.get_client()
    staff = EvaluationContext("user-1", {"email": "ann@example.com"})
    guest = EvaluationContext("user-2", {"email": "bob@elsewhere.org"})
    details = of.get_boolean_details("new-checkout", False, staff)
    assert (details.value, details.variant, details.reason) == (True, "on", "TARGETING_MATCH")
    assert details.flag_metadata["namespace"] == "flags.json"
    assert details.flag_metadata["releaseKey"] == client.snapshot("flags.json").release_key
    assert of.get_boolean_value("new-checkout", True, guest) is False
    static = of.get_integer_details("limit", 0)
    assert (static.value, static.variant, static.reason) == (10, "low", Reason.STATIC)
    # A fractional rollout by targetingKey: stable per key, about half each way.
    colours = [
        of.get_string_value("banner", "none", EvaluationContext(f"user-{i}")) for i in range(400)
    ]
    assert colours == [
        of.get_string_value("banner", "none", EvaluationContext(f"user-{i}")) for i in range(400)
    ]
    assert 140 < colours.count("red") < 260 and colours.count("red") + colours.count("blue") == 400
    failed = of.get_string_details("new-checkout", "dflt", staff)
    assert (failed.value, failed.error_code) == ("dflt", ErrorCode.TYPE_MISMATCH)
    assert of.get_string_details("nope", "d").error_code == ErrorCode.FLAG_NOT_FOUND

    # A release: the flags that changed are named.
    flags = json.loads(json.dumps(FLAGS))
    flags["limit"]["defaultVariant"] = "high"
    server.publish(APP, "flags.json", json.dumps({"flags": flags}))
    changed = await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["limit"]
    assert of.get_integer_value("limit", 0) == 100
    # A bad flag set: PROVIDER_ERROR, and the last good one goes on serving.
    server.publish(APP, "flags.json", '{"flags": {"limit": {"state": "MAYBE"}}}')
    error = await events.next(ProviderEvent.PROVIDER_ERROR)
    assert error.error_code == ErrorCode.PARSE_ERROR and "flags.json" in (error.message or "")
    assert of.get_integer_value("limit", 0) == 100
    server.publish(APP, "flags.json", "{not json")
    error = await events.next(ProviderEvent.PROVIDER_ERROR)
    assert "invalid JSON" in (error.message or "")
    assert of.get_integer_value("limit", 0) == 100
    assert of.get_provider_status() is ProviderStatus.ERROR
    server.publish(APP, "flags.json", json.dumps({"flags": FLAGS}))
    await events.next(ProviderEvent.PROVIDER_READY)
    changed = await events.next(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    assert changed.flags_changed == ["limit"]
    assert of.get_provider_status() is ProviderStatus.READY
    assert of.get_integer_value("limit", 0) == 10


def test_sync_client_is_started_and_closed_by_the_sdk(
    apollo_server_thread: ApolloTestServer, tmp_path: Path
) -> None:
    from aioapollo import SyncApolloClient

    apollo_server_thread.publish(APP, "application", {"beta": "on"})
    cfg = SyncApolloClient(APP, config_server=apollo_server_thread.url, cache_dir=tmp_path)
    changed: queue.Queue[EventDetails] = queue.Queue()
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed.put)
    api.set_provider_and_wait(ApolloProvider(cfg))  # starts the client
    assert cfg.state is ClientState.RUNNING
    of = api.get_client()
    assert of.get_boolean_value("beta", False) is True
    apollo_server_thread.publish(APP, "application", {"beta": "off"})
    assert changed.get(timeout=10).flags_changed == ["beta"]
    assert of.get_boolean_value("beta", True) is False
    api.shutdown()
    assert cfg.state is ClientState.CLOSED


def test_bad_arguments(tmp_path: Path) -> None:
    from aioapollo import ApolloClient

    client = ApolloClient(APP, config_server="http://127.0.0.1:9", namespaces=["application"])
    with pytest.raises(NamespaceNotFoundError):
        ApolloProvider(client, namespace="other")
    with pytest.raises(NamespaceNotFoundError):
        ApolloProvider(client, flags_namespace="flags.json")
    props = ApolloClient(APP, config_server="http://127.0.0.1:9", namespaces=["flags"])
    with pytest.raises(ValueError, match="flagd flag set"):
        ApolloProvider(props, flags_namespace="flags")
    with pytest.raises(TypeError):
        ApolloProvider(object())  # type: ignore[arg-type]


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openfeature.provider", None)
    monkeypatch.delitem(sys.modules, "aioapollo.integrations.openfeature")
    with pytest.raises(ImportError, match=r"pip install 'aioapollo-client\[openfeature\]'"):
        importlib.import_module("aioapollo.integrations.openfeature")


async def test_stale_when_started_before_set_provider(
    server: ApolloTestServer, make_client: ClientFactory, events: Events
) -> None:
    server.publish(APP, "flags.json", json.dumps({"flags": FLAGS}))
    namespaces = ["application", "flags.json"]
    first = make_client(namespaces=namespaces)
    await first.start()  # fills the disk cache
    await first.aclose()
    server.inject("/", times=None, status=503)
    client = make_client(namespaces=namespaces)
    provider = ApolloProvider(client, flags_namespace="flags.json")
    await provider.start()  # not set in the SDK yet: nobody to tell
    api.set_provider(provider)  # the client runs: initialize() returns at once
    await events.next(ProviderEvent.PROVIDER_READY)
    details = api.get_client().get_integer_details("limit", 0)
    assert (details.value, details.reason) == (10, Reason.CACHED)
    await events.next(ProviderEvent.PROVIDER_STALE)  # told on the first evaluation
    await provider.aclose()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
async def test_stale_while_its_sharing_leader_is_hung_ready_when_it_answers(
    server: ApolloTestServer,
    make_client: ClientFactory,
    events: Events,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follower whose leader hangs polls Apollo itself (stats().degraded): the provider
    says STALE on the next release, and READY once the leader answers again."""
    import os
    import signal

    from aioapollo._share import timing

    from .._support import wait_until
    from .._workers import Child

    monkeypatch.setattr(timing, "LEADER_SILENCE", 0.5)
    share_dir = tmp_path / "share"

    async def lead(report: Any) -> None:
        leader = make_client(share_poll=True, share_dir=share_dir)
        await leader.start()
        report({"role": leader.stats().role})
        await asyncio.Event().wait()

    leader = Child.running(lead, timeout=60)
    assert (await leader.next())["role"] == "leader"
    client = make_client(share_poll=True, share_dir=share_dir)
    provider = ApolloProvider(client)
    api.set_provider(provider)
    await provider.start()
    await events.next(ProviderEvent.PROVIDER_READY)
    assert client.stats().role == "follower"
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: client.stats().degraded is not None, timeout=10)
        server.publish(APP, "application", {"greeting": "while hung"})  # it polls: it hears
        stale = await events.next(ProviderEvent.PROVIDER_STALE)
        assert "degraded" in (stale.message or "") or "leader" in (stale.message or "")
        assert api.get_client().get_provider_status() is ProviderStatus.STALE
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    await wait_until(lambda: client.stats().degraded is None, timeout=10)
    server.publish(APP, "application", {"greeting": "leader is back"})
    # READY may have been queued twice at start (the SDK's and the provider's): wait on the
    # status the SDK keeps, which only a READY after the STALE can restore.
    of = api.get_client()
    await wait_until(lambda: of.get_provider_status() is ProviderStatus.READY, timeout=10)
    assert of.get_string_value("greeting", "x") == "leader is back"
    await provider.aclose()
