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

By role: this module is the election (who leads, failover, degrading and recovering, the
group's lifecycle); ``leader.py`` serves followers; ``follower.py`` is a follower's link to its
leader; ``rendezvous.py`` the directory, lock and peer checks; ``wire.py`` the pure framing;
``timing.py`` every timing and limit.

Who shares: clients whose :func:`~aioapollo._config.group_fingerprint` (and wire version)
match. A follower checks the directory's owner and mode, the socket's owner and the leader's
uid (peer credentials); the leader checks each follower's uid: the socket carries values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._config import ClientOptions, group_fingerprint
from .._core.store import NamespaceStore
from .._core.supervise import Progress, Supervisor, fault
from .._models import Role
from .._runtime import process as _process
from . import timing
from .follower import Link
from .host import SharingHost
from .leader import Leader
from .rendezvous import (
    LeaderLock,
    ShareUnavailable,
    default_share_dir,
    ensure_private_dir,
    lock_path,
    socket_path,
    supported,
)
from .wire import PROTOCOL_VERSION, WireError

__all__ = ["JOIN_TIMEOUT", "RoleChange", "Sharing", "SharingHost", "share_fingerprint"]

logger = logging.getLogger("aioapollo")

#: How long a starting follower waits for a leader's snapshot (see ``timing``).
JOIN_TIMEOUT = timing.JOIN_TIMEOUT

SOLO, LEADER, FOLLOWER = Role.SOLO, Role.LEADER, Role.FOLLOWER


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
    """A client's membership of its sharing group: the election, and a leader or a follower
    link depending on the role it won."""

    def __init__(
        self,
        store: NamespaceStore,
        host: SharingHost,
        options: ClientOptions,
        on_role: Callable[[RoleChange], None] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._host = host
        self._options = options
        self._on_role = on_role
        self.fingerprint = share_fingerprint(options)
        supervisor = supervisor if supervisor is not None else Supervisor(options.app_id)
        #: This process's leader half (it serves followers while it holds the lock).
        self.leader = Leader(store, host, options, supervisor, self.fingerprint)
        #: This process's follower half (its connection to the leader).
        self.link = Link(store, self.fingerprint)
        self.role = SOLO
        #: Why this client polls Apollo itself although it follows, if it does.
        self.degraded: str | None = None
        self.failovers = 0
        self._lock: LeaderLock | None = None
        self._socket: Path | None = None

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
        return self.leader.followers

    @property
    def in_sync(self) -> bool:
        return self.link.in_sync

    @property
    def leader_pid(self) -> int | None:
        return os.getpid() if self.role == LEADER else self.link.leader_pid

    @property
    def leader_healthy(self) -> bool:
        return self.link.leader_healthy

    @property
    def leader_poll_success(self) -> float | None:
        return self.link.leader_poll_success

    def _set_role(self, role: Role, reason: str) -> None:
        previous, self.role = self.role, role
        change = RoleChange(role, previous, self.leader_pid, reason)
        # A takeover after the leader said goodbye is a handover, not an incident.
        handover = self.link.goodbye
        level = logging.INFO if previous in (SOLO, role) or handover else logging.WARNING
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
        assert self._socket is not None
        try:
            self.leader.listen(self._socket)
        except ShareUnavailable:
            if self._lock is not None:
                self._lock.release()
            raise
        self._set_role(LEADER, reason)
        self.degraded = None

    def loaded(self) -> None:
        """The leader holds every namespace: followers may be sent its snapshot."""
        self.leader.loaded()

    def changed(self, name: str) -> None:
        """A release was applied (or its notification id advanced): push it."""
        self.leader.changed(name)

    async def heartbeat_loop(self, progress: Progress) -> None:
        """While leading: wake every follower's sender with a heartbeat each second.

        Returns when this process no longer leads the group that new processes join (its
        directory was removed and someone else leads the re-made one): the caller re-elects.
        """
        while True:
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)
            fault("share.heartbeat")
            if self.role == LEADER and not self.leader.socket_is_ours() and not self._rehome():
                return
            if self.role != LEADER:
                continue
            self.leader.beat()
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
        self.leader.stop_listening()
        try:
            self.prepare()
            if self.try_lead():
                if old is not None and old is not self._lock:
                    old.release()
                assert self._socket is not None
                self.leader.listen(self._socket)
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
        self.leader.drop_followers()
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
                    await self.link.read_until_complete()
                self._set_role(FOLLOWER, f"following the leader (pid {self.leader_pid})")
                return True
            except (OSError, WireError, TimeoutError, ShareUnavailable) as exc:
                self.link.disconnect()
                if isinstance(exc, ShareUnavailable):
                    raise
                if time.monotonic() + delay >= deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    async def _connect(self) -> None:
        assert self._socket is not None
        await self.link.connect(self._socket)

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

    def _is_degraded(self) -> bool:
        return self.degraded is not None

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
            if self.link.connected:
                await self.link.follow(progress, self._degrade, self._recover, self._is_degraded)
                self.failovers += 1
                goodbye = self.link.goodbye
                logger.log(
                    logging.INFO if goodbye else logging.WARNING,
                    "ApolloClient(%r): the leader (pid %s) %s; electing a new one",
                    self._options.app_id,
                    self.link.leader_pid,
                    "handed over (it closed)" if goodbye else "is gone",
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
                await self.link.read_until_complete()
                self._set_role(FOLLOWER, f"following the new leader (pid {self.leader_pid})")
                if self.degraded is not None:
                    await self._recover()
                return
            except ShareUnavailable as exc:
                self.link.disconnect()
                remake = True
                await self._degrade(f"cannot share: {exc}; polling Apollo from this process")
                delay = max(delay, 0.5)
            except (OSError, WireError, TimeoutError):
                self.link.disconnect()
                if time.monotonic() - silent_since > timing.LEADER_SILENCE:
                    await self._degrade(
                        "no leader answered for "
                        f"{timing.LEADER_SILENCE:g} s; polling Apollo from this process"
                    )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, timing.REJOIN_MAX if remake else 0.5)

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Leave the group: say goodbye to the followers, let go of the lock and the leader."""
        self.link.disconnect()
        await self.leader.close()
        if self._lock is not None:
            self._lock.release()

    def forked(self) -> None:
        """In a forked child: close inherited descriptors without touching the parent's."""
        if self._lock is not None:
            self._lock.forget_after_fork()
        leader_fds, leader_kept = self.leader.forked()
        link_fds, link_kept = self.link.forked()
        # The objects stay referenced, never finalized: that would close these numbers again.
        _process.keep_forever(*leader_kept, *link_kept)
        for fd in (*leader_fds, *link_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.role, self.degraded = SOLO, None


def warn_solo(app_id: str, reason: str) -> None:
    """Sharing was asked for but cannot be used: one warning, then solo."""
    logger.warning(
        "ApolloClient(%r): share_poll=True but this process runs solo (its own long poll): %s",
        app_id,
        reason,
    )
