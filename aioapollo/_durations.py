"""Duration strings as :class:`datetime.timedelta`: ``"1h30m"``, ``"500ms"``, ``"PT90S"``.

Two spellings are read, nothing else:

- unit sequences as Go and the Java client's ``getDurationProperty`` write them: one or more
  ``<number><unit>`` parts, largest unit first (``"1d2h"``, ``"1h30m"``, ``"1.5s"``,
  ``"250ms"``), units ``d h m s ms us µs ns`` in any case, spaces between parts allowed;
- ISO 8601 durations as ``java.time.Duration`` writes them: ``"PT90S"``, ``"PT1H30M"``,
  ``"P1DT12H"``, ``"P2W"`` (in any case; a leading ``-`` negates).

A bare number is refused: whether ``"30"`` means seconds or milliseconds is exactly the
guess this function exists to avoid. So are years and months (``"P1Y"``, ``"P1M"``), whose
length depends on the calendar.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_UNITS: dict[str, float] = {
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,  # the Greek mu, as some keyboards type it
    "ns": 1e-9,
}
#: Largest first: "ms" is tried before "m".
_UNIT_ORDER = ["ms", "us", "µs", "μs", "ns", "d", "h", "m", "s"]
_PART = re.compile(_NUMBER + r"\s*(" + "|".join(_UNIT_ORDER) + r")", re.IGNORECASE)
_ISO = re.compile(
    r"(?P<sign>[-+])?P(?:(?P<w>\d+(?:[.,]\d+)?)W)?(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?",
    re.IGNORECASE,
)
_ISO_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta | None:
    """``text`` as a timedelta, or ``None`` if it is not a duration this module reads."""
    text = text.strip()
    if not text:
        return None
    if text[0] in "pP" or text[:2] in ("-P", "-p", "+P", "+p"):
        return _parse_iso(text)
    return _parse_units(text)


def _parse_units(text: str) -> timedelta | None:
    seconds = 0.0
    pos = 0
    last_rank = -1
    ranks = {"d": 0, "h": 1, "m": 2, "s": 3, "ms": 4, "us": 5, "µs": 5, "μs": 5, "ns": 6}
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        match = _PART.match(text, pos)
        if match is None:
            return None
        unit = match.group(2).lower()
        rank = ranks[unit]
        if rank <= last_rank:  # "30m1h" or "1s1s": a typo, not a duration
            return None
        last_rank = rank
        seconds += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    if last_rank < 0:
        return None
    return timedelta(seconds=seconds)


def _parse_iso(text: str) -> timedelta | None:
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    parts = {k: match.group(k) for k in _ISO_SECONDS}
    if all(v is None for v in parts.values()) or text.upper().endswith("T"):
        return None
    seconds = sum(float(v.replace(",", ".")) * _ISO_SECONDS[k] for k, v in parts.items() if v)
    return timedelta(seconds=-seconds if match.group("sign") == "-" else seconds)
