"""Where processes sharing one long poll meet: a private directory, a leader lock, peer checks.

Processes of one user on one host that build clients with identical options form a group,
named by a fingerprint of those options. The group's leader holds ``<dir>/<fp>.lock`` and
listens on ``<dir>/<fp>.sock``; the others follow it. Trust rests on three checks, each
enough to stop another local user from posing as a leader or a follower:

- the directory is ours and private (:func:`ensure_private_dir`), so nobody else can create,
  replace or even reach the lock and the socket in it;
- the socket file is ours (:func:`check_socket_owner`), checked before connecting;
- the process at the other end of a connection runs as our effective uid
  (:func:`check_peer`), asked of the kernel, so it holds even if the directory was swapped
  after it was checked.

Anything that makes sharing unsafe or impossible raises :class:`ShareUnavailable`; the caller
logs it once and runs its own long poll. POSIX only: :func:`supported` is False on Windows.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

if sys.platform != "win32":
    import fcntl

__all__ = [
    "LeaderLock",
    "ShareUnavailable",
    "check_peer",
    "check_socket_owner",
    "default_share_dir",
    "ensure_private_dir",
    "lock_path",
    "peer_uid",
    "socket_path",
    "supported",
]

_LINUX = sys.platform.startswith("linux")
#: ``struct ucred`` of ``SO_PEERCRED``: pid, uid, gid.
_UCRED = struct.Struct("iII")
#: ``(uid_t)-1``: what Linux reports for a socket that has no peer.
_NO_UID = 0xFFFFFFFF
#: A fingerprint's first 16 characters name the files; keep them to filename-safe characters.
_STEM = re.compile(r"[A-Za-z0-9_-]+")


class ShareUnavailable(Exception):
    """Sharing cannot be used here; the message says why (paths and uids, never secrets)."""


@cache
def _getpeereid() -> Callable[..., int] | None:
    """libc's ``getpeereid`` (macOS and the BSDs), or None where it does not exist."""
    if _LINUX or sys.platform == "win32":
        return None
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).getpeereid
    except (OSError, AttributeError):
        return None
    return function


def supported() -> bool:
    """Whether this platform has both ``flock`` and a way to learn a socket peer's uid."""
    if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):
        return False
    if not hasattr(fcntl, "flock"):
        return False
    if _LINUX:
        return hasattr(socket, "SO_PEERCRED")
    return _getpeereid() is not None


def _max_socket_path() -> int:
    """The longest socket path, in bytes, that fits ``sun_path`` with its terminating NUL."""
    return 107 if _LINUX else 103


def default_share_dir() -> Path:
    """The directory this process would share through: ``$XDG_RUNTIME_DIR/aioapollo``, or
    ``<temp dir>/aioapollo-<euid>``.

    The runtime directory is made for exactly this: per user, private, on local storage and
    emptied at logout, with a short path (socket paths are limited to about 100 bytes). It is
    used only when it exists, is owned by the effective uid and has mode 0700: the variable is
    inherited across ``su``, ``sudo -E`` and servers that drop privileges, and may name
    someone else's directory. The fallback carries the uid in its name so that users of one
    temp dir do not collide; :func:`ensure_private_dir` refuses it if someone else made it.

    Computed on each call from the *effective* uid, because a server may import this module
    as root and drop privileges before it starts a client.
    """
    euid = os.geteuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        try:
            info = os.lstat(runtime)
        except OSError:
            pass
        else:
            if (
                stat.S_ISDIR(info.st_mode)
                and info.st_uid == euid
                and stat.S_IMODE(info.st_mode) == 0o700
            ):
                return Path(runtime) / "aioapollo"
    return Path(tempfile.gettempdir()) / f"aioapollo-{euid}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 if it is missing, then check that it is private.

    Missing parents are created as ``mkdir -p`` would. Whether we created ``path`` or found it
    (perhaps made a moment earlier by someone else), it must be a real directory (not a
    symbolic link), owned by the effective uid, with no group or other permission bits and
    with rwx for its owner. It is never chmod-ed: a directory that is not right is refused.

    Raises:
        ShareUnavailable: The directory cannot be created or is not private.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ShareUnavailable(
            f"cannot create the parents of the share directory {path}: {exc.strerror}"
        ) from None
    try:
        os.mkdir(path, 0o700)  # the umask may only take bits away
    except FileExistsError:
        pass
    except OSError as exc:
        raise ShareUnavailable(
            f"cannot create the share directory {path}: {exc.strerror}"
        ) from None
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ShareUnavailable(
            f"cannot inspect the share directory {path}: {exc.strerror}"
        ) from None
    euid = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link, not a directory"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != euid:
        problem = f"is owned by uid {info.st_uid}, not by this process's effective uid {euid}"
    elif mode & 0o077:
        problem = f"has mode {mode:#o}: group and others must have no access (0700)"
    elif mode & 0o700 != 0o700:
        problem = f"has mode {mode:#o}: its owner needs read, write and search (0700)"
    else:
        return path
    raise ShareUnavailable(f"share directory {path} {problem}")


def _file_name(fingerprint: str, suffix: str) -> str:
    stem = fingerprint[:16]
    if not _STEM.fullmatch(stem):
        raise ValueError("a group fingerprint must be letters, digits, '-' and '_'")
    return stem + suffix


