"""Immutable value types: namespace snapshots, changes and change events."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeVar, overload

from ._apollo.wire import CONTENT_KEY
from ._durations import parse_duration
from ._exceptions import ConfigValueError
from ._flatten import flatten

__all__ = [
    "ChangeType",
    "ConfigChange",
    "ConfigChangeEvent",
    "NamespaceSnapshot",
    "Source",
    "diff_items",
]

T = TypeVar("T")

_TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "off", "n", "f"})
_EMPTY: Mapping[str, str] = MappingProxyType({})


class ChangeType(enum.Enum):
    """How one key changed between two releases."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Source(enum.Enum):
    """Where a namespace's current values came from."""

    #: Fetched from the config service in this process.
    REMOTE = "remote"
    #: Read from the local file cache because Apollo could not be reached.
    CACHE = "cache"
    #: Inherited from the parent process across ``fork()``; not refreshed here yet.
    INHERITED = "inherited"
    #: Nothing loaded (allowed only with ``allow_empty=True``).
    NONE = "none"
    #: Read from files in ``local_dir`` (local development: Apollo is never asked).
    LOCAL = "local"
    #: Read from the snapshot in ``bootstrap_dir`` because Apollo could not serve it at
    #: start and there was no cache; replaced as soon as Apollo answers.
    BOOTSTRAP = "bootstrap"


