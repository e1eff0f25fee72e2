"""An OpenFeature provider backed by Apollo (``pip install 'aioapollo-client[openfeature]'``).

``ApolloProvider(client)`` serves feature flags from an :class:`~aioapollo.ApolloClient` or a
:class:`~aioapollo.SyncApolloClient` to the ``openfeature-sdk``:

- **plain mode** (the default): a flag key is a key of one namespace (``namespace=``,
  ``"application"``); its string is converted to the requested type. A yaml/yml/json
  namespace is read as flat dotted keys. Resolution is a dict lookup plus that conversion.
- **targeting mode** (``flags_namespace="flags.json"``): the namespace holds flag definitions
  in flagd's format, evaluated per request against the evaluation context (targeting rules,
  fractional rollouts by ``targetingKey``) by flagd's own evaluator, ``openfeature-flagd-core``.

The provider is a sink of the client: it follows releases through the client's listener API
and emits ``PROVIDER_CONFIGURATION_CHANGED`` (with ``flags_changed``) on each one,
``PROVIDER_STALE`` while Apollo cannot be reached (values from the disk cache) or the host's
sharing group is degraded, and ``PROVIDER_READY`` again once it recovers. See
docs/openfeature.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEvent, ProviderEventDetails
    from openfeature.exception import ErrorCode, ParseError, ProviderNotReadyError
    from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
    from openfeature.provider import AbstractProvider, FeatureProvider, Metadata

    from . import _flags
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "aioapollo.integrations.openfeature needs openfeature-sdk and openfeature-flagd-core: "
        "pip install 'aioapollo-client[openfeature]'"
    ) from exc

from .._client import ApolloClient, ClientState
from .._exceptions import ApolloError, NamespaceNotFoundError
from .._models import ConfigChangeEvent, NamespaceSnapshot, Source, diff_items
from .._sync import SyncApolloClient

__all__ = ["ApolloProvider"]

logger = logging.getLogger("aioapollo")

_FLAG_FORMATS = (".json", ".yaml", ".yml")


class ApolloProvider(AbstractProvider):
    """OpenFeature provider serving flags from an Apollo client.

    Args:
        client: The :class:`ApolloClient` or :class:`SyncApolloClient` to read.
        namespace: Plain mode: the namespace whose keys are the flags.
        flags_namespace: Targeting mode: a ``.json``/``.yaml``/``.yml`` namespace holding a
            flagd flag set (``{"flags": {...}}``), evaluated per request.
        ready_timeout: How long :meth:`initialize` waits for an :class:`ApolloClient` that
            is not running yet to be started by :meth:`start` (seconds).

    Lifecycle: a :class:`SyncApolloClient` that was never started is started by
    :meth:`initialize` (``api.set_provider``), and the provider then owns it:
    :meth:`shutdown` closes it. An :class:`ApolloClient` belongs to the event loop it runs
    on, so it is started there: ``await provider.start()`` in the app's lifespan (it
    starts the client unless it runs already, and owns it if it started it), and
    ``await provider.aclose()`` at the end. Until then the SDK reports the provider
    ``NOT_READY``. A client that is already running is only followed, never closed.
    """

    def __init__(
        self,
        client: ApolloClient | SyncApolloClient,
        *,
        namespace: str = "application",
        flags_namespace: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if not isinstance(client, ApolloClient | SyncApolloClient):
            raise TypeError(
                f"ApolloProvider needs an ApolloClient or SyncApolloClient, not {type(client)!r}"
            )
        watched = flags_namespace if flags_namespace is not None else namespace
        if watched not in client.namespaces:
            raise NamespaceNotFoundError(watched)
        if flags_namespace is not None and not flags_namespace.endswith(_FLAG_FORMATS):
            raise ValueError(
                f"flags_namespace {flags_namespace!r} must be a .json, .yaml or .yml namespace "
                "holding a flagd flag set"
            )
        if watched.endswith((".xml", ".txt")):
            raise ValueError(f"namespace {watched!r} has no keys to read flags from")
        self._client = client
        self._namespace = watched
        self._flags = _flags.FlagSet() if flags_namespace is not None else None
        self._ready_timeout = ready_timeout
        #: The plain-mode view of the snapshot last read (replaced whole, never mutated).
        self._view: _flags.View | None = None
        self._owns = False
        self._subscribed = False
        self._stale = False
        self._lock = threading.Lock()
        #: initialize() waiting for start(), in the process (pid) that waits.
        self._waiter: _Waiter | None = None
        self._previous: Mapping[str, str] | None = None
        #: Targeting mode: the last flag set released was refused (PROVIDER_ERROR told).
        self._broken = False
        _providers.add(self)

    # ------------------------------------------------------------------ SDK lifecycle

    def attach(
        self,
        on_emit: Callable[[FeatureProvider, ProviderEvent, ProviderEventDetails], None],
    ) -> None:
        """Called by the SDK when the provider is set: health is told to it afresh."""
        super().attach(on_emit)
        with self._lock:
            self._stale = False
            self._view = None  # the next evaluation checks (and reports) health

    def get_metadata(self) -> Metadata:
        """The provider's name in the SDK (``"aioapollo"``)."""
        return Metadata(name="aioapollo")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Called by the SDK on ``set_provider``: make sure the client has values.

        Starts a :class:`SyncApolloClient` that was never started (and owns it). For an
        :class:`ApolloClient` that is not running, waits up to ``ready_timeout`` for
        :meth:`start` on the app's loop; raising then makes the SDK emit ``PROVIDER_ERROR``
        (a later :meth:`start` emits ``PROVIDER_READY``).
        """
        self._subscribe()
        client = self._client
        if isinstance(client, SyncApolloClient):
            if client.state is ClientState.CREATED and not client.sources:
                client.start()  # raises what start() raises: the SDK emits PROVIDER_ERROR
                self._owns = True
        elif client.state is not ClientState.RUNNING:
            self._wait_for_start()
        self._loaded()

    def _wait_for_start(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ProviderNotReadyError(
                "ApolloProvider: the ApolloClient is not started, and initialize() cannot wait "
                "for it on an event loop: await provider.start() before set_provider_and_wait"
            )
        waiter = _Waiter()
        with self._lock:
            self._waiter = waiter
        try:
            if not waiter.woken.wait(self._ready_timeout):
                raise ProviderNotReadyError(
                    f"ApolloProvider: the ApolloClient was not started within "
                    f"{self._ready_timeout} s: await provider.start() on the app's event loop "
                    "(e.g. in its lifespan)"
                )
        finally:
            with self._lock:
                self._waiter = None
            waiter.returned.set()
        if waiter.errors:
            raise waiter.errors[0]

    def shutdown(self) -> None:
        """Called by the SDK: stop following the client, and close it if the provider owns it.

        An owned :class:`ApolloClient` is closed on its own loop (from that loop's thread the
        close is scheduled there; prefer ``await provider.aclose()`` in async apps).
        """
        self._unsubscribe()
        if not self._owns:
            return
        self._owns = False
        client = self._client
        if isinstance(client, SyncApolloClient):
            client.close()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(client.aclose())  # handed to the client's own loop if it runs
            return
        task = loop.create_task(client.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    # ------------------------------------------------------------------ async lifecycle

    async def start(self) -> None:
        """Start the client on this event loop (unless it runs already), then go READY.

        For async apps, in the lifespan. Emits ``PROVIDER_READY`` (through the SDK's
        ``initialize()`` if it is waiting for this), or ``PROVIDER_ERROR`` and raises if
        the client cannot start.
        """
        self._subscribe()
        client = self._client
        try:
            if isinstance(client, SyncApolloClient):
                if client.state is ClientState.CREATED and not client.sources:
                    await asyncio.to_thread(client.start)
                    self._owns = True
            elif client.state is not ClientState.RUNNING:
                await client.start()
                self._owns = True
            self._loaded()
        except Exception as exc:
            if self._hand_over(exc) is None:
                self.emit_provider_error(
                    ProviderEventDetails(
                        message=f"ApolloProvider could not start: {exc}",
                        error_code=ErrorCode.PROVIDER_NOT_READY,
                    )
                )
            raise
        waiter = self._hand_over(None)
        if waiter is None:
            self.emit_provider_ready(ProviderEventDetails())
            self._check_health()
            return
        # The SDK emits READY once initialize() has returned, on its own thread: say it here
        # as well, so that the SDK reports READY by the time start() returns. Health is then
        # told by the first evaluation (a STALE before the SDK's READY would be overwritten).
        await asyncio.to_thread(waiter.returned.wait, 5.0)
        with self._lock:
            self._stale, self._view = False, None
        self.emit_provider_ready(ProviderEventDetails())

    async def aclose(self) -> None:
        """Stop following the client, and close it if :meth:`start` started it."""
        self._unsubscribe()
        if self._owns:
            self._owns = False
            if isinstance(self._client, SyncApolloClient):
                await asyncio.to_thread(self._client.close)
            else:
                await self._client.aclose()

    async def __aenter__(self) -> ApolloProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _hand_over(self, error: BaseException | None) -> _Waiter | None:
        """Wake an ``initialize()`` waiting in this process and return it (the SDK then
        emits READY or ERROR); None if none waits here."""
        with self._lock:
            waiter = self._waiter
            if waiter is None or waiter.pid != os.getpid():
                return None  # none, or one of the parent's (its thread did not fork)
            self._waiter = None
        if error is not None:
            waiter.errors.append(error)
        waiter.woken.set()
        return waiter

    # ------------------------------------------------------------------ following releases

    def _subscribe(self) -> None:
        with self._lock:
            if self._subscribed:
                return
            self._subscribed = True
        self._client.add_listener(self._on_release, namespaces=[self._namespace])

    def _unsubscribe(self) -> None:
        with self._lock:
            if not self._subscribed:
                return
            self._subscribed = False
        self._client.remove_listener(self._on_release)

    def _loaded(self) -> None:
        """The client has values: load the flag set (targeting mode)."""
        snap = self._client.snapshot(self._namespace)
        self._previous = snap.as_properties().items
        if self._flags is not None:
            try:
                self._flags.load(snap)
            except ParseError:
                self._broken = True  # a good release emits READY again
                raise  # a bad flag set at start: PROVIDER_ERROR

    def _on_release(self, event: ConfigChangeEvent) -> None:
        """A listener of the client (its listener thread): each release of the namespace."""
        snap = event.snapshot
        if self._flags is not None:
            try:
                changed = self._flags.load(snap)
            except ParseError as exc:
                logger.warning("ApolloProvider: %s; the previous flag set stays", exc)
                self._broken = True
                self.emit_provider_error(
                    ProviderEventDetails(message=str(exc), error_code=ErrorCode.PARSE_ERROR)
                )
                return
            if self._broken:
                self._broken = False
                self.emit_provider_ready(ProviderEventDetails(message="a valid flag set again"))
        elif snap.format == "properties":
            changed = sorted(event.changed_keys)
        else:
            items = snap.as_properties().items
            changed = sorted(diff_items(snap.name, self._previous or {}, items))
        self._previous = snap.as_properties().items
        self._check_health(snap)
        self.emit_provider_configuration_changed(
            ProviderEventDetails(flags_changed=changed, metadata=dict(_flags.metadata_of(snap)))
        )

    def _check_health(self, snap: NamespaceSnapshot | None = None) -> None:
        """STALE while serving the disk cache or with a degraded sharing group; READY after."""
        if snap is None:
            try:
                snap = self._client.snapshot(self._namespace)
            except ApolloError:
                return
        reason = None
        if snap.source is Source.CACHE:
            reason = f"namespace {self._namespace!r} is served from the disk cache"
        else:
            degraded = self._client.stats().degraded
            if degraded is not None:
                reason = f"degraded: {degraded}"
        self._set_stale(reason)

    def _set_stale(self, reason: str | None) -> None:
        if not hasattr(self, "_on_emit"):
            return  # not set in the SDK (yet): attach() starts over
        with self._lock:
            was, self._stale = self._stale, reason is not None
        if reason is not None and not was:
            self.emit_provider_stale(ProviderEventDetails(message=reason))
        elif reason is None and was:
            self.emit_provider_ready(ProviderEventDetails(message="serving from Apollo again"))

    # ------------------------------------------------------------------ resolution

    def _plain(self, kind: str, key: str, default: Any) -> FlagResolutionDetails[Any]:
        try:
            snap = self._client.snapshot(self._namespace)
        except ApolloError as exc:
            return _flags.error(default, ErrorCode.PROVIDER_NOT_READY, str(exc))
        view = self._view
        if view is None or view.snapshot is not snap:
            view = self._see(snap)
        raw = view.items.get(key)
        if raw is None:
            return _flags.error(
                default,
                ErrorCode.FLAG_NOT_FOUND,
                f"flag {key!r} is not a key of namespace {self._namespace!r}",
            )
        try:
            value = _flags.CONVERTERS[kind](raw)
        except _flags.Mismatch as exc:
            return _flags.error(
                default,
                exc.code,
                f"flag {key!r} in namespace {self._namespace!r} is not {exc.expected}",
            )
        return FlagResolutionDetails(
            value, reason=view.reason, variant=view.variant, flag_metadata=view.metadata
        )

    def _see(self, snap: NamespaceSnapshot) -> _flags.View:
        """A new release (or source) of the namespace: its view, and a health check."""
        view = self._view = _flags.View(snap)
        if snap.source is Source.CACHE and not self._stale:
            self._set_stale(f"namespace {self._namespace!r} is served from the disk cache")
        elif snap.source is Source.REMOTE and self._stale:
            self._check_health(snap)
        return view

    def _resolve(
        self, kind: str, key: str, default: Any, context: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        flags = self._flags
        if flags is None:
            return self._plain(kind, key, default)
        try:
            snap = self._client.snapshot(self._namespace)
        except ApolloError as exc:
            return _flags.error(default, ErrorCode.PROVIDER_NOT_READY, str(exc))
        if flags.loaded is None:
            try:
                flags.load(snap)  # e.g. a forked worker whose parent never loaded the set
            except ParseError as exc:
                return _flags.error(default, ErrorCode.PARSE_ERROR, str(exc))
        view = self._view
        if view is None or view.snapshot is not snap:
            self._see(snap)  # a new release or source: a health check
        return flags.resolve(kind, key, default, context)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """A boolean flag: true/false (also yes/no, on/off, 1/0) in plain mode."""
        return self._resolve("boolean", flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """A string flag: the value as it is in plain mode."""
        return self._resolve("string", flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """An integer flag."""
        return self._resolve("integer", flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """A float flag (finite)."""
        return self._resolve("float", flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """An object flag: a JSON object or array (``PARSE_ERROR`` if not JSON)."""
        return self._resolve("object", flag_key, default_value, evaluation_context)

    # The async resolvers never wait for I/O either: the same lookups, awaited.

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """As :meth:`resolve_boolean_details`."""
        return self._resolve("boolean", flag_key, default_value, evaluation_context)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """As :meth:`resolve_string_details`."""
        return self._resolve("string", flag_key, default_value, evaluation_context)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """As :meth:`resolve_integer_details`."""
        return self._resolve("integer", flag_key, default_value, evaluation_context)

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """As :meth:`resolve_float_details`."""
        return self._resolve("float", flag_key, default_value, evaluation_context)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """As :meth:`resolve_object_details`."""
        return self._resolve("object", flag_key, default_value, evaluation_context)

    def __repr__(self) -> str:
        mode = "targeting" if self._flags is not None else "plain"
        return f"<ApolloProvider {mode} namespace={self._namespace!r} client={self._client!r}>"


class _Waiter:
    """An ``initialize()`` waiting for :meth:`ApolloProvider.start`, in process ``pid``."""

    __slots__ = ("errors", "pid", "returned", "woken")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.woken = threading.Event()
        self.returned = threading.Event()
        self.errors: list[BaseException] = []


#: Closes scheduled by shutdown() on the client's loop, referenced until they finish.
_closing: set[asyncio.Task[None]] = set()

#: Every provider of this process, for the fork hook below.
_providers: weakref.WeakSet[ApolloProvider] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A thread of the parent (the SDK's initialize()) may have held a provider's lock at
    fork: the child gets fresh ones. A parent's waiting initialize() is not the child's."""
    for provider in list(_providers):
        provider._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
