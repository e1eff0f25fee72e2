"""What ApolloProvider resolves: Apollo values converted the OpenFeature way, and flag sets.

Plain mode reads a flag as one key of a namespace and converts its string; targeting mode
keeps a flagd flag set (flagd's JSON format, one namespace) in flagd's own maintained
evaluator (``openfeature-flagd-core``) and evaluates it per request. Error messages name the
flag and the namespace, never a value.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode, OpenFeatureError, ParseError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason

from .._models import _FALSE, _TRUE, NamespaceSnapshot, Source

__all__ = ["CONVERTERS", "FlagSet", "Mismatch", "View", "error", "metadata_of"]

#: Where a value came from that was not fetched from Apollo by this process.
CACHED_SOURCES = frozenset({Source.CACHE, Source.INHERITED})


class Mismatch(Exception):
    """A value that is not of the requested type (``TYPE_MISMATCH``) or does not parse."""

    def __init__(self, expected: str, code: ErrorCode = ErrorCode.TYPE_MISMATCH) -> None:
        super().__init__(expected)
        self.expected = expected
        self.code = code


def _bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Mismatch("a boolean")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise Mismatch("an integer") from None


def _float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise Mismatch("a float") from None
    if not math.isfinite(value):
        raise Mismatch("a finite float")
    return value


def _str(raw: str) -> str:
    return raw


def _object(raw: str) -> Sequence[FlagValueType] | Mapping[str, FlagValueType]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise Mismatch("JSON", ErrorCode.PARSE_ERROR) from None
    if not isinstance(value, dict | list):
        raise Mismatch("a JSON object or array")
    return value


#: The conversion per OpenFeature flag type.
CONVERTERS: dict[str, Callable[[str], Any]] = {
    "boolean": _bool,
    "integer": _int,
    "float": _float,
    "string": _str,
    "object": _object,
}


def error(default: Any, code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    """The SDK's answer to a failed resolution: the caller's default, the code, the reason."""
    return FlagResolutionDetails(
        default, error_code=code, error_message=message, reason=Reason.ERROR
    )


def metadata_of(snap: NamespaceSnapshot) -> dict[str, str]:
    """Flag metadata naming where a value came from (no values)."""
    meta = {"namespace": snap.name, "source": snap.source.value}
    if snap.release_key is not None:
        meta["releaseKey"] = snap.release_key
    return meta


class View:
    """One namespace snapshot as plain mode reads it, made once per release.

    ``items`` are the snapshot's keys (a yaml/yml/json namespace's flat dotted keys), and
    ``reason``, ``variant`` and ``metadata`` what every resolution from it reports.
    """

    __slots__ = ("items", "metadata", "reason", "snapshot", "variant")

    def __init__(self, snap: NamespaceSnapshot) -> None:
        self.snapshot = snap
        self.items: Mapping[str, str] = snap.as_properties().items
        self.reason = Reason.CACHED if snap.source in CACHED_SOURCES else Reason.STATIC
        #: The release a value comes from identifies it; the value itself may be a secret.
        self.variant = snap.release_key
        self.metadata = metadata_of(snap)


class FlagSet:
    """A flagd flag set held in flagd's evaluator, replaced whole on each release.

    A release that is not a valid flag set keeps the previous one (:meth:`load` raises
    :class:`~openfeature.exception.ParseError` saying why).
    """

    def __init__(self) -> None:
        self._core = FlagdCore()
        self._lock = threading.Lock()
        self.loaded: NamespaceSnapshot | None = None
        self.metadata: dict[str, str] = {}
        self.cached = False

    def load(self, snap: NamespaceSnapshot) -> list[str]:
        """Evaluate flags from ``snap`` from now on; returns the keys of flags that changed."""
        with self._lock:
            if snap is self.loaded:
                return []
            if not (snap.content or "").strip():  # nothing released yet: no flags
                changed = self._core.set_flags_and_get_changed_keys({"flags": {}})
                self.loaded, self.metadata = snap, metadata_of(snap)
                self.cached = snap.source in CACHED_SOURCES
                return sorted(changed)
            if snap.parse_error is not None:
                raise ParseError(f"namespace {snap.name!r}: {snap.parse_error}")
            if not isinstance(snap.data, dict):
                raise ParseError(f"namespace {snap.name!r} is not a flagd flag set (an object)")
            # flagd's parser edits what it is given: hand it a copy of the shared data.
            try:
                changed = self._core.set_flags_and_get_changed_keys(copy.deepcopy(snap.data))
            except Exception as exc:  # flagd's parser refused it
                # flagd's own message may quote a value of the flag set: name only its kind.
                raise ParseError(
                    f"namespace {snap.name!r} is not a valid flagd flag set "
                    f"({type(exc).__name__}; check it against flagd's flag definition schema)"
                ) from None
            self.loaded = snap
            self.metadata = metadata_of(snap)
            self.cached = snap.source in CACHED_SOURCES
            return sorted(changed)

    def resolve(
        self, kind: str, key: str, default: Any, context: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        """Evaluate flag ``key`` as ``kind`` for ``context`` (errors as the SDK expects)."""
        try:
            details: FlagResolutionDetails[Any] = getattr(self._core, f"resolve_{kind}_value")(
                key, default, context
            )
        except OpenFeatureError as exc:
            return error(default, exc.error_code, exc.error_message or type(exc).__name__)
        meta = dict(details.flag_metadata)
        meta.update(self.metadata)
        details.flag_metadata = meta
        if self.cached and details.reason == Reason.STATIC:
            details.reason = Reason.CACHED
        return details
