"""``resolve_placeholders=True``: ``${key}`` and ``${key:default}`` inside values.

A store transform (the last one: it sees decrypted and overridden values) and a sink:

* :meth:`Placeholders.transform` replaces each ``${key}`` in a release's values with the
  value of ``key``, looked up in the same namespace first, then in the client's other
  properties namespaces in the order they were configured (the first that has it wins).
  The value found is resolved the same way in its own namespace, so references chain.
  ``${key:default}`` uses ``default`` (itself resolved) when no namespace has ``key``.
  Text namespaces (``x.json``, ``x.yaml``) get their content resolved but are never looked
  up. There is no escape: a value without ``${`` is never touched.
* :meth:`Placeholders.changed` (a sink) runs every other namespace whose values referred to a
  key that just changed through the transforms again
  (:meth:`~aioapollo._core.store.NamespaceStore.reapply`), so the listeners of a dependent
  key hear of it.

A reference to a key no namespace has (and no default), or a cycle (``a=${b}``, ``b=${a}``),
leaves that placeholder as written and logs a warning naming the namespace, the key and the
reference (never a value), once per distinct problem; ``stats()`` lists the keys. A missing
key is normal at start, when the namespace that has it has not loaded yet: it resolves as soon
as it does. Resolution never loops: a cycle is cut where it closes, nesting stops at
:data:`MAX_DEPTH`, and a namespace is never re-run from inside its own re-run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._apollo.wire import namespace_format

if TYPE_CHECKING:
    from .store import Change, NamespaceStore

__all__ = ["MAX_DEPTH", "Placeholders", "install"]

logger = logging.getLogger("aioapollo")

#: How deep references may chain (``a=${b}``, ``b=${c}``, ...) before resolution stops.
MAX_DEPTH = 32


def _closing(text: str, start: int) -> int:
    """The index of the ``}`` that closes a ``${`` whose body starts at ``start`` (-1: none)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class _Resolution:
    """One namespace's resolution: the keys it looked up and what went wrong."""

    __slots__ = ("problems", "refs")

    def __init__(self) -> None:
        self.refs: set[str] = set()
        self.problems: dict[str, str] = {}


class Placeholders:
    """A client's placeholder resolution, as a store transform and sink (see the module)."""

    __slots__ = ("_busy", "_diff", "_order", "_problems", "_raw", "_refs", "_store")

    def __init__(self, store: NamespaceStore) -> None:
        self._store = store
        #: The namespaces looked up, in order (properties namespaces only).
        self._order = [n for n in store.records if namespace_format(n) == "properties"]
        #: namespace -> its items as they reached this transform (the references' source).
        self._raw: dict[str, Mapping[str, str]] = {}
        #: namespace -> every key its values looked up (directly or down a chain).
        self._refs: dict[str, frozenset[str]] = {}
        #: namespace -> the keys whose input changed in its latest release.
        self._diff: dict[str, frozenset[str]] = {}
        #: namespace -> key -> why it is not fully resolved.
        self._problems: dict[str, dict[str, str]] = {}
        #: Namespaces being re-run now (never re-entered).
        self._busy: set[str] = set()

    def unresolved(self) -> dict[str, tuple[str, ...]]:
        """namespace -> its keys with a placeholder left as written (missing key or cycle)."""
        return {n: tuple(sorted(p)) for n, p in self._problems.items() if p}

    # ------------------------------------------------------------------ the transform

    def transform(self, namespace: str, items: Mapping[str, str]) -> Mapping[str, str]:
        before = self._raw.get(namespace, {})
        self._raw[namespace] = items
        self._diff[namespace] = frozenset(
            k for k in before.keys() | items.keys() if before.get(k) != items.get(k)
        )
        seen = _Resolution()
        out: dict[str, str] | None = None
        for key, value in items.items():
            if "${" not in value:
                continue
            resolved = self._expand(value, namespace, [(namespace, key)], seen, key)
            if resolved != value:
                if out is None:
                    out = dict(items)
                out[key] = resolved
        self._refs[namespace] = frozenset(seen.refs)
        self._report(namespace, seen.problems)
        return items if out is None else out

    def _lookup(self, key: str, here: str) -> tuple[str, str] | None:
        """Where ``key`` is found from namespace ``here``: (namespace, its value as input)."""
        own = self._raw.get(here)
        if own is not None and here in self._order and key in own:
            return here, own[key]
        for name in self._order:
            items = self._raw.get(name)
            if name != here and items is not None and key in items:
                return name, items[key]
        return None

    def _expand(
        self, text: str, here: str, chain: list[tuple[str, str]], seen: _Resolution, owner: str
    ) -> str:
        parts: list[str] = []
        i = 0
        while (j := text.find("${", i)) >= 0:
            end = _closing(text, j + 2)
            if end < 0:
                break  # unterminated: the rest stays as written
            parts.append(text[i:j])
            parts.append(self._one(text[j : end + 1], here, chain, seen, owner))
            i = end + 1
        parts.append(text[i:])
        return "".join(parts)

    def _one(
        self, written: str, here: str, chain: list[tuple[str, str]], seen: _Resolution, owner: str
    ) -> str:
        key, colon, default = written[2:-1].partition(":")
        key = key.strip()
        seen.refs.add(key)
        found = self._lookup(key, here)
        if found is None:
            if colon:
                return self._expand(default, here, chain, seen, owner)
            seen.problems.setdefault(owner, f"${{{key}}}: no namespace of the client has {key!r}")
            return written
        where = found[0], key
        if where in chain:
            cycle = " -> ".join(k for _, k in [*chain[chain.index(where) :], where])
            seen.problems.setdefault(owner, f"${{{key}}}: a cycle ({cycle})")
            return written
        if len(chain) >= MAX_DEPTH:
            seen.problems.setdefault(owner, f"${{{key}}}: references nest deeper than {MAX_DEPTH}")
            return written
        return self._expand(found[1], found[0], [*chain, where], seen, owner)

    def _report(self, namespace: str, problems: dict[str, str]) -> None:
        before = self._problems.get(namespace, {})
        self._problems[namespace] = problems
        new = {k: why for k, why in problems.items() if before.get(k) != why}
        for key, why in sorted(new.items()):
            logger.warning(
                "namespace %r key %r: placeholder left as written: %s", namespace, key, why
            )
        if before and not problems:
            logger.info("namespace %r: every placeholder resolves now", namespace)

    # ------------------------------------------------------------------ the sink

    def changed(self, change: Change) -> None:
        """Re-run the namespaces that refer to a key of ``change`` whose input changed."""
        name = change.record.name
        if change.release is None or name not in self._order:
            return
        keys = self._diff.get(name, frozenset()) | change.changed
        if not keys:
            return
        for other, refs in list(self._refs.items()):
            if other == name or other in self._busy or not refs & keys:
                continue
            self._busy.add(other)
            try:
                self._store.reapply(other, notify=change.notify)
            except Exception as exc:  # a transform refused it: it keeps its values
                logger.warning(
                    "namespace %r could not be resolved again (%s)", other, type(exc).__name__
                )
            finally:
                self._busy.discard(other)


def install(store: NamespaceStore) -> Placeholders:
    """Resolve placeholders in ``store``'s releases: the transform added last, and a sink.

    Install it after the other transforms and sinks (so its re-runs come after every sink
    has heard of the change that caused them).
    """
    placeholders = Placeholders(store)
    store.add_transform(placeholders.transform)
    store.subscribe(placeholders.changed)
    return placeholders
