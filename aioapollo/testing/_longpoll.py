"""Long-poll bookkeeping of ``/notifications/v2``: parsing, the immediate check, held requests.

Follows ``NotificationControllerV2``: a request is registered under its watch keys *before*
the latest release-message ids are checked, so no release can slip between the two; a held
request is answered by the first release message for one of its keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._apollo.wire import strip_properties
from ._store import ReleaseStore

__all__ = ["ClientNamespace", "LongPollHub", "Waiter", "immediate_reply", "parse_notifications"]

Notifications = list[dict[str, Any]]


@dataclass(frozen=True)
class ClientNamespace:
    """One namespace of a poll: the name to answer with and the client's notificationId."""

    reply_name: str
    notification_id: int


def _notification_id(value: Any) -> int:
    # Gson reads a long from a number or a numeric string; a missing field stays 0.
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError("boolean notificationId")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(f"bad notificationId {value!r}")


def parse_notifications(store: ReleaseStore, app_id: str, raw: str) -> dict[str, ClientNamespace]:
    """Parse and normalise the ``notifications`` parameter (``filterNotifications``).

    Returns canonical name → :class:`ClientNamespace`. When two entries normalise to the same
    name, the one with the smaller notificationId is kept. An empty result means the server's
    400 ``invalid notifications format``.
    """
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list):
            return {}
        parsed: list[tuple[str, int]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                return {}
            name = entry.get("namespaceName")
            if name is not None and not isinstance(name, str):
                return {}
            parsed.append((name or "", _notification_id(entry.get("notificationId"))))
    except ValueError:
        return {}
    result: dict[str, ClientNamespace] = {}
    for name, notification_id in parsed:
        if not name:
            continue
        original = strip_properties(name)
        normalized = store.canonical(app_id, original)
        kept = result.get(normalized)
        if kept is not None and kept.notification_id < notification_id:
            continue
        result[normalized] = ClientNamespace(original, notification_id)
    return result


def immediate_reply(
    namespaces: Mapping[str, ClientNamespace],
    keys: Mapping[str, set[str]],
    latest_ids: Mapping[str, int],
) -> Notifications:
    """Entries for every namespace whose newest watch-key id is above the client's id."""
    reply: Notifications = []
    for name, client in namespaces.items():
        known = {key: latest_ids[key] for key in sorted(keys[name]) if key in latest_ids}
        latest = max(known.values(), default=-1)
        if latest > client.notification_id:
            reply.append(
                {
                    "namespaceName": client.reply_name,
                    "notificationId": latest,
                    "messages": {"details": known},
                }
            )
    return reply


@dataclass(eq=False)
class Waiter:
    """A held long poll: its watch keys (lower case) and the reply names to restore."""

    keys: frozenset[str]
    reply_names: Mapping[str, str]
    future: asyncio.Future[Notifications | None] = field(repr=False)
    connected: Callable[[], bool] = field(default=lambda: True, repr=False)


class LongPollHub:
    """The held long polls of one server, woken by release messages.

    All methods must be called on the server's event loop.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, set[Waiter]] = {}
        self._waiters: set[Waiter] = set()
        self._changed = asyncio.Event()

    @property
    def held(self) -> int:
        """How many long polls are held right now."""
        return len(self._waiters)

    @property
    def live_held(self) -> int:
        """How many held long polls still have their client connected.

        A client that went away stays in :attr:`held` until its hold ends (the handler is
        not cancelled), so this is what tells "N clients are listening now".
        """
        return sum(1 for waiter in self._waiters if waiter.connected())

    def register(
        self,
        keys: set[str],
        reply_names: Mapping[str, str],
        connected: Callable[[], bool] | None = None,
    ) -> Waiter:
        """Hold a poll under ``keys`` (watch keys are matched case-insensitively).

        ``connected`` tells whether its client is still there (for :attr:`live_held`).
        """
        loop = asyncio.get_running_loop()
        waiter = Waiter(
            frozenset(key.lower() for key in keys), dict(reply_names), loop.create_future()
        )
        if connected is not None:
            waiter.connected = connected
        for key in waiter.keys:
            self._by_key.setdefault(key, set()).add(waiter)
        self._waiters.add(waiter)
        self._signal()
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        """Forget a poll (answered, timed out or abandoned)."""
        if waiter not in self._waiters:
            return
        self._waiters.discard(waiter)
        for key in waiter.keys:
            waiters = self._by_key.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_key[key]
        self._signal()

    def on_message(self, message: str, notification_id: int) -> None:
        """Answer every poll watching ``message`` with that single namespace."""
        parts = message.split("+", 2)
        if len(parts) < 3 or not parts[2]:
            return
        namespace = parts[2]
        for waiter in list(self._by_key.get(message.lower(), ())):
            if not waiter.future.done():
                waiter.future.set_result(
                    [
                        {
                            "namespaceName": waiter.reply_names.get(namespace, namespace),
                            "notificationId": notification_id,
                            "messages": {"details": {message: notification_id}},
                        }
                    ]
                )
            self.unregister(waiter)

    def release_all(self) -> None:
        """Let every held poll finish as if its hold had timed out (used on close)."""
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_result(None)
            self.unregister(waiter)

    async def wait_held(self, count: int) -> None:
        """Wait until at least ``count`` polls are held."""
        while self.held < count:
            self._changed.clear()
            await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()