class Role(enum.StrEnum):
    """A client's part in its host's sharing group (``share_poll=True``; see docs/sharing.md).

    A string enum: ``stats().role == "leader"`` holds as before.
    """

    #: Polls Apollo itself (no sharing, or sharing is not possible here).
    SOLO = "solo"
    #: Polls Apollo for its group and pushes each release to the followers.
    LEADER = "leader"
    #: Applies the releases its leader pushes; holds no connection to Apollo.
    FOLLOWER = "follower"


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One changed key. Values are left out of ``repr()`` because configs hold secrets."""

    namespace: str
    key: str
    old_value: str | None = field(repr=False)
    new_value: str | None = field(repr=False)
    change_type: ChangeType


@dataclass(frozen=True, slots=True)
class ConfigChangeEvent:
    """Every change of one namespace since the listener's previous event for it.

    Usually that is one release. A listener that fell behind (the dispatcher was busy, or
    its own previous call was still running) gets one event for the releases it missed: the
    diff from the values it last saw to the newest ones, so a key changed and changed back
    is not in it, and ``releases`` says how many releases it spans.

    Attributes:
        namespace: The namespace name as configured on the client.
        changes: ``{key: ConfigChange}`` for every key that changed.
        snapshot: The namespace as it is after the change (its ``release_key`` is the
            newest release's).
        releases: How many releases the event spans (1 unless the listener fell behind).
    """

    namespace: str
    changes: Mapping[str, ConfigChange]
    snapshot: NamespaceSnapshot
    releases: int = 1

    @property
    def changed_keys(self) -> frozenset[str]:
        """The keys that changed."""
        return frozenset(self.changes)


class NamespaceSnapshot:
    """One namespace at one release: an immutable mapping of keys to string values.

    For json/yaml/yml/xml/txt namespaces ``items`` holds the single key ``content`` with the
    file text; ``content`` returns it and ``data`` the parsed JSON/YAML value. If the current
    text does not parse, ``data`` keeps the last value that did and ``parse_error`` says why.
    :meth:`as_properties` reads a yaml/yml/json namespace as flat dotted keys.
    """

    __slots__ = (
        "_dict",
        "_flat",
        "_items",
        "data",
        "fetched_at",
        "format",
        "name",
        "parse_error",
        "release_key",
        "source",
    )

    def __init__(
        self,
        name: str,
        fmt: str,
        items: Mapping[str, str],
        *,
        release_key: str | None,
        source: Source,
        fetched_at: float,
        data: Any = None,
        parse_error: str | None = None,
    ) -> None:
        self.name = name
        self.format = fmt
        #: The plain dict behind ``items``; the client's read path uses it directly.
        self._dict: dict[str, str] = dict(items)
        self._items: Mapping[str, str] = MappingProxyType(self._dict) if items else _EMPTY
        self.release_key = release_key
        self.source = source
        self.fetched_at = fetched_at
        self.data = data
        self.parse_error = parse_error
        self._flat: NamespaceSnapshot | None = None

    @property
    def items(self) -> Mapping[str, str]:
        """The key/value map (read-only)."""
        return self._items

    @property
    def content(self) -> str | None:
        """The raw file text of a non-properties namespace (``None`` for properties)."""
        if self.format == "properties":
            return None
        return self._items.get(CONTENT_KEY)

    def __repr__(self) -> str:
        return (
            f"<NamespaceSnapshot {self.name!r} format={self.format} keys={len(self._items)} "
            f"release_key={self.release_key!r} source={self.source.value}>"
        )

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: T) -> str | T: ...
    def get(self, key: str, default: object = None) -> object:
        """The value of ``key``, or ``default``."""
        return self._items.get(key, default)

    def _raw(self, key: str) -> str | None:
        return self._items.get(key)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        """``key`` as an int; ``default`` if missing; :class:`ConfigValueError` if malformed."""
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigValueError(self.name, key, "int") from None

    def get_float(self, key: str, default: float | None = None) -> float | None:
        """``key`` as a finite float; ``default`` if missing."""
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigValueError(self.name, key, "float") from None
        if not math.isfinite(value):
            raise ConfigValueError(self.name, key, "finite float")
        return value

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        """``key`` as a bool (true/false, 1/0, yes/no, on/off, any case); ``default`` if missing."""
        raw = self._raw(key)
        if raw is None:
            return default
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigValueError(self.name, key, "bool")

    def get_list(
        self, key: str, default: list[str] | None = None, *, delimiter: str = ","
    ) -> list[str] | None:
        """``key`` split on ``delimiter``, items stripped, empty items dropped."""
        raw = self._raw(key)
        if raw is None:
            return default
        return [part.strip() for part in raw.split(delimiter) if part.strip()]

    def get_json(self, key: str, default: Any = None) -> Any:
        """``key`` parsed as JSON; ``default`` if missing."""
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigValueError(self.name, key, "JSON value") from None

    def get_duration(self, key: str, default: timedelta | None = None) -> timedelta | None:
        """``key`` as a :class:`~datetime.timedelta`; ``default`` if missing.

        Reads ``"1h30m"``, ``"500ms"``, ``"1.5s"``, ``"2d"`` (units d, h, m, s, ms, us, ns,
        largest first) and ISO 8601 ``"PT90S"``, ``"P1DT2H"``. A bare number (``"30"``: seconds
        or milliseconds?) raises :class:`ConfigValueError`, as does anything else.
        """
        raw = self._raw(key)
        if raw is None:
            return default
        value = parse_duration(raw)
        if value is None:
            raise ConfigValueError(
                self.name, key, "duration (e.g. '1h30m', '500ms' or ISO 8601 'PT90S')"
            )
        return value

    def as_properties(self) -> NamespaceSnapshot:
        """This yaml/yml/json namespace read as flat dotted keys (the Java client's YAML reads).

        ``server: {port: 8080, hosts: [a, b]}`` gives the keys ``server.port`` (``"8080"``),
        ``server.hosts[0]`` and ``server.hosts[1]``; every typed getter works on them. The
        result is a properties snapshot with this one's release key and source, made once
        per release. A properties namespace returns itself; xml/txt raise :class:`ValueError`.
        If the current text does not parse, the keys are those of the last text that did.
        """
        if self.format == "properties":
            return self
        flat = self._flat
        if flat is None:
            if self.format not in ("json", "yaml", "yml"):
                raise ValueError(
                    f"namespace {self.name!r} is {self.format}: only yaml, yml and json "
                    "namespaces can be read as flat keys"
                )
            flat = self._flat = NamespaceSnapshot(
                self.name,
                "properties",
                flatten(self.data),
                release_key=self.release_key,
                source=self.source,
                fetched_at=self.fetched_at,
                parse_error=self.parse_error,
            )
        return flat


def diff_items(
    namespace: str, old: Mapping[str, str], new: Mapping[str, str]
) -> dict[str, ConfigChange]:
    """Work out ADDED / MODIFIED / DELETED per key between two maps."""
    changes: dict[str, ConfigChange] = {}
    for key, value in new.items():
        before = old.get(key)
        if before is None:
            changes[key] = ConfigChange(namespace, key, None, value, ChangeType.ADDED)
        elif before != value:
            changes[key] = ConfigChange(namespace, key, before, value, ChangeType.MODIFIED)
    for key, value in old.items():
        if key not in new:
            changes[key] = ConfigChange(namespace, key, value, None, ChangeType.DELETED)
    return changes
