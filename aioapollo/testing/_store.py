"""In-memory release state of the test server: namespaces, releases, gray rules, secrets, messages.

A :class:`ReleaseStore` plays the part of Apollo's config database. It is thread-safe: every
method takes one lock, and listeners (the servers holding long polls) are called after it is
released, in the thread that changed the store. With a state file it also outlives the
process, like the database does: every change is written to the file (see ``_state.py``).
"""

from __future__ import annotations

import logging
import os
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast

from .._apollo.wire import CONTENT_KEY, namespace_format, strip_properties, watch_key
from ._state import read_state, strings, text, write_state

_T = TypeVar("_T")

__all__ = ["GrayRule", "Release", "ReleaseStore"]

logger = logging.getLogger("aioapollo.testing")

#: appId the Java client uses when it has none; such clients only get public namespaces.
NO_APP_ID = "ApolloNoAppIdPlaceHolder"
DEFAULT_CLUSTER = "default"
APPLICATION = "application"

ReleaseListener = Callable[[str, int], None]


@dataclass(frozen=True, eq=False)
class Release:
    """One release of a namespace, as the config service would load it.

    Attributes:
        key: The releaseKey, ``yyyyMMddHHmmss-<16 hex>``, unique in the store.
        app_id: The app owning the namespace.
        cluster: The cluster the release lives in; for a gray release that is the branch's
            generated child-cluster name, as in Apollo.
        namespace: The namespace name as stored (never with a ``.properties`` suffix).
        configurations: The released key/value pairs (left out of the repr).
    """

    key: str
    app_id: str
    cluster: str
    namespace: str
    configurations: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class GrayRule:
    """A gray-release rule item: which clients get the branch release (Apollo's rule DTO)."""

    client_app_id: str
    ips: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()

    def matches(self, app_id: str, ip: str | None, label: str | None) -> bool:
        """Match like ``GrayReleaseRuleItemDTO.matches``: same appId and ip or label listed.

        ``*`` in a list matches every client, even one that sent no ip or label.
        """
        if self.client_app_id.lower() != app_id.lower():
            return False
        return "*" in self.ips or ip in self.ips or "*" in self.labels or label in self.labels


@dataclass
class _Branch:
    name: str
    rules: tuple[GrayRule, ...]
    release: Release

    def matches(self, app_id: str, ip: str | None, label: str | None) -> bool:
        return any(rule.matches(app_id, ip, label) for rule in self.rules)


@dataclass
class _State:
    release: Release | None = None
    branch: _Branch | None = None


def _configurations(namespace: str, data: Mapping[str, str] | str) -> Mapping[str, str]:
    if isinstance(data, str):
        if namespace_format(namespace) == "properties":
            raise ValueError(
                f"raw text needs a non-properties namespace such as 'x.json', got {namespace!r}"
            )
        return MappingProxyType({CONTENT_KEY: data})
    items = dict(data)
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"configuration keys and values must be str (key {key!r})")
    return MappingProxyType(items)


