"""ApolloTestServer: an in-process Apollo config service on a real socket, for tests and dev."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from types import MappingProxyType, TracebackType
from typing import Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ._faults import Reply, apply_fault, cut_after, take_fault
from ._http import gson_error, parse_query, split_target
from ._longpoll import LongPollHub
from ._models import Fault, Matcher, OpenApiExchange, RecordedRequest
from ._portal import Consumer, ItemChange, PortalState
from ._routes.apollo import route
from ._routes.control import CONTROL_PREFIX, handle_control
from ._routes.openapi import OPENAPI_PREFIX, handle_openapi
from ._store import DEFAULT_CLUSTER, ReleaseStore

__all__ = ["ApolloTestServer"]

logger = logging.getLogger("aioapollo.testing")
_TOO_LARGE = "org.springframework.web.server.PayloadTooLargeException"


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server to this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name, or "" (every address)


class ApolloTestServer:
    """A faithful Apollo config service (with its meta service) on 127.0.0.1.

    Use it as ``async with ApolloTestServer() as server:`` or call :meth:`start` and
    :meth:`close`. Releases live in :attr:`store`; several servers may share one store
    (same releases, and a publish wakes the held long polls of all of them).

    Args:
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        hold_seconds: How long ``/notifications/v2`` holds a poll before its 304 (the real
            server: 60).
        store: The releases to serve; a new empty :class:`ReleaseStore` by default.
        incremental_sync: Answer ``/configs`` with incremental changes when the client's
            releaseKey is known (the server flag ``config-service.incremental.change.enabled``).
        time_tolerance_seconds: Allowed clock skew of signed requests.
        clock: Returns the server's time in epoch milliseconds (for signature tests).
        config_services: URLs listed by ``/services/config``; this server's URL by default.
        max_requests: Keep only this many recorded requests (all by default).
        state_file: Keep the releases in this file, so a server started again with it
            serves them again and keeps growing the notification ids (see
            :class:`ReleaseStore`); its ids also start above the current time in
            milliseconds, so they exceed those of any earlier run. Not with ``store``.
        control_token: Require this token, in the ``X-Aioapollo-Control-Token`` header, on
            every ``/__aioapollo__/`` control request. On a ``host`` other than a loopback
            address a token is always required: one is generated when none is given (read
            it from :attr:`control_token`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hold_seconds: float = 60.0,
        store: ReleaseStore | None = None,
        incremental_sync: bool = False,
        time_tolerance_seconds: float = 60.0,
        clock: Callable[[], int] | None = None,
        config_services: Iterable[str] | None = None,
        max_requests: int | None = None,
        state_file: str | os.PathLike[str] | None = None,
        control_token: str | None = None,
    ) -> None:
        if state_file is not None:
            if store is not None:
                raise ValueError("give store or state_file, not both")
            store = ReleaseStore(state_file=state_file, notification_id_base=_now_ms())
        if control_token is not None and not control_token:
            raise ValueError("control_token must not be empty")
        if control_token is None and not is_loopback(host):
            control_token = secrets.token_hex(20)  # hex: never starts with "-", unlike a flag
        self._control_token = control_token
        self.host = host
        self.hold_seconds = hold_seconds
        self.incremental_sync = incremental_sync
        self.time_tolerance_seconds = time_tolerance_seconds
        self.clock: Callable[[], int] = clock or _now_ms
        self._store = store if store is not None else ReleaseStore()
        self._wanted_port = port
        self._config_services = list(config_services) if config_services is not None else None
        self._state = "new"
        self._port: int | None = None
        self.max_requests = max_requests
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._hub: LongPollHub | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closing: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: Called with every ``/openapi/`` request and its answer (e.g. to check them against
        #: the OpenAPI schemas in a test); runs on the server's loop and must not block.
        self.openapi_observer: Callable[[OpenApiExchange], None] | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else self._state
        return f"<ApolloTestServer {where}>"

    # --------------------------------------------------------------------------- lifecycle

    async def start(self) -> Self:
        """Start listening. Raises ``RuntimeError`` if started before."""
        if self._state != "new":
            raise RuntimeError(f"an ApolloTestServer cannot be started when {self._state}")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._hub = LongPollHub()
        app = web.Application()
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch)  # %0A too
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, self._wanted_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._state = "closed"
            raise
        self._port = runner.addresses[0][1]
        self._unsubscribe = self._store.subscribe(self._on_release)
        self._state = "started"
        logger.info("Apollo test server listening on %s", self.url)
        return self

    async def close(self) -> None:
        """Stop: held long polls get their 304, hung requests are dropped. Idempotent."""
        if self._state in ("closed", "closing"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._closing is not None:
            self._closing.set()
        if self._hub is not None:
            self._hub.release_all()
        if self._runner is not None:
            await self._runner.cleanup()
        self._state = "closed"

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------------------- properties

    @property
    def store(self) -> ReleaseStore:
        """The releases this server serves."""
        return self._store

    @property
    def portal(self) -> PortalState:
        """The portal side (working items, releases with ids, locks, OpenAPI consumers)."""
        return self._store.attached(PortalState)

    @property
    def namespace_lock(self) -> bool:
        """Apollo's ``namespace.lock.switch`` for the portal OpenAPI (settable; off)."""
        return self.portal.namespace_lock

    @namespace_lock.setter
    def namespace_lock(self, on: bool) -> None:
        self.portal.namespace_lock = bool(on)

    @property
    def value_length_limit(self) -> int:
        """Apollo's ``item.value.length.limit`` for the portal OpenAPI (settable; 20,000)."""
        return self.portal.value_length_limit

    @value_length_limit.setter
    def value_length_limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("value_length_limit must be positive")
        self.portal.value_length_limit = int(limit)

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``, without a trailing slash."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def config_services(self) -> list[str]:
        """The config-service URLs ``/services/config`` lists (settable)."""
        if self._config_services is None:
            return [self.url] if self._port is not None else []
        return list(self._config_services)

    @config_services.setter
    def config_services(self, urls: Iterable[str] | None) -> None:
        self._config_services = list(urls) if urls is not None else None

    @property
    def control_token(self) -> str | None:
        """The token control requests must send (``None``: none needed, on loopback)."""
        return self._control_token

    @property
    def hub(self) -> LongPollHub:
        """The held long polls (internal)."""
        if self._hub is None:
            raise RuntimeError("the server is not started")
        return self._hub

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has begun."""
        return self._state in ("closing", "closed")

    @property
    def held_polls(self) -> int:
        """How many ``/notifications/v2`` requests are held right now."""
        return self._hub.held if self._hub is not None else 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """The Apollo requests received so far, oldest first (a copy)."""
        return list(self._requests)

    @property
    def faults(self) -> list[Fault]:
        """The faults still waiting to be applied (a copy)."""
        return [fault for fault in self._faults if not fault.exhausted]

    # ----------------------------------------------------------------- driving the server

    def publish(
        self,
        app_id: str,
        namespace: str,
        data: Mapping[str, str] | str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        public: bool = False,
        gray_ips: Iterable[str] | None = None,
        gray_labels: Iterable[str] | None = None,
        gray_client_app_id: str | None = None,
    ) -> str:
        """Release a namespace and return its releaseKey (see :meth:`ReleaseStore.publish`).

        Safe to call from any thread.
        """
        return self._store.publish(
            app_id,
            namespace,
            data,
            cluster=cluster,
            public=public,
            gray_ips=gray_ips,
            gray_labels=gray_labels,
            gray_client_app_id=gray_client_app_id,
        )

    def delete_release(self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER) -> None:
        """Withdraw a namespace's release (then 404); a release message like a publish."""
        self._store.delete_release(app_id, namespace, cluster)

    def clear_gray(self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER) -> None:
        """Delete a namespace's gray release."""
        self._store.clear_gray(app_id, namespace, cluster)

    def create_namespace(self, app_id: str, namespace: str, *, public: bool = False) -> str:
        """Make a namespace exist without a release; returns its stored name."""
        return self._store.create_namespace(app_id, namespace, public=public)

    def set_secret(self, app_id: str, secret: str | Iterable[str] | None) -> None:
        """Require signed requests for an app (``None`` removes the secret)."""
        self._store.set_secret(app_id, secret)

    def add_openapi_token(
        self,
        token: str,
        *,
        apps: Iterable[str] = (),
        namespaces: Iterable[tuple[str, str]] = (),
        release: bool = True,
        create_apps: bool = False,
        user: str | None = None,
        rate_limit: float | None = None,
    ) -> Consumer:
        """Accept ``token`` on the portal OpenAPI (``/openapi/v1/...``) with these grants.

        Args:
            token: What clients send in the ``Authorization`` header.
            apps: Apps it may do everything in; ``"*"`` for every app.
            namespaces: ``(appId, namespace)`` pairs it may read and change.
            release: Whether the ``namespaces`` grants include publishing and rollback.
            create_apps: Whether it may create apps.
            user: Make it an Apollo 3.0 user access token of this portal user (the token
                must start with ``apollo_pat_``; clients send ``Bearer <token>``): every
                change is recorded under this user.
            rate_limit: Requests per second it may make; beyond that the server answers 429
                with a ``Retry-After`` header.
        """
        consumer = Consumer(
            token,
            frozenset(apps),
            frozenset((app, ns.removesuffix(".properties").lower()) for app, ns in namespaces),
            release,
            create_apps,
            user,
            rate_limit,
        )
        self.portal.add_consumer(consumer)
        return consumer

    def item_history(
        self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER
    ) -> list[ItemChange]:
        """The changes made through the portal to a namespace's working items, oldest first."""
        return self.portal.history(app_id, cluster, namespace)

    def inject(
        self,
        match: Matcher = "/",
        *,
        method: str | None = None,
        times: int | None = 1,
        status: int | None = None,
        body: str | bytes | None = None,
        delay: float | None = None,
        drop: bool = False,
        reset: bool = False,
        garbage: bytes | str | bool | None = None,
        hang: bool = False,
        cut_after: float | None = None,
    ) -> Fault:
        """Make the next ``times`` matching requests fail; returns the :class:`Fault`.

        Faults are tried in the order added; the first matching one is applied.
        ``cut_after=N`` puts a reverse proxy in front that answers 504 (or ``status``, or
        closes the connection with ``drop``) when no answer is ready after N seconds: with
        ``N <= hold_seconds`` every held long poll ends that way instead of with its 304.
        """
        fault = Fault(
            match=match,
            method=method,
            times=times,
            status=status,
            body=body,
            delay=delay,
            drop=drop,
            reset=reset,
            garbage=garbage,
            hang=hang,
            cut_after=cut_after,
        )
        self._faults.append(fault)
        return fault

    def add_fault(self, fault: Fault) -> Fault:
        """Add a ready-made :class:`Fault`."""
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        self._faults.clear()

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._requests.clear()

    async def wait_for_polls(self, count: int = 1) -> None:
        """Wait until at least ``count`` long polls are held.

        Wrap it in ``asyncio.timeout(...)`` to bound the wait.
        """
        await self.hub.wait_held(count)

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool]
    ) -> RecordedRequest:
        """Wait for a recorded request (past or future) matching ``predicate``.

        The predicate is checked again whenever a request arrives or is answered, so it can
        test ``status``. Wrap it in ``asyncio.timeout(...)`` to bound the wait.
        """
        changed = self._changed
        if changed is None:
            raise RuntimeError("the server is not started")
        while True:
            changed.clear()
            for record in self._requests:
                if predicate(record):
                    return record
            await changed.wait()

    # --------------------------------------------------------------------------- internals

    def _on_release(self, message: str, notification_id: int) -> None:
        loop, hub = self._loop, self._hub
        if loop is None or hub is None or self._state != "started":
            return
        if threading.get_ident() == self._loop_thread:
            hub.on_message(message, notification_id)
        else:
            with suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(hub.on_message, message, notification_id)

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return await handle_control(self, request)
        query = parse_query(split_target(request.raw_path)[1])
        record = RecordedRequest(
            method=request.method,
            path=path,
            raw_path=request.raw_path,
            query=MappingProxyType(query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            time=time.time(),
            remote=request.remote,
        )
        self._requests.append(record)
        if self.max_requests is not None and len(self._requests) > self.max_requests:
            del self._requests[: len(self._requests) - self.max_requests]
        self._signal()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", request.method, request.raw_path)
        fault = take_fault(self._faults, record)
        if fault is not None:
            record.fault = fault
            if fault.exhausted:
                self._faults.remove(fault)
        answer = self._answer(fault, request, query)
        if fault is not None and fault.cut_after is not None:
            response, status = await cut_after(fault, request, answer)
        else:
            response, status = await answer
        record.status = status
        self._signal()
        return response

    async def _answer(
        self, fault: Fault | None, request: web.Request, query: dict[str, str]
    ) -> Reply:
        """The server's own answer, as altered by ``fault``."""
        if fault is not None:
            assert self._closing is not None
            response, status = await apply_fault(fault, request, self._closing)
            if response is not None:
                return response, status
        try:
            if request.path.startswith(OPENAPI_PREFIX):
                response = await handle_openapi(self, request)
            else:
                response = await route(self, request, query)
        except web.HTTPRequestEntityTooLarge as exc:  # over client_max_size, as a proxy does
            response = gson_error(413, exc.text or "Payload Too Large", _TOO_LARGE)
        except Exception:
            logger.exception("test server failed on %s", request.raw_path)
            response = gson_error(500, "test server error", "java.lang.RuntimeException")
        return response, response.status
