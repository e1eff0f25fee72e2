"""One long poll per host: the leader polls Apollo, followers get its releases over a socket.

The whole design on one page::

    share_dir/ (0700, ours)      <group>.lock   flock: whoever holds it leads
                                 <group>.sock   the leader listens here

    leader = a client that holds the lock: polls Apollo as a solo client does and pushes
             every release (release), and a heartbeat every second, to each follower
    follower = a client that lost the race: holds no connection to Apollo, applies the
             releases it is pushed (only newer ones) and fires its own listeners

    leader dies (EOF)      -> followers race for the lock; the winner leads from the ids it
                              holds; the rest connect to it
    leader silent > 4 s    -> followers poll Apollo themselves ("degraded") and follow again
                              on its next heartbeat
    no usable share_dir,   -> solo, one warning
    no peer credentials

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
import functools
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import _process
from ._config import ClientOptions, group_fingerprint
from ._rendezvous import (
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
from ._sharewire import (
    PROTOCOL_VERSION,
    Decoder,
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
from ._supervise import Progress, Supervisor, fault

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

SOLO, LEADER, FOLLOWER = "solo", "leader", "follower"


class SharingHost(Protocol):
    """What sharing needs of its client (ApolloClient provides it)."""

    @property
    def namespaces(self) -> tuple[str, ...]: ...

    def _share_release(self, name: str) -> Release | None:
        """The release held for ``name`` as a message, or None before it is loaded."""

    def _share_states(self) -> dict[str, tuple[int, str | None]]:
        """``{namespace: (notification_id, release_key)}`` as held now."""

    def _apply_shared(self, release: Release) -> bool:
        """Install a pushed release if it is newer than what is held; whether it was."""

    def _share_healthy(self) -> bool:
        """Whether this client (as a leader) is healthy."""

    def _own_poll_time(self) -> float | None:
        """Epoch seconds of this process's own last successful long poll."""

    def _start_polling(self) -> None:
        """Start polling Apollo from this process (idempotent)."""

    async def _stop_polling(self) -> None:
        """Stop polling Apollo from this process (idempotent)."""


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A change of a client's sharing role, for logs, hooks and tests."""

    role: str
    previous: str
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
        host: SharingHost,
        options: ClientOptions,
        on_role: Callable[[RoleChange], None] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._host = host
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
        self._server: asyncio.Server | None = None
        self._followers: set[_Follower] = set()
        self._loaded = asyncio.Event()
        self._inbox: _Inbox | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._in_sync = True
        self._frames: dict[str, tuple[tuple[int, str | None, float | None], bytes]] = {}
        self._refused_peer_warned = False

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

    def _set_role(self, role: str, reason: str) -> None:
        previous, self.role = self.role, role
        if role == LEADER:
            self.leader_pid = os.getpid()
        change = RoleChange(role, previous, self.leader_pid, reason)
        level = logging.INFO if previous in (SOLO, role) else logging.WARNING
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

    async def lead(self, reason: str) -> None:
        """Serve followers from this process (the lock is held): listen, then push."""
        assert self._socket is not None
        self._set_role(LEADER, reason)
        self.degraded = None
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()  # a dead leader's: we hold the lock
        self._server = await asyncio.start_unix_server(self._serve, path=str(self._socket))
        os.chmod(self._socket, 0o600)

    def loaded(self) -> None:
        """The leader holds every namespace: followers may be sent its snapshot."""
        self._loaded.set()
        for follower in self._followers:
            follower.dirty.update(self._host.namespaces)
            follower.wake.set()

    def changed(self, name: str) -> None:
        """A release was installed (or its notification id advanced): push it."""
        if not self._followers or not self._loaded.is_set():
            return
        for follower in self._followers:
            follower.dirty.add(name)
            follower.wake.set()

    def _frame(self, name: str) -> bytes | None:
        release = self._host._share_release(name)
        if release is None:
            return None
        version = (release.notification_id, release.release_key, release.synced_at)
        cached = self._frames.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]  # encoded once, sent to every follower
        frame = encode(release.to_wire())
        self._frames[name] = (version, frame)
        return frame

    def _heartbeat(self) -> bytes:
        return encode(
            Heartbeat(
                leader_pid=os.getpid(),
                healthy=self._host._share_healthy(),
                last_poll_success=self._host._own_poll_time(),
                states=self._host._share_states(),
            ).to_wire()
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        follower: _Follower | None = None
        try:
            try:
                check_peer(writer.get_extra_info("socket"))
            except ShareUnavailable as exc:
                if not self._refused_peer_warned:
                    self._refused_peer_warned = True
                    logger.warning("refused a follower: %s", exc)
                return
            inbox = _Inbox(reader)
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                hello = await inbox.next()
            if not isinstance(hello, Hello) or hello.fingerprint != self.fingerprint:
                refusal = Refuse(reason="not a member of this group")
                writer.write(encode(refusal.to_wire()))
                return
            welcome = Welcome(leader_pid=os.getpid(), fingerprint=self.fingerprint)
            writer.write(encode(welcome.to_wire()))
            follower = _Follower(writer)
            if self._loaded.is_set():
                follower.dirty.update(self._host.namespaces)
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
                        follower.dirty.update(self._host.namespaces)
                        follower.wake.set()
            finally:
                sender.cancel()
                await asyncio.wait([sender])
        except (OSError, WireError, TimeoutError) as exc:
            logger.debug("follower connection ended: %s", exc)
        finally:
            if follower is not None:
                self._followers.discard(follower)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _send_loop(self, follower: _Follower, progress: Progress) -> None:
        """Send one follower what it is owed (supervised: restarted after a crash)."""
        writer = follower.writer
        if progress.restarted and self._loaded.is_set():
            # The crashed run may have taken names off the dirty set without sending them
            # (frames are whole, so the stream is intact): send everything again.
            follower.dirty.update(self._host.namespaces)
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
        """While leading: wake every follower's sender with a heartbeat each second."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            fault("share.heartbeat")
            if self.role != LEADER or not self._loaded.is_set():
                continue
            for follower in self._followers:
                follower.beat = True
                follower.wake.set()
            progress.done()

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

    async def _read_until_complete(self) -> None:
        """Read releases until every namespace is loaded and a heartbeat confirms it."""
        assert self._inbox is not None
        while True:
            message = await self._inbox.next()
            if message is None:
                raise ConnectionResetError("the leader closed the connection")
            self._handle(message)
            if isinstance(message, Heartbeat) and set(message.states) >= set(self._host.namespaces):
                held = self._host._share_states()
                if all(held[n][1] is not None or message.states[n][1] is None for n in held):
                    return

    def _handle(self, message: Message) -> None:
        if isinstance(message, Release):
            self._host._apply_shared(message)
        elif isinstance(message, Heartbeat):
            self.leader_pid = message.leader_pid
            self.leader_healthy = message.healthy
            self.leader_poll_success = message.last_poll_success
            held = self._host._share_states()
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
                self._handle(message)
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
            self._host._start_polling()

    async def _recover(self) -> None:
        logger.warning(
            "ApolloClient(%r): following the leader (pid %s) again",
            self._options.app_id,
            self.leader_pid,
        )
        self.degraded = None
        await self._host._stop_polling()

    # ------------------------------------------------------------------ the loop

    async def run(self, progress: Progress) -> None:
        """Keep this client in its group: follow while a leader answers, else lead.

        Supervised: restarted after a crash, it leads on if it leads (the lock is still held),
        and a follower whose connection the crash closed elects again, which reconnects it to
        the leader and gets it everything it missed.
        """
        while True:
            if self.role == LEADER:
                await self.heartbeat_loop(progress)  # runs until cancelled
            if self._inbox is not None:
                await self.follow(progress)
                self.failovers += 1
                logger.warning(
                    "ApolloClient(%r): the leader (pid %s) is gone; electing a new one",
                    self._options.app_id,
                    self.leader_pid,
                )
            await self._elect()

    async def _elect(self) -> None:
        """After losing the leader: lead if the lock is free, else follow whoever has it."""
        silent_since = time.monotonic()
        delay = 0.01
        while True:
            if self.try_lead():
                self._host._start_polling()  # from the ids held: no refetch storm
                await self.lead("took over from the previous leader")
                self.loaded()
                return
            try:
                await self._connect()
                await self._read_until_complete()
                self._set_role(FOLLOWER, f"following the new leader (pid {self.leader_pid})")
                if self.degraded is not None:
                    await self._recover()
                return
            except ShareUnavailable as exc:
                self._disconnect()
                await self._degrade(f"cannot follow the leader: {exc}")
            except (OSError, WireError, TimeoutError):
                self._disconnect()
                if time.monotonic() - silent_since > LEADER_SILENCE:
                    await self._degrade(
                        "no leader answered for "
                        f"{LEADER_SILENCE:g} s; polling Apollo from this process"
                    )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Leave the group: stop serving, let go of the lock and the leader."""
        self._disconnect()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            senders = [f.sender for f in self._followers if f.sender is not None]
            for follower in list(self._followers):
                follower.writer.transport.abort()
            for sender in senders:
                sender.cancel()
            if senders:
                await asyncio.wait(senders)
            await server.wait_closed()
            if self._socket is not None and self._lock is not None and self._lock.held:
                with contextlib.suppress(OSError):
                    self._socket.unlink()
        if self._lock is not None:
            self._lock.release()

    def forked(self) -> None:
        """In a forked child: close inherited descriptors without touching the parent's."""
        if self._lock is not None:
            self._lock.forget_after_fork()
        fds: list[int] = []
        if self._server is not None:
            fds.extend(s.fileno() for s in self._server.sockets)
        if self._writer is not None:
            fds.append(self._writer.get_extra_info("socket").fileno())
        fds.extend(f.writer.get_extra_info("socket").fileno() for f in self._followers)
        # The objects stay referenced, never finalized: that would close these numbers again.
        _process.keep_forever(self._server, self._writer, self._inbox, set(self._followers))
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._server = self._writer = self._inbox = None
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

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._decoder = Decoder()
        self._pending: collections.deque[dict[str, Any]] = collections.deque()

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
