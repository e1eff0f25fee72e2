"""Logging configured from an Apollo namespace, applied at start and again on every change.

``configure_logging(cfg, namespace="logging.yaml")`` reads one of two forms:

- a ``.yaml``/``.yml``/``.json`` namespace holding a :func:`logging.config.dictConfig`
  dictionary (``version: 1``). ``disable_existing_loggers`` defaults to ``false`` here (the
  stdlib's default, ``true``, would silence every logger created before a live change);
- a properties namespace of ``level.<logger>=LEVEL`` keys (``level.root`` for the root
  logger); other keys are ignored. A logger whose key goes away is set back to ``NOTSET``
  (the root to ``WARNING``).

Each release is checked before anything is applied: the dictionary's shape, every level,
every reference between loggers, handlers, formatters and filters, and that every class and
factory named can be imported. A release that differs from the applied one only in levels
changes those levels in place, keeping the handlers (and their open files and sockets).
Anything else is applied with ``dictConfig``; should that still fail (a log file that cannot
be opened), the previous configuration is applied again. A rejected release keeps the
previous configuration, and a warning on the ``aioapollo`` logger says why, never showing a
value. ``handle.error`` holds the last reason (``None`` once a release applies).
"""

from __future__ import annotations

import copy
import logging
import logging.config
from collections.abc import Mapping
from typing import Any

from .._client import ApolloClient
from .._core.store import Change
from .._models import NamespaceSnapshot
from .._sync import SyncApolloClient

__all__ = ["LoggingConfig", "configure_logging"]

logger = logging.getLogger("aioapollo")

_LEVEL_PREFIX = "level."
_SECTIONS = ("formatters", "filters", "handlers", "loggers")


class LoggingConfig:
    """The handle :func:`configure_logging` returns.

    Attributes:
        namespace: The namespace read.
        release_key: The release whose configuration is applied (``None``: none yet).
        error: Why the newest release was not applied (``None`` when it was).
        applied: How many releases were applied (levels in place, or a full ``dictConfig``).
    """

    def __init__(self, cfg: ApolloClient | SyncApolloClient, namespace: str) -> None:
        self.namespace = namespace
        self.release_key: str | None = None
        self.error: str | None = None
        self.applied = 0
        self._dict: dict[str, Any] | None = None  # the dictConfig applied last
        self._levels: dict[str, int] = {}  # the properties form's levels applied last
        self._unsubscribe = cfg._store.subscribe(self._sink)

    def close(self) -> None:
        """Stop following the namespace (the current configuration stays)."""
        self._unsubscribe()

    def __repr__(self) -> str:
        return (
            f"<LoggingConfig namespace={self.namespace!r} release_key={self.release_key!r} "
            f"error={self.error!r}>"
        )

    def _sink(self, change: Change) -> None:
        snap = change.record.snapshot
        if change.record.name == self.namespace and snap is not None and change.changed:
            self.apply(snap)

    def apply(self, snap: NamespaceSnapshot) -> bool:
        """Check and apply one snapshot of the namespace; False (and a warning) if rejected."""
        try:
            if snap.format == "properties":
                self._apply_levels(_levels(snap.items))
            else:
                if snap.parse_error is not None:
                    raise ValueError(f"its {snap.format} does not parse ({snap.parse_error})")
                self._apply_dict(_checked(snap.data))
        except ValueError as exc:
            self.error = str(exc)
            logger.warning(
                "logging configuration of namespace %r (release %s) not applied: %s; keeping "
                "the previous one",
                self.namespace,
                snap.release_key,
                exc,
            )
            return False
        self.error = None
        self.release_key = snap.release_key
        self.applied += 1
        return True

    def _apply_levels(self, levels: dict[str, int]) -> None:
        for name in self._levels.keys() - levels.keys():
            target = logging.getLogger(None if name == "root" else name)
            target.setLevel(logging.WARNING if name == "root" else logging.NOTSET)
        for name, level in levels.items():
            logging.getLogger(None if name == "root" else name).setLevel(level)
        self._levels = levels

    def _apply_dict(self, config: dict[str, Any]) -> None:
        previous = self._dict
        if previous is not None and _without_levels(previous) == _without_levels(config):
            logging.config.dictConfig(_levels_only(config))  # incremental: handlers stay
            self._dict = config
            return
        try:
            logging.config.dictConfig(copy.deepcopy(config))
        except (ValueError, TypeError, AttributeError, ImportError, OSError) as exc:
            if previous is not None:
                logging.config.dictConfig(copy.deepcopy(previous))
            raise ValueError(f"dictConfig failed: {_describe(exc)}") from None
        self._dict = config


