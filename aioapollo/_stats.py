"""``ApolloClient.stats()``: a point-in-time health summary for health endpoints and the CLI.

The summary names namespaces, release keys, notification ids, sources and times; it never
holds config values or the access-key secret, so it is safe to serve from ``/health``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._core.listeners import ListenerStats
from ._models import Role, Source

if TYPE_CHECKING:
    from ._config import ClientOptions
    from ._core.store import NamespaceStore
    from ._core.supervise import Supervisor
    from ._resources import ResourceSet, ResourceStats
    from ._share import Sharing

__all__ = ["ClientStats", "NamespaceStats", "collect_stats"]


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """Health of one namespace.

    Attributes:
        name: The namespace as configured on the client.
        source: Where its current values came from (``None`` before the first load).
        release_key: The Apollo release held (``None`` for cache or empty starts).
        notification_id: The long poll's id for it (-1 until first notified).
        keys: How many keys it holds.
        loaded_at: Epoch seconds when its current values were installed.
        synced_at: Epoch seconds when Apollo last confirmed them (a 200/304 from
            ``/configs``, or a successful long poll while they came from Apollo).
        parse_error: Why its json/yaml content does not parse, if it does not.
        release_error: Why the newest release Apollo served was refused, if it was (a value
            of the form ``ENC(...)`` that does not decrypt: the message names the keys, never
            a value); the namespace keeps its last good values meanwhile.
        overridden: The keys whose values come from the ``overrides`` files, sorted.
        unresolved: With ``resolve_placeholders``, the keys whose value keeps a ``${...}``
            as written (no namespace has the key it names, or a cycle; see the log), sorted.
    """

    name: str
    source: Source | None
    release_key: str | None
    notification_id: int
    keys: int
    loaded_at: float | None
    synced_at: float | None
    parse_error: str | None
    release_error: str | None = None
    overridden: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source.value if self.source else None,
            "release_key": self.release_key,
            "notification_id": self.notification_id,
            "keys": self.keys,
            "loaded_at": self.loaded_at,
            "synced_at": self.synced_at,
            "parse_error": self.parse_error,
            "release_error": self.release_error,
            "overridden": list(self.overridden),
            "unresolved": list(self.unresolved),
        }


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Health of a client.

    Attributes:
        app_id: The Apollo appId.
        cluster: The cluster read.
        state: The lifecycle state's value (``"running"``, ``"forked"``, ...).
        pid: The process these stats were taken in.
        last_poll_success: Epoch seconds of the last long poll answered 200/304.
        last_sync: Epoch seconds of the last successful exchange with Apollo (poll or fetch).
        namespaces: Per-namespace details.
        poll_cuts: Long polls a reverse proxy cut at about the hold time (a 502, 504 or
            closed connection; handled like a 304). Not 0: raise that proxy's timeout.
        role: ``"solo"`` (its own long poll), or with ``share_poll=True`` ``"leader"`` (polls
            Apollo for its host's group) or ``"follower"`` (gets the leader's releases).
        leader_pid: The group leader's pid (``None`` when solo).
        followers: How many followers a leader serves (``None`` unless leading).
        group: The sharing group's fingerprint (``None`` when solo): processes share only
            when theirs are equal. Derived from the options; the secret only as a keyed hash.
        degraded: Why this client does less than it should, or ``None``: a follower whose
            leader went silent and that polls Apollo itself meanwhile, and each background
            loop that crashed and has not completed an iteration since, or is failing (one
            reason per loop, joined with ``"; "``).
        failovers: How many times this client saw its group's leader go away.
        leader_healthy: A follower's view of its leader's health (``None`` otherwise).
        in_sync: Whether a follower holds what its leader's last heartbeat listed.
        listeners: Change-listener dispatch counters (queue depth, abandoned calls, ...),
            when collected.
        degraded_loops: The background loops (``"poll"``, ``"refresh"``, ``"listeners"``,
            ``"cache"``, ``"share"``, ``"share-send"``) restarted after an unexpected
            exception that have not completed an iteration since.
        failing_loops: The loops that crashed 5 times within 10 minutes: retried slowly,
            and the client is not :attr:`healthy` while any is listed.
        polls_apollo: Whether this process polls Apollo itself: solo, leader, or a follower
            whose leader is silent (see ``degraded``).
        resources: Counters of each live resource (:meth:`ApolloClient.resource`); one whose
            rebuild failed and that serves its previous object is named in ``degraded``.
        long_polls: Long polls this process holds on Apollo: one, or one per group of
            namespaces when their names do not fit one request line; 0 while following a
            sharing leader, before ``start()`` and after close.
        unreachable: Config service URLs (credentials removed) that a connection or
            timeout failed on lately: tried last until a cooldown ends.
    """

    app_id: str
    cluster: str
    state: str
    pid: int
    last_poll_success: float | None
    last_sync: float | None
    namespaces: Mapping[str, NamespaceStats]
    poll_cuts: int = 0
    role: Role = Role.SOLO
    leader_pid: int | None = None
    followers: int | None = None
    group: str | None = None
    degraded: str | None = None
    failovers: int = 0
    leader_healthy: bool | None = None
    in_sync: bool | None = None
    listeners: ListenerStats | None = None
    degraded_loops: tuple[str, ...] = ()
    failing_loops: tuple[str, ...] = ()
    polls_apollo: bool = True
    resources: tuple[ResourceStats, ...] = ()
    long_polls: int = 0
    unreachable: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """Running with every namespace served by Apollo and no loop over its crash budget;
        a follower also needs a healthy leader whose last heartbeat matches what it holds
        (or, degraded, its own polls)."""
        if (
            self.state != "running"
            or self.failing_loops
            or not all(ns.source is Source.REMOTE for ns in self.namespaces.values())
        ):
            return False
        if self.role == "follower" and not self.polls_apollo:
            return bool(self.leader_healthy) and bool(self.in_sync)
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. for ``return JSONResponse(client.stats().as_dict())``."""
        shown: dict[str, Any] = {
            "app_id": self.app_id,
            "cluster": self.cluster,
            "state": self.state,
            "healthy": self.healthy,
            "pid": self.pid,
            "last_poll_success": self.last_poll_success,
            "last_sync": self.last_sync,
            "poll_cuts": self.poll_cuts,
            "long_polls": self.long_polls,
            "unreachable": list(self.unreachable),
            "role": self.role,
            "leader_pid": self.leader_pid,
            "followers": self.followers,
            "group": self.group,
            "degraded": self.degraded,
            "degraded_loops": list(self.degraded_loops),
            "failing_loops": list(self.failing_loops),
            "polls_apollo": self.polls_apollo,
            "failovers": self.failovers,
            "leader_healthy": self.leader_healthy,
            "in_sync": self.in_sync,
            "namespaces": {name: ns.as_dict() for name, ns in self.namespaces.items()},
        }
        if self.listeners is not None:
            shown["listeners"] = self.listeners.as_dict()
        if self.resources:
            shown["resources"] = {r.name: r.as_dict() for r in self.resources}
        return shown


def collect_stats(
    store: NamespaceStore,
    *,
    options: ClientOptions,
    state: str,
    last_poll_success: float | None,
    poll_cuts: int,
    share: Sharing | None,
    supervisor: Supervisor,
    listeners: ListenerStats,
    long_polls: int = 0,
    unreachable: tuple[str, ...] = (),
    resources: ResourceSet | None = None,
    overridden: Mapping[str, frozenset[str]] | None = None,
    unresolved: Mapping[str, tuple[str, ...]] | None = None,
) -> ClientStats:
    """Build a :class:`ClientStats` from the parts a client hands over: its namespace store,
    state, poll times, sharing membership, loop supervisor and listener counters."""
    polled = last_poll_success
    namespaces: dict[str, NamespaceStats] = {}
    synced: dict[str, float] = {}
    for name, record in store.records.items():
        snap = record.snapshot
        fetched = record.synced_at
        if fetched is not None:
            synced[name] = fetched
        confirmed = [t for t in (fetched,) if t is not None]
        if polled is not None and snap is not None and snap.source is Source.REMOTE:
            confirmed.append(polled)
        namespaces[name] = NamespaceStats(
            name=name,
            source=snap.source if snap is not None else None,
            release_key=snap.release_key if snap is not None else None,
            notification_id=record.notification_id,
            keys=len(snap) if snap is not None else 0,
            loaded_at=snap.fetched_at if snap is not None else None,
            synced_at=max(confirmed) if confirmed else None,
            parse_error=snap.parse_error if snap is not None else None,
            release_error=record.release_error,
            overridden=tuple(sorted((overridden or {}).get(name, ()))),
            unresolved=(unresolved or {}).get(name, ()),
        )
    times = [t for t in (polled, *synced.values()) if t is not None]
    sharing = _sharing_stats(share)
    reasons = [r for r in (sharing.pop("degraded", None), *supervisor.reasons()) if r]
    if resources is not None:
        reasons += resources.degraded()
    return ClientStats(
        app_id=options.app_id,
        cluster=options.cluster,
        state=state,
        pid=os.getpid(),
        last_poll_success=polled,
        last_sync=max(times) if times else None,
        namespaces=MappingProxyType(namespaces),
        poll_cuts=poll_cuts,
        long_polls=long_polls,
        unreachable=unreachable,
        listeners=listeners,
        degraded="; ".join(reasons) or None,
        degraded_loops=supervisor.degraded,
        failing_loops=supervisor.failing(),
        resources=resources.stats() if resources is not None else (),
        **sharing,
    )


def _sharing_stats(share: Sharing | None) -> dict[str, Any]:
    if share is None:
        return {}
    following = share.role == "follower"
    return {
        "role": share.role,
        "leader_pid": share.leader_pid,
        "followers": share.followers if share.role == "leader" else None,
        "group": share.fingerprint,
        "degraded": share.degraded,
        "polls_apollo": not following or share.degraded is not None,
        "failovers": share.failovers,
        "leader_healthy": share.leader_healthy if following else None,
        "in_sync": share.in_sync if following else None,
    }
