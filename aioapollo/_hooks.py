"""Observability hooks: what the client reports about polls, fetches, changes and errors.

Subclass :class:`Hooks`, override the methods you need and pass instances to
``ApolloClient(..., hooks=[...])``. Hooks are plain synchronous calls made on the event loop
right where things happen, so they must be quick (count, time, set a gauge). They never see
config values or the access-key secret. A hook that raises is logged once and otherwise
ignored: it can never break polling. A client without hooks builds no event objects at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ._exceptions import ApolloError, ApolloHTTPStatusError, LoopCrashedError
from ._models import Role, Source

__all__ = [
    "ChangeEvent",
    "ErrorEvent",
    "FetchEvent",
    "HookSet",
    "Hooks",
    "PollEvent",
    "RoleEvent",
]

logger = logging.getLogger("aioapollo")


@dataclass(frozen=True, slots=True)
class PollEvent:
    """One long poll on ``/notifications/v2`` finished.

    Attributes:
        app_id: The client's appId.
        service: The config service base URL that was polled (``None`` if none was known).
        duration: Seconds the request took (a long poll is held up to the server's hold time).
        status: 200 (something changed), 304 (nothing did), another code, or ``None`` when no
            HTTP answer arrived (connection error, timeout).
        notified: The namespaces a 200 named (as the server spells them).
        error: The error when the poll failed, else ``None``.
        cut: The failure was a proxy ending the poll at about the server's hold time (a 502,
            504 or closed connection): handled like a 304, without backoff.
    """

    app_id: str
    service: str | None
    duration: float
    status: int | None
    notified: tuple[str, ...] = ()
    error: ApolloError | None = None
    cut: bool = False

    @property
    def ok(self) -> bool:
        """True for a 200 or 304."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class FetchEvent:
    """One ``/configs`` request for a namespace finished.

    Attributes:
        app_id: The client's appId.
        namespace: The namespace as configured on the client.
        service: The config service base URL asked.
        duration: Seconds the request took.
        status: 200 (new values), 304 (unchanged), another code, or ``None`` (no answer).
        error: The error when the request failed, else ``None``.
    """

    app_id: str
    namespace: str
    service: str
    duration: float
    status: int | None
    error: ApolloError | None = None

    @property
    def ok(self) -> bool:
        """True for a 200 or 304."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A namespace got new values. Carries key names only, never values.

    Attributes:
        app_id: The client's appId.
        namespace: The namespace as configured on the client.
        keys: The keys that were added, modified or deleted.
        release_key: The release now held (``None`` for the cache or an empty start).
        source: Where the new values came from.
        initial: True for the first load in this process (listeners are not called for it).
        size: How many keys the namespace holds now (``None`` if unknown).
    """

    app_id: str
    namespace: str
    keys: frozenset[str]
    release_key: str | None
    source: Source
    initial: bool
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An operation failed; the client retries it on its own.

    Attributes:
        app_id: The client's appId.
        operation: ``"poll"``, ``"fetch"`` or ``"discovery"``; or ``"loop:<name>"`` when a
            background loop crashed on an unexpected exception and is restarted (``name``:
            ``poll``, ``refresh``, ``listeners``, ``cache``, ``share``, ``share-send``).
        error: The error (its message never holds config values or the secret): for a loop,
            a :class:`LoopCrashedError` whose ``__cause__`` is what the loop raised.
        namespace: The namespace, for ``"fetch"``.
    """

    app_id: str
    operation: str
    error: ApolloError
    namespace: str | None = None

    @property
    def kind(self) -> str:
        """A short label for metrics: the error class name, plus the status for HTTP errors
        and the crash's class for a loop (``LoopCrashedError:KeyError``)."""
        name = type(self.error).__name__
        if isinstance(self.error, ApolloHTTPStatusError):
            return f"{name}:{self.error.status}"
        if isinstance(self.error, LoopCrashedError):
            return f"{name}:{self.error.crash}"
        return name


@dataclass(frozen=True, slots=True)
class RoleEvent:
    """A client's role in its host's sharing group changed (``share_poll=True``).

    Attributes:
        app_id: The client's appId.
        role: :attr:`Role.LEADER` (polls Apollo, pushes to the others) or
            :attr:`Role.FOLLOWER` (a string enum: it equals ``"leader"``/``"follower"``).
        previous: The role before: ``Role.SOLO`` at start, else the other role.
        leader_pid: The leader's pid as this client knows it.
        reason: Why, in words (first of its group, took over from a dead leader, ...).
    """

    app_id: str
    role: Role
    previous: Role
    leader_pid: int | None
    reason: str


class Hooks:
    """Base class of observability hooks: every method is a no-op; override what you need.

    Example::

        class CountPolls(aioapollo.Hooks):
            def __init__(self) -> None:
                self.polls = 0

            def on_poll(self, event: aioapollo.PollEvent) -> None:
                self.polls += 1

        client = aioapollo.ApolloClient("my-app", config_server=url, hooks=[CountPolls()])
    """

    def on_poll(self, event: PollEvent) -> None:
        """A long poll finished (successfully or not)."""

    def on_fetch(self, event: FetchEvent) -> None:
        """A ``/configs`` request finished (successfully or not)."""

    def on_change(self, event: ChangeEvent) -> None:
        """A namespace's values changed (including its first load)."""

    def on_error(self, event: ErrorEvent) -> None:
        """A poll, fetch or service discovery failed, or a background loop crashed."""

    def on_role(self, event: RoleEvent) -> None:
        """This client became its sharing group's leader or a follower (a failover)."""


class HookSet:
    """The hooks of one client; calls each of them and contains their failures."""

    __slots__ = ("_failed", "_hooks")

    def __init__(self, hooks: Hooks | Iterable[Hooks] | None) -> None:
        if hooks is None:
            items: tuple[Hooks, ...] = ()
        elif isinstance(hooks, Hooks):
            items = (hooks,)
        else:
            items = tuple(hooks)
        for hook in items:
            if not isinstance(hook, Hooks):
                raise TypeError(f"hooks must be aioapollo.Hooks instances, not {type(hook)!r}")
        self._hooks = items
        self._failed: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def poll(self, event: PollEvent) -> None:
        """Report a finished long poll."""
        for hook in self._hooks:
            self._call(hook, "on_poll", event)

    def fetch(self, event: FetchEvent) -> None:
        """Report a finished ``/configs`` request."""
        for hook in self._hooks:
            self._call(hook, "on_fetch", event)

    def change(self, event: ChangeEvent) -> None:
        """Report new values of a namespace."""
        for hook in self._hooks:
            self._call(hook, "on_change", event)

    def error(self, event: ErrorEvent) -> None:
        """Report a failed operation."""
        for hook in self._hooks:
            self._call(hook, "on_error", event)

    def role(self, event: RoleEvent) -> None:
        """Report a change of sharing role."""
        for hook in self._hooks:
            self._call(hook, "on_role", event)

    def _call(self, hook: Hooks, method: str, event: object) -> None:
        try:
            getattr(hook, method)(event)
        except Exception:
            # Logged with its traceback the first time only: a broken metrics exporter must
            # not flood the log on every poll either.
            key = (id(hook), method)
            if key in self._failed:
                logger.debug("hook %s.%s failed again", type(hook).__qualname__, method)
            else:
                self._failed.add(key)
                logger.exception(
                    "hook %s.%s failed; the client carries on", type(hook).__qualname__, method
                )