def configure_logging(
    cfg: ApolloClient | SyncApolloClient, namespace: str = "logging.yaml"
) -> LoggingConfig:
    """Configure :mod:`logging` from ``namespace`` now (if loaded) and on every release.

    The namespace must be one the client watches. Call it before or after ``start()``: the
    first load applies it too. See the module docstring for the forms and the checks.
    """
    if namespace not in cfg.namespaces:
        raise ValueError(
            f"namespace {namespace!r} is not watched by this client; add it to namespaces=[...]"
        )
    handle = LoggingConfig(cfg, namespace)
    snap = cfg._store.snapshot(namespace)
    if snap is not None:
        handle.apply(snap)
    return handle


# ------------------------------------------------------------------ checks


def _level(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = logging.getLevelName(value.strip().upper())
        if isinstance(found, int):
            return found
    raise ValueError(f"{where}: not a logging level")


def _levels(items: Mapping[str, str]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for key, value in items.items():
        if key.startswith(_LEVEL_PREFIX):
            name = key[len(_LEVEL_PREFIX) :]
            if not name:
                raise ValueError(f"{key!r}: no logger name")
            levels[name] = _level(value, key)
    return levels


def _checked(data: object) -> dict[str, Any]:
    """A dictConfig dictionary, checked as far as possible without applying it."""
    if not isinstance(data, Mapping):
        raise ValueError("not a mapping (a dictConfig dictionary)")
    config = dict(data)
    if config.get("version") != 1:
        raise ValueError("a dictConfig dictionary needs 'version: 1'")
    if config.get("incremental"):
        raise ValueError("'incremental' is not supported: levels are applied in place anyway")
    config.setdefault("disable_existing_loggers", False)
    sections: dict[str, Mapping[str, Any]] = {}
    for section in _SECTIONS:
        value = config.get(section, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(v, Mapping) for v in value.values()
        ):
            raise ValueError(f"{section!r} must map names to mappings")
        sections[section] = value
    if "root" in config and not isinstance(config["root"], Mapping):
        raise ValueError("'root' must be a mapping")
    resolver = logging.config.BaseConfigurator({})
    for section in ("formatters", "filters", "handlers"):
        for name, entry in sections[section].items():
            for field in ("()", "class"):
                if isinstance(entry.get(field), str):
                    try:
                        resolver.resolve(entry[field])
                    except (ValueError, ImportError):
                        where = f"{section}.{name}"
                        raise ValueError(f"{where}: its {field!r} cannot be imported") from None
    for name, entry in sections["handlers"].items():
        if "level" in entry:
            _level(entry["level"], f"handlers.{name}.level")
        formatter = entry.get("formatter")
        if formatter is not None and formatter not in sections["formatters"]:
            raise ValueError(f"handlers.{name}: no formatter {formatter!r}")
        _refs(entry.get("filters"), sections["filters"], f"handlers.{name}", "filter")
    users = {f"loggers.{n}": e for n, e in sections["loggers"].items()}
    if "root" in config:
        users["root"] = config["root"]
    for where, entry in users.items():
        if "level" in entry:
            _level(entry["level"], f"{where}.level")
        _refs(entry.get("handlers"), sections["handlers"], where, "handler")
        _refs(entry.get("filters"), sections["filters"], where, "filter")
    return config


def _refs(names: object, known: Mapping[str, Any], where: str, what: str) -> None:
    if names is None:
        return
    if not isinstance(names, list | tuple):
        raise ValueError(f"{where}: {what}s must be a list")
    for name in names:
        if isinstance(name, str) and name not in known:
            raise ValueError(f"{where}: no {what} {name!r}")


def _without_levels(config: Mapping[str, Any]) -> Any:
    """``config`` with every ``level`` removed: equal for two releases that differ in
    levels only."""
    if isinstance(config, Mapping):
        return {k: _without_levels(v) for k, v in config.items() if k != "level"}
    if isinstance(config, list | tuple):
        return [_without_levels(v) for v in config]
    return config


def _levels_only(config: Mapping[str, Any]) -> dict[str, Any]:
    """An incremental dictConfig that sets the levels of ``config``'s loggers and handlers."""
    out: dict[str, Any] = {"version": 1, "incremental": True}
    for section in ("loggers", "handlers"):
        out[section] = {
            name: {"level": entry.get("level", "NOTSET")}
            for name, entry in config.get(section, {}).items()
        }
    if "root" in config:
        out["root"] = {"level": config["root"].get("level", "WARNING")}
    return out


def _describe(exc: BaseException) -> str:
    """dictConfig's own message (it names the handler, formatter, ... it was at) and the
    class of its cause; an OSError's reason but not its file name."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc) if cause is not None else type(exc).__name__
    if isinstance(cause, OSError) and cause.strerror:
        return f"{text} ({type(cause).__name__}: {cause.strerror})"
    return f"{text} ({type(cause).__name__})" if cause is not None else text
