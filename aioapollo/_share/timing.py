"""Sharing's timings and limits, in one place (read at call time, so a test may change them)."""

from __future__ import annotations

import errno

__all__ = [
    "ACCEPT_WARN_INTERVAL",
    "HANDSHAKE_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "JOIN_TIMEOUT",
    "LEADER_SILENCE",
    "MAX_HANDSHAKES",
    "OUT_OF_RESOURCES",
    "REJOIN_MAX",
    "SLOW_FOLLOWER",
]

#: The leader's heartbeat period.
HEARTBEAT_INTERVAL = 1.0
#: A follower that hears nothing from its leader for this long polls Apollo itself. Three
#: missed heartbeats: a leader whose loop is busy for a moment (a slow request, a C
#: extension, a blocked gevent hub) is not taken for dead.
LEADER_SILENCE = 4.0
#: A follower that cannot take a frame for this long is disconnected (it resyncs).
SLOW_FOLLOWER = 10.0
#: How long a follower waits for the leader's answer to its hello (and the leader for it).
HANDSHAKE_TIMEOUT = 2.0
#: How long a starting follower waits for a leader's snapshot before loading by itself.
JOIN_TIMEOUT = 3.0
#: Connections that have not said hello yet, at most: past it the leader accepts no more
#: until one ends (they wait in the listen backlog, costing it no descriptor).
MAX_HANDSHAKES = 16
#: The longest pause between two election attempts of a process that cannot share (refused
#: by a full leader, or no usable directory): it polls Apollo itself meanwhile.
REJOIN_MAX = 30.0
#: At the descriptor limit the leader stops accepting for a while; it logs once per this.
ACCEPT_WARN_INTERVAL = 60.0
#: accept() errors that mean "out of descriptors or memory": back off, do not crash.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
