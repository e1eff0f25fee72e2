"""One long poll per host (``share_poll=True``): rendezvous, election, leader, follower and
their local wire protocol. Private: nothing here is public API.

The engine sees only what this package exports (a sharing membership plugs into it as a
source, for a follower, and a sink, for a leader); the modules behind it are its own.
"""

from .group import (
    FOLLOWER,
    JOIN_TIMEOUT,
    LEADER,
    SOLO,
    RoleChange,
    Sharing,
    SharingHost,
    share_fingerprint,
    warn_solo,
)
from .rendezvous import ShareUnavailable

__all__ = [
    "FOLLOWER",
    "JOIN_TIMEOUT",
    "LEADER",
    "SOLO",
    "RoleChange",
    "ShareUnavailable",
    "Sharing",
    "SharingHost",
    "share_fingerprint",
    "warn_solo",
]
