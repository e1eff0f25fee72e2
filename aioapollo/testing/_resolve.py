"""What the config service answers, worked out from a ReleaseStore (no I/O).

Mirrors ``ConfigController`` (own + public merge), ``AbstractConfigService`` (cluster →
dataCenter → default, gray first), ``WatchKeysUtil``, the incremental-sync diff and
``PropertiesUtil``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._apollo.wire import watch_key
from ._store import APPLICATION, DEFAULT_CLUSTER, NO_APP_ID, Release, ReleaseStore

__all__ = [
    "Resolved",
    "incremental_changes",
    "merge",
    "properties_text",
    "resolve",
    "watch_keys",
]


@dataclass(frozen=True)
class Resolved:
    """The releases a ``/configs`` request gets: the app's own first, then the public one."""

    namespace: str
    cluster: str
    releases: Sequence[Release] = field(repr=False)

    @property
    def release_key(self) -> str:
        """The merged releaseKey, ``own+public`` or the one that exists."""
        return "+".join(release.key for release in self.releases)

    @property
    def configurations(self) -> dict[str, str]:
        """The merged key/value pairs: public first, the app's own keys override them."""
        return merge(self.releases)


def merge(releases: Sequence[Release]) -> dict[str, str]:
    """Merge like ``mergeReleaseConfigurations``: earlier releases override later ones."""
    result: dict[str, str] = {}
    for release in reversed(releases):
        result.update(release.configurations)
    return result


def _is_no_app_id(app_id: str) -> bool:
    return app_id.lower() == NO_APP_ID.lower()


def _load(
    store: ReleaseStore,
    client_app_id: str,
    ip: str | None,
    label: str | None,
    app_id: str,
    cluster: str,
    namespace: str,
    data_center: str | None,
) -> Release | None:
    if cluster != DEFAULT_CLUSTER:
        release = store.find_release(client_app_id, ip, label, app_id, cluster, namespace)
        if release is not None:
            return release
    if data_center and data_center != cluster:
        release = store.find_release(client_app_id, ip, label, app_id, data_center, namespace)
        if release is not None:
            return release
    return store.find_release(client_app_id, ip, label, app_id, DEFAULT_CLUSTER, namespace)


def _belongs_to(store: ReleaseStore, app_id: str, namespace: str) -> bool:
    if namespace == APPLICATION:
        return True
    if _is_no_app_id(app_id):
        return False
    return store.belongs_to(app_id, namespace)


def resolve(
    store: ReleaseStore,
    app_id: str,
    cluster: str,
    namespace: str,
    *,
    data_center: str | None = None,
    ip: str | None = None,
    label: str | None = None,
) -> Resolved | None:
    """Find the releases for a ``/configs`` request, or ``None`` (the server's 404)."""
    with store.lock:
        name = store.canonical(app_id, namespace)
        releases: list[Release] = []
        loaded_cluster = cluster
        if not _is_no_app_id(app_id):
            own = _load(store, app_id, ip, label, app_id, cluster, name, data_center)
            if own is not None:
                releases.append(own)
                loaded_cluster = own.cluster
        if not _belongs_to(store, app_id, name):
            owner = store.public_owner(name)
            if owner is not None and owner != app_id:
                public = _load(store, app_id, ip, label, owner, cluster, name, data_center)
                if public is not None:
                    releases.append(public)
    if not releases:
        return None
    return Resolved(name, loaded_cluster, tuple(releases))


def incremental_changes(
    store: ReleaseStore, client_release_key: str, latest: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    """The ``configurationChanges`` from the client's release to ``latest``.

    ``None`` means a full sync is due: none of the client's (``+``-split) keys is known, or
    its releases had no keys at all.
    """
    parts = list(dict.fromkeys(client_release_key.split("+")))
    old = merge(store.releases_by_key(parts))
    if not old:
        return None
    changes: list[dict[str, Any]] = [
        {"key": key, "newValue": value, "configurationChangeType": "ADDED"}
        for key, value in latest.items()
        if key not in old
    ]
    changes.extend(
        {"key": key, "configurationChangeType": "DELETED"} for key in old if key not in latest
    )
    changes.extend(
        {"key": key, "newValue": value, "configurationChangeType": "MODIFIED"}
        for key, value in latest.items()
        if key in old and old[key] != value
    )
    return changes


def _keys(app_id: str, cluster: str, namespace: str, data_center: str | None) -> set[str]:
    if _is_no_app_id(app_id):
        return set()
    keys = {watch_key(app_id, DEFAULT_CLUSTER, namespace)}
    if cluster != DEFAULT_CLUSTER:
        keys.add(watch_key(app_id, cluster, namespace))
    if data_center and data_center != cluster:
        keys.add(watch_key(app_id, data_center, namespace))
    return keys


def watch_keys(
    store: ReleaseStore,
    app_id: str,
    cluster: str,
    namespaces: Iterable[str],
    data_center: str | None,
) -> dict[str, set[str]]:
    """The watch keys of each (canonical) namespace, like ``WatchKeysUtil``.

    Own keys for every namespace; for one the app does not own, the public owner's keys too.
    """
    names = set(namespaces)
    result = {name: _keys(app_id, cluster, name, data_center) for name in names}
    if names == {APPLICATION}:
        return result
    with store.lock:
        for name in names:
            if not _is_no_app_id(app_id) and store.belongs_to(app_id, name):
                continue
            owner = store.public_owner(name)
            if owner is not None and owner != app_id:
                result[name] |= _keys(owner, cluster, name, data_center)
    return result


def _escape(text: str, *, is_key: bool) -> str:
    # java.util.Properties#saveConvert with escUnicode=false (store(Writer)).
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == " ":
            out.append("\\ " if index == 0 or is_key else " ")
        elif char in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[char])
        elif char in "=:#!":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def properties_text(items: Mapping[str, str]) -> str:
    """Java ``Properties.store(Writer)`` output without its date comment line.

    Keys escape spaces, values only a leading one; ``\\``, ``=``, ``:``, ``#``, ``!`` and the
    control characters ``\\t\\n\\r\\f`` are escaped; non-ASCII is written as is. Java writes the
    lines in hash order; here they follow the release's key order.
    """
    return "".join(
        f"{_escape(key, is_key=True)}={_escape(value, is_key=False)}\n"
        for key, value in items.items()
    )
