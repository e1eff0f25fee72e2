"""The leader's half of sharing: listen, accept, and push every release to each follower.

Per follower the leader keeps a set of namespaces to send and one heartbeat flag, never a
queue of messages: a slow follower gets the latest release of each namespace when it catches
up, and one that cannot take a frame within ``timing.SLOW_FOLLOWER`` seconds is disconnected
(it reconnects and is sent everything again). Each release is encoded once for all followers.

The leader accepts connections itself (no asyncio server): a listening socket that exists
before anything awaits, so no cancellation can leak it; at most ``share_max_followers``
followers; at the descriptor limit it backs off and logs once a minute. Followers' frames are
capped at :data:`~aioapollo._share.wire.MAX_FOLLOWER_FRAME` bytes and their hello must arrive
within ``timing.HANDSHAKE_TIMEOUT``, so a local peer cannot make the leader buffer anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from .._config import ClientOptions
from .._core.store import NamespaceStore
from .._core.supervise import Progress, Supervisor, fault
from . import timing
from .held import held_states
from .host import SharingHost
from .rendezvous import ShareUnavailable, check_peer
from .stream import Inbox
from .wire import (
    MAX_FOLLOWER_FRAME,
    Goodbye,
    Heartbeat,
    Hello,
    Refuse,
    Release,
    Resync,
    Welcome,
    WireError,
    encode,
)

__all__ = ["Leader"]

logger = logging.getLogger("aioapollo")


class Leader:
    """Serves this process's releases to the group's followers while it holds the lock."""

    def __init__(
        self,
        store: NamespaceStore,
        host: SharingHost,
        options: ClientOptions,
        supervisor: Supervisor,
        fingerprint: str,
    ) -> None:
        self._store = store
        self._host = host
        self._options = options
        #: Runs the accept loop and the per-follower senders (the client's supervisor).
        self._supervisor = supervisor
        self.fingerprint = fingerprint
        self._namespaces = tuple(store.records)
        self._socket: Path | None = None
        #: The listening socket, the (st_dev, st_ino) it was bound as, and its accept task.
        self._listener: socket.socket | None = None
        self._bound: tuple[int, int] | None = None
        self._accepting: asyncio.Task[None] | None = None
        #: Every connection served, handshaking or following.
        self._connections: set[asyncio.Task[None]] = set()
        self._handshakes: asyncio.Semaphore | None = None
        self._followers: set[_Peer] = set()
        #: Set by a clean close: followers are told goodbye, not left to find the EOF.
        self._closing = False
        self._loaded = asyncio.Event()
        self._frames: dict[str, tuple[tuple[int, str | None, float | None], bytes]] = {}
        #: The heartbeat every sender writes next: built once for all followers, and again
        #: after each release and each beat (so it is never older than the beat period).
        self._beat_frame: bytes | None = None
        self._refused_peer_warned = False

    @property
    def followers(self) -> int:
        return len(self._followers)

    def listen(self, path: Path) -> None:
        """Bind and listen on ``path`` (the lock is held) and start accepting followers.

        Synchronous on purpose: the listening socket is ours before anything can be
        cancelled, so :meth:`close` always finds it.

        Raises:
            ShareUnavailable: The socket cannot be bound.
        """
        self._socket = path
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

    def stop_listening(self) -> None:
        """Close the listening socket (connections already accepted stay)."""
        accepting, self._accepting = self._accepting, None
        if accepting is not None:
            accepting.cancel()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            if self._socket is not None and self.socket_is_ours():
                with contextlib.suppress(OSError):
                    self._socket.unlink()
        self._bound = None

    def socket_is_ours(self) -> bool:
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
        slots = self._handshakes = asyncio.Semaphore(timing.MAX_HANDSHAKES)
        pause = 0.1
        warned_at: float | None = None
        while True:
            await slots.acquire()  # released when that connection's handshake ends
            try:
                conn, _ = await loop.sock_accept(listener)
            except BaseException as exc:
                slots.release()
                if not isinstance(exc, OSError) or exc.errno not in timing.OUT_OF_RESOURCES:
                    raise
                now = time.monotonic()
                if warned_at is None or now - warned_at >= timing.ACCEPT_WARN_INTERVAL:
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
        self._beat_frame = None
        for follower in self._followers:
            follower.dirty.update(self._namespaces)
            follower.wake.set()

    def changed(self, name: str) -> None:
        """A release was installed (or its notification id advanced): push it.

        A follower whose sender is idle and whose socket takes data at once is written to
        here, release and heartbeat in one write: every follower has the release before this
        process runs anything else (its own listeners, its cache write, its next poll), and
        no sender task is woken for it. Any other follower's sender sends it (it drains,
        with the slow-follower timeout).
        """
        self._beat_frame = None  # its states changed
        if not self._followers or not self._loaded.is_set():
            return
        self._push(
            lambda: (self.frame(name) or b"") + self._heartbeat(), lambda f: f.dirty.add(name)
        )

    def frame(self, name: str) -> bytes | None:
        """The encoded release of ``name`` (built once per release, sent to every follower),
        or None before it is loaded."""
        record = self._store.records[name]
        snap, delivered = record.snapshot, record.release
        if snap is None or delivered is None:
            return None
        version = (record.notification_id, snap.release_key, record.synced_at)
        cached = self._frames.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]  # built and encoded once, sent to every follower
        release = Release(
            namespace=name,
            release_key=snap.release_key,
            notification_id=record.notification_id,
            messages=dict(record.messages),
            items=dict(delivered.items),  # as delivered: a transform's output stays here
            source=snap.source.value,
            synced_at=record.synced_at,
        )
        frame = encode(release.to_wire())
        self._frames[name] = (version, frame)
        return frame

    def _heartbeat(self) -> bytes:
        frame = self._beat_frame
        if frame is None:
            frame = self._beat_frame = encode(
                Heartbeat(
                    leader_pid=os.getpid(),
                    healthy=self._host.healthy(),
                    last_poll_success=self._host.own_poll_time(),
                    states=held_states(self._store),
                ).to_wire()
            )
        return frame

    async def _serve(self, conn: socket.socket, slots: asyncio.Semaphore) -> None:
        """One follower's connection, from its hello to its end (or the leader's close)."""
        follower: _Peer | None = None
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
            inbox = Inbox(reader, max_frame=MAX_FOLLOWER_FRAME)
            async with asyncio.timeout(timing.HANDSHAKE_TIMEOUT):
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
            follower = _Peer(writer)
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

    async def _send_loop(self, follower: _Peer, progress: Progress) -> None:
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
                follower.waiting = True
                try:
                    await follower.wake.wait()
                finally:
                    follower.waiting = False
                follower.wake.clear()
                crash, follower.crash = follower.crash, None
                if crash is not None:
                    raise crash
                names, follower.dirty = follower.dirty, set()
                for name in names:
                    fault("share.send")
                    frame = self.frame(name)
                    if frame is not None:
                        writer.write(frame)
                if follower.beat or names:
                    follower.beat = False
                    writer.write(self._heartbeat())
                async with asyncio.timeout(timing.SLOW_FOLLOWER):
                    await writer.drain()
                progress.done()
        except TimeoutError:
            logger.warning(
                "a follower of %r took no data for %.0f s; disconnecting it (it will resync)",
                self._options.app_id,
                timing.SLOW_FOLLOWER,
            )
            writer.transport.abort()
        except OSError:
            writer.transport.abort()

    def beat(self) -> None:
        """Send every follower a heartbeat (once the snapshot is loaded).

        As for a release (:meth:`changed`), an idle follower is written to here, so a beat
        wakes no sender task; any other follower's sender sends it.
        """
        self._beat_frame = None  # a fresh one: health and the last poll may have changed
        if not self._loaded.is_set():
            return
        self._push(self._heartbeat, _owe_beat)

    def _push(self, build: Callable[[], bytes], owe: Callable[[_Peer], None]) -> None:
        """Write ``build()`` (built once) to every idle follower; ``owe`` it to the others,
        whose senders send it. A failed direct write is the sender's crash: it raises it
        when woken, and its supervisor restarts it (the debt is still owed)."""
        data: bytes | None = None
        for follower in self._followers:
            if follower.idle():
                try:
                    fault("share.send")
                    if data is None:
                        data = build()
                    follower.writer.write(data)
                    if follower.writer.transport.get_write_buffer_size():
                        follower.wake.set()  # the kernel took part of it: the sender drains
                    continue
                except Exception as exc:
                    follower.crash = exc
            owe(follower)
            follower.wake.set()

    def drop_followers(self) -> None:
        """Disconnect every follower (they re-elect)."""
        for follower in list(self._followers):
            follower.writer.transport.abort()

    async def close(self) -> None:
        """Say goodbye to every follower and stop listening."""
        self._closing = True
        accepting = self._accepting
        self.stop_listening()
        connections = list(self._connections)
        for task in connections:
            task.cancel()  # each says goodbye to its follower and closes
        waited = [t for t in (accepting, *connections) if t is not None]
        if waited:
            await asyncio.wait(waited)

    def forked(self) -> tuple[list[int], list[object]]:
        """In a forked child: forget everything; returns the inherited descriptors to close
        and the objects to keep referenced (never finalized: that would close them again)."""
        fds: list[int] = []
        if self._listener is not None:
            fds.append(self._listener.fileno())
        fds.extend(f.writer.get_extra_info("socket").fileno() for f in self._followers)
        kept: list[object] = [
            self._listener,
            self._accepting,
            set(self._followers),
            set(self._connections),
        ]
        self._listener = self._accepting = None
        self._bound = None
        self._connections = set()
        self._handshakes = None
        self._followers = set()
        self._beat_frame = None  # names the parent's pid
        return fds, kept


def _owe_beat(follower: _Peer) -> None:
    follower.beat = True


class _Peer:
    """The leader's view of one connected follower: what to send it next, never a backlog."""

    __slots__ = ("beat", "crash", "dirty", "sender", "waiting", "wake", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.beat = False
        self.sender: asyncio.Task[None] | None = None
        #: The sender waits for work (it is not writing, draining or restarting).
        self.waiting = False
        #: A failure of a write made for the sender, which it raises when it next wakes.
        self.crash: Exception | None = None

    def idle(self) -> bool:
        """Whether a frame (a release, a heartbeat) may be written to this follower at once,
        bypassing the sender: it waits with nothing owed, and its socket has taken everything
        written so far."""
        return (
            self.waiting
            and not self.wake.is_set()
            and not self.dirty
            and not self.writer.transport.is_closing()
            and not self.writer.transport.get_write_buffer_size()
        )