class ReleaseStore:
    """Releases and release messages shared by one or more :class:`ApolloTestServer`.

    Namespace names are matched like the config service does: ``.properties`` is stripped and
    an app's namespaces and public namespaces are looked up case-insensitively, the name first
    created being kept. appIds and clusters are compared exactly (secrets excepted, which are
    looked up case-insensitively as Apollo does).

    Args:
        state_file: Keep the store in this JSON file: it is loaded when it exists and
            rewritten (atomically, mode 0600) after every change, so releases, releaseKeys,
            secrets and release-message ids survive a restart. Past releases are not kept,
            so an incremental-sync client answers a restarted server with a full sync.
        notification_id_base: Release-message (notification) ids start above this. Real
            Apollo's ids only ever grow, and a client holding a higher id than the server's
            newest is held without hearing of new releases; a store replacing an earlier
            one (a restarted server) should start above that one's ids, e.g. at the current
            time in milliseconds. Loaded ids count too: the next id is above both.

    Raises:
        ValueError: ``state_file`` cannot be read or is not a state file.
    """

    def __init__(
        self,
        *,
        state_file: str | os.PathLike[str] | None = None,
        notification_id_base: int = 0,
    ) -> None:
        if isinstance(notification_id_base, bool) or notification_id_base < 0:
            raise ValueError("notification_id_base must be a non-negative int")
        self._lock = threading.RLock()
        # (appId.lower(), name.lower()) -> stored name: the app's own namespaces.
        self._app_namespaces: dict[tuple[str, str], str] = {}
        # name.lower() -> (owner appId, stored name): public namespaces.
        self._public: dict[str, tuple[str, str]] = {}
        self._states: dict[tuple[str, str, str], _State] = {}
        self._by_key: dict[str, Release] = {}
        self._secrets: dict[str, tuple[str, ...]] = {}
        self._message_ids: dict[str, int] = {}
        self._last_id = int(notification_id_base)
        self._listeners: list[ReleaseListener] = []
        self._attached: dict[Callable[[ReleaseStore], Any], object] = {}
        self._state_file = Path(state_file) if state_file is not None else None
        if self._state_file is not None:
            saved = read_state(self._state_file)
            if saved is not None:
                try:
                    self._restore(saved)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"state file {self._state_file} is damaged: {exc}") from None

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<ReleaseStore namespaces={len(self._app_namespaces)} "
                f"releases={len(self._by_key)} last_message_id={self._last_id}>"
            )

    @property
    def lock(self) -> threading.RLock:
        """The store's lock, for callers that need several reads to be consistent."""
        return self._lock

    def attached(self, kind: Callable[[ReleaseStore], _T]) -> _T:
        """The one ``kind(self)`` of this store, made on first use: how the portal (items,
        release ids, locks, OpenAPI consumers) lives beside the releases, so test servers
        sharing a store share their portal too. Not kept in the state file."""
        with self._lock:
            found = self._attached.get(kind)
            if found is None:
                found = self._attached[kind] = kind(self)
            return cast(_T, found)

    @property
    def state_file(self) -> Path | None:
        """The file this store is kept in, if any."""
        return self._state_file

    # ----------------------------------------------------------------- changing the store

    def create_namespace(self, app_id: str, namespace: str, *, public: bool = False) -> str:
        """Make a namespace exist (without a release) and return its stored name.

        A name that is already public and owned by another app is an *associated* namespace:
        the app may publish its own override for it, merged over the public release.
        """
        with self._lock:
            stored = self._create(app_id, namespace, public)
            self._save()
            return stored

    def _create(self, app_id: str, namespace: str, public: bool) -> str:
        name = strip_properties(namespace)
        if not app_id or not name:
            raise ValueError("app_id and namespace must not be empty")
        with self._lock:
            self._app_namespaces.setdefault((app_id.lower(), APPLICATION), APPLICATION)
            own = self._app_namespaces.get((app_id.lower(), name.lower()))
            owner = self._public.get(name.lower())
            if owner is not None and owner[0] != app_id:
                if public:
                    raise ValueError(f"public namespace {owner[1]!r} belongs to app {owner[0]!r}")
                return own if own is not None else owner[1]
            if own is None:
                own = name
                self._app_namespaces[(app_id.lower(), name.lower())] = own
            if public:
                self._public[name.lower()] = (app_id, own)
            return own

    def publish(
        self,
        app_id: str,
        namespace: str,
        data: Mapping[str, str] | str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        public: bool = False,
        gray_ips: Iterable[str] | None = None,
        gray_labels: Iterable[str] | None = None,
        gray_client_app_id: str | None = None,
    ) -> str:
        """Release a namespace and return the new releaseKey.

        Args:
            app_id: The app the namespace belongs to (or which overrides a public namespace).
            namespace: The namespace name; ``.properties`` is stripped, the case of an
                existing namespace is kept.
            data: Key/value pairs, or the raw text of a non-properties namespace (stored
                under the single ``content`` key).
            cluster: The cluster to release to.
            public: Make the namespace public (owned by ``app_id``).
            gray_ips: With ``gray_labels``: make this a gray (branch) release served only to
                matching clients; ``*`` matches all. The main release is left as it is.
            gray_labels: Client labels the gray release is served to.
            gray_client_app_id: appId of the clients the gray rule applies to; defaults to
                ``app_id`` (set it for gray releases of a public namespace).
        """
        gray = gray_ips is not None or gray_labels is not None
        if not cluster:
            raise ValueError("cluster must not be empty")
        with self._lock:
            name = self._create(app_id, namespace, public)
            configurations = _configurations(name, data)
            state = self._states.setdefault((app_id, cluster, name), _State())
            key = self._new_key()
            if gray:
                branch_name = state.branch.name if state.branch else self._new_key()
                release = Release(key, app_id, branch_name, name, configurations)
                rule = GrayRule(
                    gray_client_app_id or app_id,
                    frozenset(gray_ips or ()),
                    frozenset(gray_labels or ()),
                )
                state.branch = _Branch(branch_name, (rule,), release)
            else:
                release = Release(key, app_id, cluster, name, configurations)
                state.release = release
            self._by_key[key] = release
            message = watch_key(app_id, cluster, name)
            message_id = self._send(message)
            self._save()
        logger.info(
            "published %s releaseKey=%s (%d keys%s)",
            message,
            key,
            len(configurations),
            ", gray" if gray else "",
        )
        self._notify(message, message_id)
        return key

    def delete_release(self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER) -> None:
        """Withdraw a namespace's main release: ``/configs`` then answers 404.

        Raises:
            KeyError: The namespace has no release in that cluster.
        """
        self._withdraw(app_id, namespace, cluster, gray=False)

    def clear_gray(self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER) -> None:
        """Delete a namespace's gray branch, so every client gets the main release again.

        Raises:
            KeyError: The namespace has no gray release in that cluster.
        """
        self._withdraw(app_id, namespace, cluster, gray=True)

    def _withdraw(self, app_id: str, namespace: str, cluster: str, *, gray: bool) -> None:
        """Drop the main release or the gray branch; either is a release message."""
        what = "gray release" if gray else "release"
        with self._lock:
            name = self.canonical(app_id, namespace)
            state = self._states.get((app_id, cluster, name))
            held = None if state is None else (state.branch if gray else state.release)
            if state is None or held is None:
                raise KeyError(f"no {what} of {watch_key(app_id, cluster, name)}")
            if gray:
                state.branch = None
            else:
                state.release = None
            message = watch_key(app_id, cluster, name)
            message_id = self._send(message)
            self._save()
        logger.info("withdrew %s of %s", what, message)
        self._notify(message, message_id)

    def drop(self, app_id: str, *, cluster: str | None = None, namespace: str | None = None) -> int:
        """Delete an app, one of its clusters, or a namespace (in one cluster, or everywhere):
        their releases are withdrawn (a release message each, so clients see the 404), and an
        app or a namespace deleted everywhere stops existing. Returns how many releases went.
        """
        with self._lock:
            name = None if namespace is None else self.canonical(app_id, namespace)
            messages = []
            for key in list(self._states):
                app, where, held = key
                if app != app_id or (cluster is not None and where != cluster):
                    continue
                if name is not None and held != name:
                    continue
                state = self._states.pop(key)
                if state.release is not None or state.branch is not None:
                    message = watch_key(app, where, held)
                    messages.append((message, self._send(message)))
            if cluster is None:
                for own in list(self._app_namespaces):
                    if own[0] == app_id.lower() and (name is None or own[1] == name.lower()):
                        del self._app_namespaces[own]
                for public, (owner, stored) in list(self._public.items()):
                    if owner == app_id and (name is None or stored == name):
                        del self._public[public]
                if name is None:
                    self._secrets.pop(app_id.lower(), None)
            self._save()
        for message, message_id in messages:
            self._notify(message, message_id)
        return len(messages)

    def publish_gray(
        self,
        app_id: str,
        namespace: str,
        data: Mapping[str, str] | str,
        *,
        branch: str,
        rules: Iterable[GrayRule],
        cluster: str = DEFAULT_CLUSTER,
    ) -> str:
        """Release a gray branch named ``branch`` with these rules (any one matching serves
        it); replaces the namespace's branch. Returns the releaseKey."""
        with self._lock:
            name = self._create(app_id, namespace, False)
            state = self._states.setdefault((app_id, cluster, name), _State())
            key = self._new_key()
            release = Release(key, app_id, branch, name, _configurations(name, data))
            state.branch = _Branch(branch, tuple(rules), release)
            self._by_key[key] = release
            message = watch_key(app_id, cluster, name)
            message_id = self._send(message)
            self._save()
        logger.info("published %s releaseKey=%s (gray branch %s)", message, key, branch)
        self._notify(message, message_id)
        return key

    def set_gray_rules(
        self,
        app_id: str,
        namespace: str,
        rules: Iterable[GrayRule],
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        """Replace the rules of a namespace's gray branch; clients are told, as by Apollo.

        Raises:
            KeyError: The namespace has no gray release in that cluster.
        """
        with self._lock:
            name = self.canonical(app_id, namespace)
            state = self._states.get((app_id, cluster, name))
            if state is None or state.branch is None:
                raise KeyError(f"no gray release of {watch_key(app_id, cluster, name)}")
            state.branch.rules = tuple(rules)
            message = watch_key(app_id, cluster, name)
            message_id = self._send(message)
            self._save()
        self._notify(message, message_id)

    def gray_branch(
        self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER
    ) -> tuple[str, tuple[GrayRule, ...], Release] | None:
        """The namespace's gray branch: its name, rules and release (``None`` if none)."""
        with self._lock:
            state = self._states.get((app_id, cluster, self.canonical(app_id, namespace)))
            branch = None if state is None else state.branch
            return None if branch is None else (branch.name, branch.rules, branch.release)

    def reinstate(
        self, app_id: str, namespace: str, release_key: str, cluster: str = DEFAULT_CLUSTER
    ) -> None:
        """Serve an earlier release of the namespace again (a rollback); a release message.

        Raises:
            KeyError: No release of that namespace has this key.
        """
        with self._lock:
            name = self.canonical(app_id, namespace)
            held = self._by_key.get(release_key)
            if held is None or (held.app_id, held.cluster, held.namespace) != (
                app_id,
                cluster,
                name,
            ):
                raise KeyError(f"no release {release_key} of {watch_key(app_id, cluster, name)}")
            self._states.setdefault((app_id, cluster, name), _State()).release = held
            message = watch_key(app_id, cluster, name)
            message_id = self._send(message)
            self._save()
        logger.info("reinstated %s releaseKey=%s", message, release_key)
        self._notify(message, message_id)

    def set_secret(self, app_id: str, secret: str | Iterable[str] | None) -> None:
        """Set (or with ``None`` remove) the access-key secret(s) of an app."""
        values = () if secret is None else (secret,) if isinstance(secret, str) else tuple(secret)
        with self._lock:
            if values:
                self._secrets[app_id.lower()] = values
            else:
                self._secrets.pop(app_id.lower(), None)
            self._save()
        logger.info("access key %s for app %s", "set" if values else "removed", app_id)

    def subscribe(self, listener: ReleaseListener) -> Callable[[], None]:
        """Call ``listener(watch_key, notification_id)`` on every release message.

        Returns a function that unsubscribes. Listeners run in the thread that changed the
        store and must not block.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # ----------------------------------------------------------------------------- queries

    def canonical(self, app_id: str, namespace: str) -> str:
        """Normalise a name like ``NamespaceUtil``: strip ``.properties``, then fix the case."""
        name = strip_properties(namespace)
        with self._lock:
            own = self._app_namespaces.get((app_id.lower(), name.lower()))
            if own is not None:
                return own
            owner = self._public.get(name.lower())
            return owner[1] if owner is not None else name

    def belongs_to(self, app_id: str, namespace: str) -> bool:
        """Whether ``namespace`` (already canonical) is one of the app's own namespaces."""
        with self._lock:
            return (app_id.lower(), namespace.lower()) in self._app_namespaces

    def public_owner(self, namespace: str) -> str | None:
        """The appId owning the public namespace of that name, if there is one."""
        with self._lock:
            owner = self._public.get(namespace.lower())
            return owner[0] if owner is not None else None

    def release(
        self, app_id: str, namespace: str, cluster: str = DEFAULT_CLUSTER
    ) -> Release | None:
        """The current main release of a namespace in one cluster (no fallback, no gray)."""
        with self._lock:
            state = self._states.get((app_id, cluster, self.canonical(app_id, namespace)))
            return state.release if state is not None else None

    def find_release(
        self,
        client_app_id: str,
        ip: str | None,
        label: str | None,
        app_id: str,
        cluster: str,
        namespace: str,
    ) -> Release | None:
        """Load one cluster's release for a client: a matching gray release first."""
        with self._lock:
            state = self._states.get((app_id, cluster, namespace))
            if state is None:
                return None
            branch = state.branch
            if branch is not None and branch.matches(client_app_id, ip, label):
                return branch.release
            return state.release

    def app_ids(self) -> list[str]:
        """The appIds that own at least one namespace, in the case first used."""
        with self._lock:
            found: dict[str, str] = {}
            for app_id, _cluster, _name in self._states:
                found.setdefault(app_id.lower(), app_id)
            return sorted(found.values())

    def namespaces(self, app_id: str) -> list[str]:
        """The stored names of an app's own namespaces (``application`` first)."""
        with self._lock:
            names = [
                name for (app, _), name in self._app_namespaces.items() if app == app_id.lower()
            ]
        return sorted(names, key=lambda name: (name != APPLICATION, name.lower()))

    def clusters(self, app_id: str) -> list[str]:
        """The clusters in which the app has (or had) a main release."""
        with self._lock:
            return sorted({cluster for (app, cluster, _) in self._states if app == app_id})

    def releases_by_key(self, keys: Iterable[str]) -> list[Release]:
        """Releases (current or past) with these keys, in the order given, unknown ones left out."""
        with self._lock:
            return [self._by_key[key] for key in keys if key in self._by_key]

    def secrets(self, app_id: str) -> tuple[str, ...]:
        """The access-key secrets of an app (empty when it has none)."""
        with self._lock:
            return self._secrets.get(app_id.lower(), ())

    def notification_ids(self, keys: Iterable[str]) -> dict[str, int]:
        """The latest release-message id of each watch key that has one."""
        with self._lock:
            return {key: self._message_ids[key] for key in keys if key in self._message_ids}

    # ---------------------------------------------------------------------------- private

    def _new_key(self) -> str:
        while True:
            key = f"{time.strftime('%Y%m%d%H%M%S')}-{_secrets.token_hex(8)}"
            if key not in self._by_key:
                return key

    def _send(self, message: str) -> int:
        self._last_id += 1
        self._message_ids[message] = self._last_id
        return self._last_id

    def _save(self) -> None:
        """Write the state file (under the lock, so the last write holds the last change)."""
        if self._state_file is None:
            return
        try:
            write_state(self._state_file, self._export())
        except OSError as exc:  # keep serving from memory; say so without any value
            logger.error("cannot write state file %s: %s", self._state_file, exc.strerror or exc)

    def _export(self) -> dict[str, Any]:
        def release(held: Release) -> dict[str, Any]:
            return {
                "key": held.key,
                "cluster": held.cluster,
                "configurations": dict(held.configurations),
            }

        states = []
        for (app_id, cluster, name), state in self._states.items():
            if state.release is None and state.branch is None:
                continue
            branch = state.branch
            states.append(
                {
                    "appId": app_id,
                    "cluster": cluster,
                    "namespace": name,
                    "release": release(state.release) if state.release else None,
                    "gray": None
                    if branch is None
                    else {
                        "clientAppId": branch.rules[0].client_app_id if branch.rules else "",
                        "ips": sorted(branch.rules[0].ips) if branch.rules else [],
                        "labels": sorted(branch.rules[0].labels) if branch.rules else [],
                        "rules": [
                            {
                                "clientAppId": rule.client_app_id,
                                "ips": sorted(rule.ips),
                                "labels": sorted(rule.labels),
                            }
                            for rule in branch.rules
                        ],
                        "release": release(branch.release),
                    },
                }
            )
        return {
            "lastNotificationId": self._last_id,
            "notificationIds": dict(self._message_ids),
            "namespaces": [[app, name] for (app, _), name in self._app_namespaces.items()],
            "public": [list(owner) for owner in self._public.values()],
            "releases": states,
            "secrets": {app: list(values) for app, values in self._secrets.items()},
        }

    def _restore(self, saved: Mapping[str, Any]) -> None:
        last = saved["lastNotificationId"]
        if not isinstance(last, int) or isinstance(last, bool):
            raise TypeError("lastNotificationId must be an int")
        ids = saved["notificationIds"]
        if not isinstance(ids, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in ids.values()
        ):
            raise TypeError("notificationIds must map watch keys to ints")
        for pair in saved["namespaces"]:
            app, name = strings(pair, "a namespaces entry")
            self._app_namespaces[(app.lower(), name.lower())] = name
        for pair in saved["public"]:
            owner, name = strings(pair, "a public entry")
            self._public[name.lower()] = (owner, name)
        for entry in saved["releases"]:
            app_id = text(entry["appId"], "appId")
            cluster = text(entry["cluster"], "cluster")
            name = text(entry["namespace"], "namespace")
            state = self._states.setdefault((app_id, cluster, name), _State())
            if entry["release"] is not None:
                state.release = self._restored(entry["release"], app_id, name)
            gray = entry["gray"]
            if gray is not None:
                held = self._restored(gray["release"], app_id, name)
                saved_rules = gray.get("rules", [gray])  # files before multi-rule branches
                rules = tuple(
                    GrayRule(
                        text(rule["clientAppId"], "clientAppId"),
                        frozenset(strings(rule["ips"], "ips")),
                        frozenset(strings(rule["labels"], "labels")),
                    )
                    for rule in saved_rules
                )
                state.branch = _Branch(held.cluster, rules, held)
        for app, values in saved["secrets"].items():
            self._secrets[text(app, "an appId")] = tuple(strings(values, "secrets"))
        self._message_ids.update({text(key, "a watch key"): value for key, value in ids.items()})
        self._last_id = max(self._last_id, last, *self._message_ids.values())

    def _restored(self, saved: Mapping[str, Any], app_id: str, name: str) -> Release:
        items = saved["configurations"]
        if not isinstance(items, dict):
            raise TypeError("configurations must be an object")
        configurations = {
            text(key, "a configuration key"): text(value, "a configuration value")
            for key, value in items.items()
        }
        held = Release(
            text(saved["key"], "key"),
            app_id,
            text(saved["cluster"], "cluster"),
            name,
            MappingProxyType(configurations),
        )
        self._by_key[held.key] = held
        return held

    def _notify(self, message: str, message_id: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(message, message_id)
            except Exception:
                logger.exception("release listener failed")
