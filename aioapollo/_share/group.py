"""One long poll per host: the leader polls Apollo, followers get its releases over a socket.

The whole design on one page::

    share_dir/ (0700, ours)      <group>.lock   flock: whoever holds it leads
                                 <group>.sock   the leader listens here

    leader = a client that holds the lock: polls Apollo as a solo client does and pushes
             every release (release), and a heartbeat every second, to each follower
    follower = a client that lost the race: holds no connection to Apollo, applies the
             releases it is pushed (only newer ones) and fires its own listeners

    leader dies (EOF)      -> followers race for the lock; the winner leads from the ids it
                              holds; the rest connect to it (WARNING)
    leader closes cleanly  -> it says goodbye first: the same race, logged as a handover (INFO)
    leader silent > 4 s    -> followers poll Apollo themselves ("degraded") and follow again
                              on its next heartbeat
    share_dir removed      -> whoever cannot lead or follow polls Apollo itself at once, and
    while running             keeps re-creating the directory (same checks) and re-electing;
                              a leader whose socket vanished moves into the new directory
    no usable share_dir,   -> solo, one warning
    no peer credentials,
    unusable lock at start
    the leader is full     -> refused with the reason; the process polls Apollo itself and
                              asks again with backoff

The leader accepts connections itself (no asyncio server): a listening socket that exists
before anything awaits, so no cancellation can leak it; at most ``share_max_followers``
followers; at the descriptor limit it backs off and logs once a minute. Followers' frames are
capped at :data:`~aioapollo._share.wire.MAX_FOLLOWER_FRAME` bytes and their hello must arrive
within :data:`HANDSHAKE_TIMEOUT`, so a local peer cannot make the leader buffer anything.

Who shares: clients whose :func:`~aioapollo._config.group_fingerprint` (and wire version)
match. A follower checks the directory's owner and mode, the socket's owner and the leader's
uid (peer credentials); the leader checks each follower's uid: the socket carries values.

Per follower the leader keeps a set of namespaces to send and one heartbeat flag, never a
queue of messages: a slow follower gets the latest release of each namespace when it catches
up, and one that cannot take a frame within :data:`SLOW_FOLLOWER` seconds is disconnected (it
reconnects and is sent everything again).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._config import ClientOptions, group_fingerprint
from .._core.store import NamespaceStore
from .._core.store import Release as Delivered
from .._core.supervise import Progress, Supervisor, fault
from .._exceptions import DecryptionError
from .._models import Role, Source
from .._runtime import process as _process
from .rendezvous import (
    LeaderLock,
    ShareUnavailable,
    check_peer,
    check_socket_owner,
    default_share_dir,
    ensure_private_dir,
    lock_path,
    socket_path,
    supported,
)
from .wire import (
    MAX_FOLLOWER_FRAME,
    PROTOCOL_VERSION,
    Decoder,
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
    parse,
)

__all__ = ["HEARTBEAT_INTERVAL", "LEADER_SILENCE", "Sharing", "SharingHost"]

logger = logging.getLogger("aioapollo")

#: The leader's heartbeat period.
HEARTBEAT_INTERVAL = 1.0
#: A follower that hears nothing from its leader for this long polls Apollo itself. Three
#: missed heartbeats: a leader whose loop is busy for a moment (a slow request, a C
#: extension, a blocked gevent hub) is not taken for dead.
LEADER_SILENCE = 4.0
#: A follower that cannot take a frame for this long is disconnected (it resyncs).
SLOW_FOLLOWER = 10.0
#: How long a follower waits for the leader's answer to its hello.
HANDSHAKE_TIMEOUT = 2.0
#: How long a starting follower waits for a leader's snapshot before loading by itself.
JOIN_TIMEOUT = 3.0
#: Connections that have not said hello yet, at most: past it the leader accepts no more
#: until one ends (they wait in the listen backlog, costing it no descriptor).
MAX_HANDSHAKES = 16
#: The longest pause between two election attempts of a process that cannot share (refused
#: by a full leader, or no usable directory): it polls Apollo itself meanwhile.
REJOIN_MAX = 30.0
#: At the descriptor limit the leader stops accepting for a while; it logs once per this.
ACCEPT_WARN_INTERVAL = 60.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

SOLO, LEADER, FOLLOWER = Role.SOLO, Role.LEADER, Role.FOLLOWER


class SharingHost(Protocol):
    """What sharing needs of its client besides the store: polling Apollo from this process
    (a leader, or a follower whose leader is silent) and the client's health."""

    def start_polling(self) -> None:
        """Start polling Apollo from this process (idempotent)."""

    async def stop_polling(self) -> None:
        """Stop polling Apollo from this process (idempotent)."""

    def healthy(self) -> bool:
        """Whether this client (as a leader) is healthy."""

    def own_poll_time(self) -> float | None:
        """Epoch seconds of this process's own last successful long poll."""


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A change of a client's sharing role, for logs, hooks and tests."""

    role: Role
    previous: Role
    leader_pid: int | None
    reason: str


