"""The follower's half of sharing: its connection to the leader, and the releases it applies.

A follower holds no connection to Apollo while its leader answers: it applies each pushed
release that is newer than the one it holds (notification-id order; for one id, the release
Apollo confirmed later), through the store like any source, and fires its own listeners.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from .._core.store import NamespaceStore
from .._core.store import Release as Delivered
from .._core.supervise import Progress, fault
from .._exceptions import DecryptionError
from .._models import Source
from . import timing
from .held import held_states
from .rendezvous import ShareUnavailable, check_peer, check_socket_owner
from .stream import Inbox
from .wire import (
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Refuse,
    Release,
    Resync,
    Welcome,
    WireError,
    encode,
)

__all__ = ["Link"]

logger = logging.getLogger("aioapollo")


class Link:
    """A follower's connection to its leader: what it last heard, and the stream itself."""

    def __init__(self, store: NamespaceStore, fingerprint: str) -> None:
        self._store = store
        self.fingerprint = fingerprint
        self._namespaces = tuple(store.records)
        self._inbox: Inbox | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.leader_pid: int | None = None
        self.leader_healthy = False
        self.leader_poll_success: float | None = None
        #: Whether the last heartbeat showed this follower holding what the leader holds.
        self.in_sync = True
        #: The leader said goodbye: its end is a handover, not a death.
        self.goodbye = False

    @property
    def connected(self) -> bool:
        return self._inbox is not None

    async def connect(self, path: Path) -> None:
        """Connect to the leader listening on ``path`` and be welcomed into its group.

        Raises:
            ShareUnavailable: The socket or the leader is not ours, or it refused us.
            OSError, WireError, TimeoutError: No leader (yet), or it did not answer.
        """
        check_socket_owner(path)  # raises FileNotFoundError: no leader (yet)
        reader, writer = await asyncio.open_unix_connection(str(path))
        self._inbox, self._writer = Inbox(reader), writer
        check_peer(writer.get_extra_info("socket"))
        hello = Hello(fingerprint=self.fingerprint, pid=os.getpid())
        writer.write(encode(hello.to_wire()))
        async with asyncio.timeout(timing.HANDSHAKE_TIMEOUT):
            answer = await self._inbox.next()
        if isinstance(answer, Refuse):
            raise ShareUnavailable(f"the leader refused this client: {answer.reason}")
        if not isinstance(answer, Welcome) or answer.fingerprint != self.fingerprint:
            raise WireError("the leader did not welcome this client")
        self.leader_pid = answer.leader_pid
        self.goodbye = False

    async def read_until_complete(self) -> None:
        """Read releases until every namespace is loaded and a heartbeat confirms it."""
        assert self._inbox is not None
        while True:
            message = await self._inbox.next()
            if message is None:
                raise ConnectionResetError("the leader closed the connection")
            await self.handle(message)
            if isinstance(message, Heartbeat) and set(message.states) >= set(self._namespaces):
                held = held_states(self._store)
                if all(held[n][1] is not None or message.states[n][1] is None for n in held):
                    return

    async def handle(self, message: Message) -> None:
        if isinstance(message, Goodbye):
            self.goodbye = True
        elif isinstance(message, Release):
            await self.apply(message)
        elif isinstance(message, Heartbeat):
            self.leader_pid = message.leader_pid
            self.leader_healthy = message.healthy
            self.leader_poll_success = message.last_poll_success
            held = held_states(self._store)
            behind = [
                name
                for name, (nid, key) in message.states.items()
                if name in held and (nid > held[name][0] or (key and held[name][1] is None))
            ]
            self.in_sync = all(
                held.get(name) == state for name, state in message.states.items() if name in held
            )
            if behind and self._writer is not None:
                self._writer.write(encode(Resync().to_wire()))

    async def apply(self, release: Release) -> bool:
        """As a follower: hand a pushed release to the store if it is newer than the one
        held (notification-id order; for one id, the one Apollo confirmed later wins)."""
        record = self._store.records.get(release.namespace)
        if record is None:
            return False
        held = record.snapshot
        synced = record.synced_at
        if release.synced_at is not None and (synced is None or release.synced_at > synced):
            record.synced_at = release.synced_at
        if held is None:
            newer = True
        elif release.notification_id != record.notification_id:
            newer = release.notification_id > record.notification_id
        elif release.release_key == held.release_key and release.source == held.source.value:
            newer = False
        elif held.source is not Source.REMOTE and release.source == Source.REMOTE.value:
            newer = True
        else:  # same id, another release (a safety refresh): the later confirmed one wins
            newer = (release.synced_at or 0.0) > (synced or 0.0)
        if not newer:
            return False
        try:
            source = Source(release.source)
        except ValueError:
            source = Source.REMOTE
        delivered = Delivered(
            namespace=release.namespace,
            items=release.items,
            release_key=release.release_key,
            source=source,
            origin="leader",
            notification_id=release.notification_id,
            messages=release.messages,
        )
        try:
            # Values as Apollo sent them (ENC(...) too): this process decrypts for itself.
            await self._store.deliver(delivered, notify=held is not None)
        except DecryptionError:
            # Refused (said already): keep the last good values, and move on to the
            # leader's position so its heartbeats do not ask for it again and again.
            self._store.advance(release.namespace, release.notification_id, release.messages)
            return False
        return True

    def disconnect(self) -> None:
        writer, self._writer, self._inbox = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def follow(
        self,
        progress: Progress,
        degrade: Callable[[str], Awaitable[None]],
        recover: Callable[[], Awaitable[None]],
        degraded: Callable[[], bool],
    ) -> None:
        """Read the leader's stream until it ends; while it is silent, ``degrade`` (poll
        Apollo from this process), and ``recover`` on its next heartbeat."""
        assert self._inbox is not None
        inbox = self._inbox
        try:
            while True:
                try:
                    message = await inbox.next(within=timing.LEADER_SILENCE)
                except TimeoutError:
                    await degrade(
                        f"the leader (pid {self.leader_pid}) sent nothing for "
                        f"{timing.LEADER_SILENCE:g} s; polling Apollo from this process"
                    )
                    message = await inbox.next()
                if message is None:
                    return
                fault("share.follow")
                if isinstance(message, Goodbye):
                    self.goodbye = True
                    return
                await self.handle(message)
                if isinstance(message, Heartbeat) and degraded():
                    await recover()
                progress.done()
        except (OSError, WireError) as exc:
            logger.debug("leader connection ended: %s", exc)
        finally:
            self.disconnect()

    def forked(self) -> tuple[list[int], list[object]]:
        """In a forked child: forget the connection; returns the inherited descriptor to
        close and the objects to keep referenced (never finalized)."""
        fds: list[int] = []
        if self._writer is not None:
            fds.append(self._writer.get_extra_info("socket").fileno())
        kept: list[object] = [self._writer, self._inbox]
        self._writer = self._inbox = None
        return fds, kept
