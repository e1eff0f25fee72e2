"""The namespace store: the one owner of everything a client knows about each namespace.

Sources (the Apollo long poll and fetch, a sharing leader, the disk cache, a test's
:class:`~aioapollo._core.sources.MemorySource`) hand releases to :meth:`NamespaceStore.apply`.
It changes a namespace's snapshot, read view, notification id and messages together, in one
step that no reader can see half done, and then tells every *sink* (listener dispatch,
hooks, the sharing leader, the cache writer) once, with one :class:`Change` whose listener
event is built once. No sink calls another.

Between source and store, *transforms* (:meth:`NamespaceStore.add_transform`) may rewrite a
release's items (decrypting values, layering overrides, resolving placeholders): the
snapshot and the read view hold the transformed items, while the record keeps the release as
delivered (:attr:`NamespaceRecord.release`) for the sinks that must never see transformed
values (the disk cache, the sharing socket). Transforms are synchronous; work that must not
run on the event loop (decrypting with a KMS, a key derivation per value) is done ahead by
*preparers* (:meth:`NamespaceStore.add_preparer`), which :meth:`NamespaceStore.deliver`
awaits before it applies: sources call ``deliver``, so a transform is a dict lookup.

The read path never comes here: a facade keeps a reference to :attr:`NamespaceStore.values`
(one dict per namespace, replaced per release, the outer dict never replaced) and reads it
with a dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from .._apollo.parsing import parse_content
from .._apollo.wire import namespace_format
from .._exceptions import ApolloError
from .._models import ConfigChange, ConfigChangeEvent, NamespaceSnapshot, Source, diff_items

__all__ = [
    "Change",
    "NamespaceRecord",
    "NamespaceStore",
    "Preparer",
    "Release",
    "Sink",
    "Transform",
    "with_source",
]

logger = logging.getLogger("aioapollo")


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """One namespace's release as a source delivers it to the store.

    ``notification_id`` and ``messages``, when given, advance the namespace's long-poll
    position in the same step as its values (a release fetched because of a notification).
    ``items`` is never shown in a repr: it holds config values.
    """

    namespace: str
    items: Mapping[str, str]
    release_key: str | None
    source: Source
    #: Which source delivered it: ``"apollo"`` (fetched by this process), ``"leader"`` (pushed
    #: by a sharing leader), ``"cache"``, ``"empty"``, or a test source's name.
    origin: str = "apollo"
    notification_id: int | None = None
    messages: Mapping[str, int] | None = None
    #: Epoch seconds at which Apollo last confirmed this release (None: not confirmed now).
    synced_at: float | None = None

    def __repr__(self) -> str:
        return (
            f"Release(namespace={self.namespace!r}, release_key={self.release_key!r}, "
            f"source={self.source.value}, notification_id={self.notification_id}, "
            f"keys={len(self.items)})"
        )


class NamespaceRecord:
    """Everything known about one namespace: its release, its long-poll position, its sync
    time and fetch failures, where it came from, and the lock its fetches take.

    ``name``, ``notification_id`` and ``messages`` are what the long poll reads.
    """

    __slots__ = (
        "_lock",
        "format",
        "messages",
        "name",
        "notification_id",
        "refetch_failures",
        "release",
        "release_error",
        "snapshot",
        "synced_at",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.format = namespace_format(name)
        self.snapshot: NamespaceSnapshot | None = None
        #: The current release as its source delivered it (before any transform).
        self.release: Release | None = None
        self.notification_id = -1
        self.messages: dict[str, int] = {}
        self.synced_at: float | None = None
        self.refetch_failures = 0
        #: Why the newest release delivered was not applied (a preparer or transform failed,
        #: e.g. a value that does not decrypt), or None. Never holds a value.
        self.release_error: str | None = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        snap = self.snapshot
        key = snap.release_key if snap is not None else None
        source = snap.source.value if snap is not None else None
        return (
            f"<NamespaceRecord {self.name!r} release_key={key!r} source={source} "
            f"notification_id={self.notification_id}>"
        )

    @property
    def source(self) -> Source | None:
        """Where the current values came from (None before the first release)."""
        return self.snapshot.source if self.snapshot is not None else None

    @property
    def lock(self) -> asyncio.Lock:
        """The lock that serialises fetches of this namespace (made on first use, so a
        record made before a fork never hands out a lock of the parent's loop)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def drop_lock(self) -> asyncio.Lock | None:
        """Forget the lock (after fork, or when a client starts again on another loop);
        returns it, for a caller that must keep it referenced."""
        lock, self._lock = self._lock, None
        return lock


@dataclass(frozen=True, slots=True)
class Change:
    """What one :meth:`NamespaceStore.apply` did, as every sink receives it.

    ``event`` is the listeners' event, built once, or None when no key changed (a first load,
    a new release key with equal values, or a notification id that advanced alone).
    """

    record: NamespaceRecord
    release: Release | None
    #: No values before: this release is the namespace's first.
    first: bool
    #: Keys whose values changed (every key on a first load).
    changed: frozenset[str]
    event: ConfigChangeEvent | None
    #: Whether the application's listeners are to hear of it (False for warm values served
    #: at start, which a later release corrects).
    notify: bool


Sink = Callable[[Change], None]
#: ``transform(namespace, items) -> items``: rewrites a release's items on their way into the
#: store. It must not keep or log values; raising keeps the namespace's last good values.
Transform = Callable[[str, Mapping[str, str]], Mapping[str, str]]
#: ``await preparer(namespace, items)``: work done ahead of the transforms, off the store's
#: one synchronous step (decrypting). Raising keeps the namespace's last good values.
Preparer = Callable[[str, Mapping[str, str]], Awaitable[None]]


class NamespaceStore:
    """The records of a client's namespaces and the sinks that follow them."""

    __slots__ = ("_preparers", "_sinks", "_transforms", "records", "values")

    def __init__(self, namespaces: Iterable[str]) -> None:
        self.records: dict[str, NamespaceRecord] = {n: NamespaceRecord(n) for n in namespaces}
        #: The read view: namespace -> its current values (a plain dict per release).
        self.values: dict[str, dict[str, str]] = {}
        self._sinks: list[Sink] = []
        self._transforms: list[Transform] = []
        self._preparers: list[Preparer] = []

    def __repr__(self) -> str:
        return f"<NamespaceStore namespaces={list(self.records)!r}>"

    def __contains__(self, name: object) -> bool:
        return name in self.records

    # ------------------------------------------------------------------ reading

    def snapshot(self, name: str) -> NamespaceSnapshot | None:
        record = self.records.get(name)
        return record.snapshot if record is not None else None

    def formats(self) -> dict[str, str]:
        """Each namespace's format (``properties``, ``json``, ``yaml``, ...)."""
        return {n: r.format for n, r in self.records.items()}

    def snapshots(self) -> dict[str, NamespaceSnapshot]:
        """The loaded namespaces' current snapshots."""
        return {n: r.snapshot for n, r in self.records.items() if r.snapshot is not None}

    # ------------------------------------------------------------------ sinks

    def subscribe(self, sink: Sink) -> Callable[[], None]:
        """Call ``sink`` after every change; returns a function that unsubscribes it."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    def add_transform(self, transform: Transform) -> None:
        """Rewrite every later release's items with ``transform`` (after those added before)."""
        self._transforms.append(transform)

    def add_preparer(self, preparer: Preparer) -> None:
        """Await ``preparer`` in :meth:`deliver` before every later release is applied."""
        self._preparers.append(preparer)

    def _tell(self, change: Change) -> None:
        for sink in tuple(self._sinks):
            try:
                sink(change)
            except Exception:  # a sink's bug must not stop the others or the source
                logger.exception("a sink of namespace %r failed", change.record.name)

    # ------------------------------------------------------------------ writing

    async def deliver(self, release: Release, *, notify: bool = True) -> Change | None:
        """Await the preparers, then :meth:`apply`: how a source hands over a release.

        A preparer or transform that raises leaves the namespace as it was (its
        :attr:`NamespaceRecord.release_error` says why) and the error reaches the caller.
        """
        record = self.records.get(release.namespace)
        if record is None:
            return None
        try:
            for preparer in self._preparers:
                await preparer(release.namespace, release.items)
        except Exception as exc:
            record.release_error = _why(exc)
            raise
        return self.apply(release, notify=notify)

    def apply(self, release: Release, *, notify: bool = True) -> Change | None:
        """Make ``release`` the namespace's current one; return what changed, or None.

        Snapshot, read view, notification id and messages change in one step; then each sink
        is told once. Returns None (and tells nobody) for an unknown namespace.
        """
        record = self.records.get(release.namespace)
        if record is None:
            return None
        name = release.namespace
        held = record.snapshot
        items = release.items
        try:
            for transform in self._transforms:
                items = transform(name, items)  # raises: nothing changes, the source reports it
        except Exception as exc:
            record.release_error = _why(exc)
            raise
        if release.source is Source.REMOTE:
            # Apollo's own (or the leader's) release applied: the refusal is over. A cache
            # served instead at start leaves it shown.
            record.release_error = None
        data, error = parse_content(record.format, items, held.data if held else None)
        if error is not None:
            parsed_before = held is not None and (held.parse_error is None or held.data is not None)
            logger.warning(
                "namespace %r: %s; %s",
                name,
                error,
                "keeping the last parsed value"
                if parsed_before
                else ".data stays None until a release parses",
            )
        snap = NamespaceSnapshot(
            name,
            record.format,
            items,
            release_key=release.release_key,
            source=release.source,
            fetched_at=time.time(),
            data=data,
            parse_error=error,
        )
        record.snapshot = snap
        record.release = release
        self.values[name] = snap._dict
        self._advance(record, release.notification_id, release.messages)
        if release.synced_at is not None and (
            record.synced_at is None or release.synced_at > record.synced_at
        ):
            record.synced_at = release.synced_at
        if held is None:
            # First load: nothing to tell listeners, and a per-key diff against nothing costs
            # one object per key (0.24 s of a 0.38 s start with 100k keys).
            logger.info(
                "namespace %r loaded: %d key(s), release %s", name, len(snap), release.release_key
            )
            change = Change(record, release, True, frozenset(snap._dict), None, notify)
        else:
            changes: dict[str, ConfigChange] = diff_items(name, held._dict, snap._dict)
            event = ConfigChangeEvent(name, changes, snap) if changes else None
            if changes:
                logger.info(
                    "namespace %r changed: %d key(s), release %s",
                    name,
                    len(changes),
                    release.release_key,
                )
            change = Change(record, release, False, frozenset(changes), event, notify)
        self._tell(change)
        return change

    def reapply(self, name: str, *, notify: bool = True) -> Change | None:
        """Run the namespace's current release (as delivered) through the transforms again.

        For a transform whose own input changed (an override file was edited, a key that a
        placeholder refers to changed): the snapshot and read view get the new output and
        the sinks hear of the keys it changed, as for any release. Returns None when the
        namespace has no release yet. Raises what a transform raises (nothing changes).
        """
        record = self.records.get(name)
        if record is None or record.release is None:
            return None
        refused = record.release_error  # about a newer release than this one: it stays
        change = self.apply(record.release, notify=notify)
        record.release_error = refused
        return change

    def advance(self, name: str, notification_id: int, messages: Mapping[str, int]) -> None:
        """The long poll's position moved on with no new values (a 304 or 404 refetch)."""
        record = self.records.get(name)
        if record is None:
            return
        if self._advance(record, notification_id, messages):
            self._tell(Change(record, None, False, frozenset(), None, False))

    @staticmethod
    def _advance(
        record: NamespaceRecord, notification_id: int | None, messages: Mapping[str, int] | None
    ) -> bool:
        moved = False
        if notification_id is not None and notification_id > record.notification_id:
            record.notification_id = notification_id
            moved = True
        if messages is not None and messages != record.messages:
            record.messages = dict(messages)
            moved = True
        return moved

    def synced(self, name: str, when: float) -> None:
        """Apollo confirmed the namespace's release at ``when`` (a 200 or 304)."""
        record = self.records.get(name)
        if record is not None:
            record.synced_at = when

    def relabel(self, source: Source) -> None:
        """Mark every held release as coming from ``source`` (INHERITED after a fork)."""
        for name, record in self.records.items():
            snap = record.snapshot
            if snap is not None:
                record.snapshot = with_source(snap, source)
                self.values[name] = record.snapshot._dict


def _why(exc: Exception) -> str:
    """What ``release_error`` says: aioapollo's own messages never hold values; another
    exception's message might, so only its class is named."""
    text = str(exc) if isinstance(exc, ApolloError) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def with_source(snap: NamespaceSnapshot, source: Source) -> NamespaceSnapshot:
    """``snap`` with another :class:`Source` (the same values, parsed data and times)."""
    return NamespaceSnapshot(
        snap.name,
        snap.format,
        snap._dict,
        release_key=snap.release_key,
        source=source,
        fetched_at=snap.fetched_at,
        data=snap.data,
        parse_error=snap.parse_error,
    )