def socket_path(share_dir: Path, fingerprint: str) -> Path:
    """The group's socket: ``share_dir / "<first 16 characters of fingerprint>.sock"``.

    Raises:
        ShareUnavailable: The path is too long for a Unix-domain socket on this platform.
        ValueError: The fingerprint holds characters that do not belong in a file name.
    """
    path = share_dir / _file_name(fingerprint, ".sock")
    size, limit = len(os.fsencode(path)), _max_socket_path()
    if size > limit:
        raise ShareUnavailable(
            f"the share socket path {path} is {size} bytes, longer than the {limit} this"
            " platform allows for a Unix-domain socket; set a shorter share_dir"
        )
    return path


def lock_path(share_dir: Path, fingerprint: str) -> Path:
    """The group's leader lock: ``share_dir / "<first 16 characters of fingerprint>.lock"``.

    Raises:
        ValueError: The fingerprint holds characters that do not belong in a file name.
    """
    return share_dir / _file_name(fingerprint, ".lock")


class LeaderLock:
    """The group's leadership: an exclusive ``flock`` on the lock file, never waited for.

    ``flock`` locks belong to an open file description, so a second :class:`LeaderLock` on the
    same file conflicts even within one process (``fcntl`` record locks would not), and the
    kernel drops the lock when the last descriptor of its holder closes, which includes the
    holder dying in any way. The lock file is never removed: removing it while someone holds
    it would let a newcomer lock a new file beside the held one.

    A forked child inherits the descriptor and, with it, the very same lock; it must call
    :meth:`forget_after_fork` at once (an at-fork hook), or the lock outlives the parent for as
    long as the child lives.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._owner_pid = 0
        self._file_id = (0, 0)  # (st_dev, st_ino) of the locked file

    def __repr__(self) -> str:
        return f"LeaderLock({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; return whether this object now holds it.

        Raises:
            ShareUnavailable: The lock file cannot be opened or locked at all (not merely
                held by someone else).
        """
        if self._fd is not None:
            return True
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise ShareUnavailable(
                f"cannot open the leader lock {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = os.fstat(fd)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise ShareUnavailable(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd, self._owner_pid = fd, os.getpid()
        self._file_id = (info.st_dev, info.st_ino)
        return True

    def release(self) -> None:
        """Unlock and close (idempotent).

        The explicit unlock frees the lock even if a descriptor of it leaked into a child
        that never called :meth:`forget_after_fork`. Called in such a child instead, it only
        forgets, since unlocking there would take the lock from the parent.
        """
        if self._fd is None:
            return
        if os.getpid() != self._owner_pid:
            self.forget_after_fork()
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking; not held.

        The descriptor shares its open file description, and so the lock, with the parent's:
        unlocking would release the parent's lock, while closing only drops this process's
        reference. It is closed only if it still refers to the lock file, so a descriptor
        number that the child reused for something else is left alone.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            info = os.fstat(fd)
        except OSError:
            return  # already closed (a daemonising child may close every descriptor)
        if (info.st_dev, info.st_ino) == self._file_id:
            os.close(fd)


def peer_uid(sock: socket.socket) -> int | None:
    """The effective uid of the process at the other end of a connected Unix-domain socket.

    That is the uid it had when it connected (for an accepted socket) or started listening
    (for a connecting one). None when this platform cannot tell, or the socket has no peer.

    Raises:
        ValueError: ``sock`` is not a Unix-domain socket.
        OSError: The kernel refused the query (a closed socket, for one).
    """
    if sock.family != socket.AF_UNIX:
        raise ValueError("peer credentials exist only for Unix-domain sockets")
    if _LINUX:
        if not hasattr(socket, "SO_PEERCRED"):
            return None
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        _pid, uid, _gid = _UCRED.unpack(raw)
        return None if uid == _NO_UID else int(uid)
    getpeereid = _getpeereid()
    if getpeereid is None:
        return None
    uid_t, gid_t = ctypes.c_uint32(), ctypes.c_uint32()  # uid_t and gid_t are 32-bit there
    if getpeereid(sock.fileno(), ctypes.byref(uid_t), ctypes.byref(gid_t)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(uid_t.value)


def _describe(sock: socket.socket) -> str:
    name: Any
    try:
        name = sock.getpeername() or sock.getsockname()
    except OSError:
        name = ""
    return f"share socket {name}" if isinstance(name, str) and name else "share socket"


def check_peer(sock: socket.socket) -> None:
    """Refuse a peer that does not run as this process's effective uid.

    Raises:
        ShareUnavailable: The peer runs as another user, or its uid cannot be learnt here
            (never trust a peer unchecked).
    """
    uid, euid = peer_uid(sock), os.geteuid()
    if uid is None:
        raise ShareUnavailable(
            f"{_describe(sock)}: cannot learn which user runs the process at the other end"
        )
    if uid != euid:
        raise ShareUnavailable(
            f"{_describe(sock)}: the process at the other end runs as uid {uid}, not {euid}"
        )


def check_socket_owner(path: Path) -> None:
    """Refuse a socket file that is not a socket owned by this process's effective uid.

    Raises:
        FileNotFoundError: There is no socket (no leader has bound it yet).
        ShareUnavailable: Something else is at ``path``, or another user owns it.
    """
    info = os.lstat(path)
    euid = os.geteuid()
    if not stat.S_ISSOCK(info.st_mode):
        raise ShareUnavailable(f"share socket {path} is not a socket")
    if info.st_uid != euid:
        raise ShareUnavailable(f"share socket {path} is owned by uid {info.st_uid}, not {euid}")