def share_fingerprint(options: ClientOptions) -> str:
    """The group's name on this host: the options' group and this wire version.

    Two aioapollo versions whose local protocols differ never meet: they form two groups.
    """
    blob = f"{group_fingerprint(options)}/wire-{PROTOCOL_VERSION}".encode()
    return hashlib.sha256(blob).hexdigest()


class Sharing:
    """A client's membership of its sharing group: election, leading, following."""

    def __init__(
        self,
        store: NamespaceStore,
        host: SharingHost,
        options: ClientOptions,
        on_role: Callable[[RoleChange], None] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._host = host
        self._namespaces = tuple(store.records)
        self._options = options
        self._on_role = on_role
        #: Runs the leader's per-follower senders (the client's, which runs :meth:`run` too).
        self._supervisor = supervisor if supervisor is not None else Supervisor(options.app_id)
        self.fingerprint = share_fingerprint(options)
        self.role = SOLO
        self.leader_pid: int | None = None
        self.leader_healthy = False
        self.leader_poll_success: float | None = None
        #: Why this client polls Apollo itself although it follows, if it does.
        self.degraded: str | None = None
        self.failovers = 0
        self._lock: LeaderLock | None = None
        self._socket: Path | None = None
        #: The leader's listening socket, the (st_dev, st_ino) it was bound as, and the task
        #: that accepts on it.
        self._listener: socket.socket | None = None
        self._bound: tuple[int, int] | None = None
        self._accepting: asyncio.Task[None] | None = None
        #: Every connection the leader serves, handshaking or following.
        self._connections: set[asyncio.Task[None]] = set()
        self._handshakes: asyncio.Semaphore | None = None
        self._followers: set[_Follower] = set()
        #: Set by a clean close: followers are told goodbye, not left to find the EOF.
        self._closing = False
        self._loaded = asyncio.Event()
        self._inbox: _Inbox | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._in_sync = True
        self._frames: dict[str, tuple[tuple[int, str | None, float | None], bytes]] = {}
        self._refused_peer_warned = False
        #: The leader we follow said goodbye: its end is a handover, not a death.
        self._goodbye = False

    # ------------------------------------------------------------------ setup

    def prepare(self) -> None:
        """Find the rendezvous (in this process, now: privileges may have been dropped).

        Raises:
            ShareUnavailable: Sharing cannot be used here; the client runs solo.
        """
        if not supported():
            raise ShareUnavailable("this platform has no file locks or peer credentials")
        directory = self._options.share_dir or default_share_dir()
        directory = ensure_private_dir(Path(directory))
        self._socket = socket_path(directory, self.fingerprint)
        self._lock = LeaderLock(lock_path(directory, self.fingerprint))

    @property
    def followers(self) -> int:
        return len(self._followers)

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    def _set_role(self, role: Role, reason: str) -> None:
        previous, self.role = self.role, role
        if role == LEADER:
            self.leader_pid = os.getpid()
        change = RoleChange(role, previous, self.leader_pid, reason)
        # A takeover after the leader said goodbye is a handover, not an incident.
        level = logging.INFO if previous in (SOLO, role) or self._goodbye else logging.WARNING
        logger.log(
            level,
            "ApolloClient(%r) shares group %s as %s (pid %s): %s",
            self._options.app_id,
            self.fingerprint[:16],
            role,
            os.getpid(),
            reason,
        )
        if self._on_role is not None:
            self._on_role(change)

    def try_lead(self) -> bool:
        """Take the leadership if it is free."""
        assert self._lock is not None
        return self._lock.try_acquire()

    # ------------------------------------------------------------------ leading

    def lead(self, reason: str) -> None:
        """Serve followers from this process (the lock is held): listen, then push.

        Synchronous on purpose: the listening socket is ours before anything can be
        cancelled, so :meth:`close` always finds it.

        Raises:
            ShareUnavailable: The socket cannot be bound (the lock is released again).
        """
        try:
            self._listen()
        except ShareUnavailable:
            if self._lock is not None:
                self._lock.release()
            raise
        self._set_role(LEADER, reason)
        self.degraded = None

    def _listen(self) -> None:
        assert self._socket is not None
        path = self._socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead leader's: we hold the lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(128)
            info = os.stat(path)
        except OSError as exc:
            sock.close()
            raise ShareUnavailable(f"cannot listen on {path}: {exc.strerror}") from None
        self._listener, self._bound = sock, (info.st_dev, info.st_ino)
        self._accepting = self._supervisor.spawn(
            "share-accept",
            functools.partial(self._accept_loop, sock),
            task_name=f"aioapollo-share-accept-{self._options.app_id}",
        )

    def _stop_listening(self) -> None:
        """Close the listening socket (connections already accepted stay)."""
        accepting, self._accepting = self._accepting, None
        if accepting is not None:
            accepting.cancel()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            if self._socket is not None and self._socket_is_ours():
                with contextlib.suppress(OSError):
                    self._socket.unlink()
        self._bound = None

    def _socket_is_ours(self) -> bool:
        """Whether the group's socket path is still the socket this leader bound."""
        if self._socket is None or self._bound is None:
            return False
        try:
            info = os.stat(self._socket)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._bound

    async def _accept_loop(self, listener: socket.socket, progress: Progress) -> None:
        """Accept followers; at the descriptor limit back off instead of spinning and logging."""
        loop = asyncio.get_running_loop()
        slots = self._handshakes = asyncio.Semaphore(MAX_HANDSHAKES)
        pause = 0.1
        warned_at: float | None = None
        while True:
            await slots.acquire()  # released when that connection's handshake ends
            try:
                conn, _ = await loop.sock_accept(listener)
            except BaseException as exc:
                slots.release()
                if not isinstance(exc, OSError) or exc.errno not in _OUT_OF_RESOURCES:
                    raise
                now = time.monotonic()
                if warned_at is None or now - warned_at >= ACCEPT_WARN_INTERVAL:
                    warned_at = now
                    logger.warning(
                        "ApolloClient(%r): the sharing leader cannot accept followers: %s; "
                        "pausing (they poll Apollo themselves meanwhile)",
                        self._options.app_id,
                        exc.strerror,
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            task = asyncio.create_task(
                self._serve(conn, slots), name=f"aioapollo-share-peer-{self._options.app_id}"
            )
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
            progress.done()

    def loaded(self) -> None:
        """The leader holds every namespace: followers may be sent its snapshot."""
        self._loaded.set()
        for follower in self._followers:
            follower.dirty.update(self._namespaces)
            follower.wake.set()

    def changed(self, name: str) -> None:
        """A release was installed (or its notification id advanced): push it."""
        if not self._followers or not self._loaded.is_set():
            return
        for follower in self._followers:
            follower.dirty.add(name)
            follower.wake.set()

    def _release_message(self, name: str) -> Release | None:
        """The release held for ``name`` as a message, or None before it is loaded."""
        record = self._store.records[name]
        snap, delivered = record.snapshot, record.release
        if snap is None or delivered is None:
            return None
        return Release(
            namespace=name,
            release_key=snap.release_key,
            notification_id=record.notification_id,
            messages=dict(record.messages),
            items=dict(delivered.items),  # as delivered: a transform's output stays here
            source=snap.source.value,
            synced_at=record.synced_at,
        )

    def _states(self) -> dict[str, tuple[int, str | None]]:
        """``{namespace: (notification_id, release_key)}`` as held now."""
        return {
            name: (r.notification_id, r.snapshot.release_key if r.snapshot is not None else None)
            for name, r in self._store.records.items()
        }

    def _frame(self, name: str) -> bytes | None:
        record = self._store.records[name]
        snap = record.snapshot
        if snap is None or record.release is None:
            return None
        version = (record.notification_id, snap.release_key, record.synced_at)
        cached = self._frames.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]  # built and encoded once, sent to every follower
        release = self._release_message(name)
        if release is None:
            return None
        frame = encode(release.to_wire())
        self._frames[name] = (version, frame)
        return frame

    def _heartbeat(self) -> bytes:
        return encode(
            Heartbeat(
                leader_pid=os.getpid(),
                healthy=self._host.healthy(),
                last_poll_success=self._host.own_poll_time(),
                states=self._states(),
            ).to_wire()
        )

    async def _serve(self, conn: socket.socket, slots: asyncio.Semaphore) -> None:
        """One follower's connection, from its hello to its end (or the leader's close)."""
        follower: _Follower | None = None
        handshaking = True
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                check_peer(conn)
            except ShareUnavailable as exc:
                if not self._refused_peer_warned:
                    self._refused_peer_warned = True
                    logger.warning("refused a follower: %s", exc)
                return
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            inbox = _Inbox(reader, max_frame=MAX_FOLLOWER_FRAME)
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                hello = await inbox.next()
            if not isinstance(hello, Hello) or hello.fingerprint != self.fingerprint:
                refusal = Refuse(reason="not a member of this group")
                writer.write(encode(refusal.to_wire()))
                return
            handshaking = False
            slots.release()
            if len(self._followers) >= self._options.share_max_followers:
                refusal = Refuse(
                    reason=f"the leader serves {len(self._followers)} followers, its limit"
                    " (share_max_followers)"
                )
                writer.write(encode(refusal.to_wire()))
                return
            welcome = Welcome(leader_pid=os.getpid(), fingerprint=self.fingerprint)
            writer.write(encode(welcome.to_wire()))
            follower = _Follower(writer)
            if self._loaded.is_set():
                follower.dirty.update(self._namespaces)
                follower.wake.set()
            self._followers.add(follower)
            sender = follower.sender = self._supervisor.spawn(
                "share-send",
                functools.partial(self._send_loop, follower),
                task_name=f"aioapollo-share-send-{self._options.app_id}",
            )
            try:
                while True:
                    message = await inbox.next()
                    if message is None:
                        break
                    if isinstance(message, Resync) and self._loaded.is_set():
                        follower.dirty.update(self._namespaces)
                        follower.wake.set()
            finally:
                sender.cancel()
                await asyncio.wait([sender])
        except (OSError, WireError, TimeoutError) as exc:
            logger.debug("follower connection ended: %s", exc)
        except asyncio.CancelledError:
            # The leader closes (or its loop ends): a goodbye, then the connection closes.
            if self._closing and follower is not None and writer is not None:
                with contextlib.suppress(OSError, WireError):
                    writer.write(encode(Goodbye(reason="the leader is closing").to_wire()))
            raise
        finally:
            if handshaking:
                slots.release()
            if follower is not None:
                self._followers.discard(follower)
            if writer is not None:
                writer.close()
            else:
                conn.close()

    async def _send_loop(self, follower: _Follower, progress: Progress) -> None:
        """Send one follower what it is owed (supervised: restarted after a crash)."""
        writer = follower.writer
        if progress.restarted and self._loaded.is_set():
            # The crashed run may have taken names off the dirty set without sending them
            # (frames are whole, so the stream is intact): send everything again.
            follower.dirty.update(self._namespaces)
            follower.beat = True
            follower.wake.set()
        try:
            while True:
                await follower.wake.wait()
                follower.wake.clear()
                names, follower.dirty = follower.dirty, set()
                for name in names:
                    fault("share.send")
                    frame = self._frame(name)
                    if frame is not None:
                        writer.write(frame)
                if follower.beat or names:
                    follower.beat = False
                    writer.write(self._heartbeat())
                async with asyncio.timeout(SLOW_FOLLOWER):
                    await writer.drain()
                progress.done()
        except TimeoutError:
            logger.warning(
                "a follower of %r took no data for %.0f s; disconnecting it (it will resync)",
                self._options.app_id,
                SLOW_FOLLOWER,
            )
            writer.transport.abort()
        except OSError:
            writer.transport.abort()

    async def heartbeat_loop(self, progress: Progress) -> None:
        """While leading: wake every follower's sender with a heartbeat each second.

        Returns when this process no longer leads the group that new processes join (its
        directory was removed and someone else leads the re-made one): the caller re-elects.
        """
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            fault("share.heartbeat")
            if self.role == LEADER and not self._socket_is_ours() and not self._rehome():
                return
            if self.role != LEADER or not self._loaded.is_set():
                continue
            for follower in self._followers:
                follower.beat = True
                follower.wake.set()
            progress.done()

    def _rehome(self) -> bool:
        """The leader's socket is gone (a tmp cleaner, a logout): re-make the rendezvous.

        Returns whether this process still leads: it re-created the directory, took the new
        lock and listens again (its followers stay connected). False when another process
        leads the re-made group: this one steps down, its followers re-elect, and so does it.
        """
        old = self._lock
        logger.warning(
            "ApolloClient(%r): the sharing socket %s was removed; re-making it",
            self._options.app_id,
            self._socket,
        )
        self._stop_listening()
        try:
            self.prepare()
            if self.try_lead():
                if old is not None and old is not self._lock:
                    old.release()
                self._listen()
                return True
        except ShareUnavailable as exc:
            logger.warning(
                "ApolloClient(%r): cannot re-make the sharing rendezvous: %s",
                self._options.app_id,
                exc,
            )
        # Another process leads the new group (or none can): step down and elect.
        if old is not None and old is not self._lock:
            old.release()
        for follower in list(self._followers):
            follower.writer.transport.abort()
        self.degraded = "re-forming the sharing group; polling Apollo from this process"
        self._set_role(SOLO, "the group's directory was re-made")
        return False

    # ------------------------------------------------------------------ following

    async def join(self, within: float) -> bool:
        """As a starting follower: connect and install the leader's snapshot in time."""
        deadline = time.monotonic() + within
        delay = 0.02
        while True:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    await self._connect()
                    await self._read_until_complete()
                self._set_role(FOLLOWER, f"following the leader (pid {self.leader_pid})")
                return True
            except (OSError, WireError, TimeoutError, ShareUnavailable) as exc:
                self._disconnect()
                if isinstance(exc, ShareUnavailable):
                    raise
                if time.monotonic() + delay >= deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    async def _connect(self) -> None:
        assert self._socket is not None
        check_socket_owner(self._socket)  # raises FileNotFoundError: no leader (yet)
        reader, writer = await asyncio.open_unix_connection(str(self._socket))
        self._inbox, self._writer = _Inbox(reader), writer
        check_peer(writer.get_extra_info("socket"))
        hello = Hello(fingerprint=self.fingerprint, pid=os.getpid())
        writer.write(encode(hello.to_wire()))
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            answer = await self._inbox.next()
        if isinstance(answer, Refuse):
            raise ShareUnavailable(f"the leader refused this client: {answer.reason}")
        if not isinstance(answer, Welcome) or answer.fingerprint != self.fingerprint:
            raise WireError("the leader did not welcome this client")
        self.leader_pid = answer.leader_pid
        self._goodbye = False

    async def _read_until_complete(self) -> None:
        """Read releases until every namespace is loaded and a heartbeat confirms it."""
        assert self._inbox is not None
        while True:
            message = await self._inbox.next()
            if message is None:
                raise ConnectionResetError("the leader closed the connection")
            await self._handle(message)
            if isinstance(message, Heartbeat) and set(message.states) >= set(self._namespaces):
                held = self._states()
                if all(held[n][1] is not None or message.states[n][1] is None for n in held):
                    return

    async def _handle(self, message: Message) -> None:
        if isinstance(message, Goodbye):
            self._goodbye = True
        elif isinstance(message, Release):
            await self._apply(message)
        elif isinstance(message, Heartbeat):
            self.leader_pid = message.leader_pid
            self.leader_healthy = message.healthy
            self.leader_poll_success = message.last_poll_success
            held = self._states()
            behind = [
                name
                for name, (nid, key) in message.states.items()
                if name in held and (nid > held[name][0] or (key and held[name][1] is None))
            ]
            self._in_sync = all(
                held.get(name) == state for name, state in message.states.items() if name in held
            )
            if behind and self._writer is not None:
                self._writer.write(encode(Resync().to_wire()))

    async def _apply(self, release: Release) -> bool:
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

    def _disconnect(self) -> None:
        writer, self._writer, self._inbox = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def follow(self, progress: Progress) -> None:
        """Read the leader's stream until it ends; poll Apollo ourselves while it is silent."""
        assert self._inbox is not None
        inbox = self._inbox
        try:
            while True:
                # A read often brings several frames (a release and its heartbeat): those
                # waiting already need no timer.
                message = inbox.next_nowait()
                if message is None:
                    try:
                        async with asyncio.timeout(LEADER_SILENCE):
                            message = await inbox.next()
                    except TimeoutError:
                        await self._degrade(
                            f"the leader (pid {self.leader_pid}) sent nothing for "
                            f"{LEADER_SILENCE:g} s; polling Apollo from this process"
                        )
                        message = await inbox.next()
                if message is None:
                    return
                fault("share.follow")
                if isinstance(message, Goodbye):
                    self._goodbye = True
                    return
                await self._handle(message)
                if isinstance(message, Heartbeat) and self.degraded is not None:
                    await self._recover()
                progress.done()
        except (OSError, WireError) as exc:
            logger.debug("leader connection ended: %s", exc)
        finally:
            self._disconnect()

    async def _degrade(self, reason: str) -> None:
        if self.degraded is None:
            self.degraded = reason
            logger.warning("ApolloClient(%r): %s", self._options.app_id, reason)
            self._host.start_polling()

    async def _recover(self) -> None:
        logger.warning(
            "ApolloClient(%r): following the leader (pid %s) again",
            self._options.app_id,
            self.leader_pid,
        )
        self.degraded = None
        await self._host.stop_polling()

    # ------------------------------------------------------------------ the loop

    async def run(self, progress: Progress) -> None:
        """Keep this client in its group: follow while a leader answers, else lead.

        Supervised: restarted after a crash, it leads on if it leads (the lock is still held),
        and a follower whose connection the crash closed elects again, which reconnects it to
        the leader and gets it everything it missed.
        """
        while True:
            if self.role == LEADER:
                await self.heartbeat_loop(progress)  # returns only when it must re-elect
            if self._inbox is not None:
                await self.follow(progress)
                self.failovers += 1
                logger.log(
                    logging.INFO if self._goodbye else logging.WARNING,
                    "ApolloClient(%r): the leader (pid %s) %s; electing a new one",
                    self._options.app_id,
                    self.leader_pid,
                    "handed over (it closed)" if self._goodbye else "is gone",
                )
            await self._elect()

    async def _elect(self) -> None:
        """After losing the leader: lead if the lock is free, else follow whoever has it.

        Never deaf: a process that can neither lead nor follow (the directory is gone and
        cannot be re-made, the lock is unusable, the leader refuses it) polls Apollo itself at
        once, and keeps trying to re-form the group with backoff.
        """
        silent_since = time.monotonic()
        delay = 0.01
        remake = False
        while True:
            try:
                if remake:
                    self.prepare()  # re-creates a removed directory, with the same checks
                    remake = False
                if self.try_lead():
                    self._host.start_polling()  # from the ids held: no refetch storm
                    self.lead("took over from the previous leader")
                    self.loaded()
                    return
                await self._connect()
                await self._read_until_complete()
                self._set_role(FOLLOWER, f"following the new leader (pid {self.leader_pid})")
                if self.degraded is not None:
                    await self._recover()
                return
            except ShareUnavailable as exc:
                self._disconnect()
                remake = True
                await self._degrade(f"cannot share: {exc}; polling Apollo from this process")
                delay = max(delay, 0.5)
            except (OSError, WireError, TimeoutError):
                self._disconnect()
                if time.monotonic() - silent_since > LEADER_SILENCE:
                    await self._degrade(
                        "no leader answered for "
                        f"{LEADER_SILENCE:g} s; polling Apollo from this process"
                    )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, REJOIN_MAX if remake else 0.5)

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Leave the group: say goodbye to the followers, let go of the lock and the leader."""
        self._closing = True
        self._disconnect()
        accepting = self._accepting
        self._stop_listening()
        connections = list(self._connections)
        for task in connections:
            task.cancel()  # each says goodbye to its follower and closes
        waited = [t for t in (accepting, *connections) if t is not None]
        if waited:
            await asyncio.wait(waited)
        if self._lock is not None:
            self._lock.release()

    def forked(self) -> None:
        """In a forked child: close inherited descriptors without touching the parent's."""
        if self._lock is not None:
            self._lock.forget_after_fork()
        fds: list[int] = []
        if self._listener is not None:
            fds.append(self._listener.fileno())
        if self._writer is not None:
            fds.append(self._writer.get_extra_info("socket").fileno())
        fds.extend(f.writer.get_extra_info("socket").fileno() for f in self._followers)
        # The objects stay referenced, never finalized: that would close these numbers again.
        _process.keep_forever(
            self._listener,
            self._accepting,
            self._writer,
            self._inbox,
            set(self._followers),
            set(self._connections),
        )
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._listener = self._accepting = self._writer = self._inbox = None
        self._bound = None
        self._connections = set()
        self._handshakes = None
        self._followers = set()
        self.role, self.degraded = SOLO, None


class _Follower:
    """The leader's view of one connected follower: what to send it next, never a backlog."""

    __slots__ = ("beat", "dirty", "sender", "wake", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.beat = False
        self.sender: asyncio.Task[None] | None = None


class _Inbox:
    """Messages arriving on one stream, one at a time (a read may bring several)."""

    __slots__ = ("_decoder", "_pending", "_reader")

    def __init__(self, reader: asyncio.StreamReader, *, max_frame: int | None = None) -> None:
        self._reader = reader
        self._decoder = Decoder(max_frame=max_frame)
        self._pending: collections.deque[dict[str, Any]] = collections.deque()

    def next_nowait(self) -> Message | None:
        """The next message if one has arrived already, else None (without reading)."""
        return parse(self._pending.popleft()) if self._pending else None

    async def next(self) -> Message | None:
        """The next message, or None at a clean end of the stream."""
        while not self._pending:
            data = await self._reader.read(1 << 16)
            if not data:
                if self._decoder.pending:
                    raise WireError("the connection ended inside a frame")
                return None
            self._pending.extend(self._decoder.feed(data))
        return parse(self._pending.popleft())


def warn_solo(app_id: str, reason: str) -> None:
    """Sharing was asked for but cannot be used: one warning, then solo."""
    logger.warning(
        "ApolloClient(%r): share_poll=True but this process runs solo (its own long poll): %s",
        app_id,
        reason,
    )
