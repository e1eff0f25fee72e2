"""The share rendezvous: private directory, leader lock and peer checks, on real files,
sockets and processes. Tests that need another user run as root and use ``nobody``."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioapollo._share.rendezvous import (
    LeaderLock,
    ShareUnavailable,
    check_peer,
    check_socket_owner,
    default_share_dir,
    ensure_private_dir,
    lock_path,
    peer_uid,
    socket_path,
    supported,
)

from .._workers import Child, Report

pytestmark = pytest.mark.skipif(not supported(), reason="no flock or peer credentials here")

FP = "0123456789abcdef" + "f" * 48
#: The temp dir before any test points ``tempfile`` elsewhere.
_SYSTEM_TMP = tempfile.gettempdir()


class Gate:
    """A pipe that forked children block on until the test opens the gate (or ends)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def wait(self) -> None:
        """In a child: block until the test opens the gate. Grandchildren may call it too."""
        if self._write >= 0:
            os.close(self._write)  # our copy would keep the pipe open forever
            self._write = -1
        os.read(self._read, 1)

    def open(self) -> None:
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def close(self) -> None:
        self.open()
        os.close(self._read)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.close()


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root: makes files and processes of another user (chown, setuid)")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this machine has no user 'nobody'")


@pytest.fixture
def open_tmp(nobody: pwd.struct_passwd) -> Iterator[Path]:
    """A root-owned directory that other users can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="aioapollo-test-", dir=_SYSTEM_TMP))
    try:
        for parent in path.parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                pytest.skip(f"other users cannot reach the temp dir ({parent} is closed)")
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def nobody_dir(open_tmp: Path, nobody: pwd.struct_passwd) -> Path:
    """A directory that ``nobody`` owns and can reach."""
    path = open_tmp / "nobody"
    path.mkdir(mode=0o700)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return path


def become(user: pwd.struct_passwd) -> None:
    """In a forked child: drop every privilege for good."""
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def test_supported_on_linux() -> None:
    if sys.platform.startswith("linux"):
        assert supported()


# -- the private directory --------------------------------------------------------------------


def test_missing_dir_is_created_0700_even_with_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "parent" / "share"
    old = os.umask(0)
    try:
        assert ensure_private_dir(path) == path
    finally:
        os.umask(old)
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.geteuid()
    assert ensure_private_dir(path) == path  # and again, now that it exists


@pytest.mark.parametrize("mode", [0o777, 0o750, 0o701, 0o1777])
def test_dir_open_to_others_is_refused_and_left_alone(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "share"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(ShareUnavailable, match="group and others must have no access") as info:
        ensure_private_dir(path)
    assert str(path) in str(info.value)
    assert f"{mode:#o}" in str(info.value)
    assert stat.S_IMODE(os.lstat(path).st_mode) == mode  # never chmod-ed


def test_dir_its_owner_cannot_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "share"
    old = os.umask(0o277)
    try:
        with pytest.raises(ShareUnavailable, match="owner needs read, write and search"):
            ensure_private_dir(path)  # created 0500 by the umask: refused, not fixed
    finally:
        os.umask(old)


def test_symlink_to_a_private_dir_is_refused(tmp_path: Path) -> None:
    real = ensure_private_dir(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ShareUnavailable, match="is a symbolic link"):
        ensure_private_dir(link)


def test_file_in_place_of_the_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "share").write_text("")
    with pytest.raises(ShareUnavailable, match="is not a directory"):
        ensure_private_dir(tmp_path / "share")
    with pytest.raises(ShareUnavailable, match="cannot create the parents"):
        ensure_private_dir(tmp_path / "share" / "below")


def test_dir_made_first_by_another_user_is_refused(
    tmp_path: Path, nobody: pwd.struct_passwd
) -> None:
    # What a squatter does: create the well-known name before us, 0700 and theirs.
    path = tmp_path / "share"
    path.mkdir(mode=0o700)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ShareUnavailable, match=f"owned by uid {nobody.pw_uid}, not by") as info:
        ensure_private_dir(path)
    assert str(path) in str(info.value)
    assert os.lstat(path).st_uid == nobody.pw_uid


# -- the default directory -------------------------------------------------------------------


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_default_dir_in_the_runtime_dir(
    tmp_path: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert default_share_dir() == runtime / "aioapollo"
    fallback = temp_root / f"aioapollo-{os.geteuid()}"
    os.chmod(runtime, 0o755)  # not what the runtime dir spec promises: not used
    assert default_share_dir() == fallback
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")
    assert default_share_dir() == fallback
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert default_share_dir() == fallback
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_share_dir() == fallback


async def test_default_dir_follows_the_effective_uid(
    open_tmp: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch, nobody: pwd.struct_passwd
) -> None:
    runtime = open_tmp / "run"
    runtime.mkdir(mode=0o700)  # root's, inherited by a process that then drops privileges
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert default_share_dir() == runtime / "aioapollo"

    def body(report: Report) -> None:
        os.seteuid(nobody.pw_uid)  # the real uid stays root
        os.lstat(runtime)  # reachable: refused for its owner, not for being out of sight
        report({"uid": os.getuid(), "dir": str(default_share_dir())})

    child = Child(body)
    got = await child.next()
    assert got == {"uid": 0, "dir": str(temp_root / f"aioapollo-{nobody.pw_uid}")}
    assert await child.exit_code() == 0


# -- file names -----------------------------------------------------------------------------


def test_file_names_use_the_fingerprint_prefix(tmp_path: Path) -> None:
    assert socket_path(tmp_path, FP) == tmp_path / "0123456789abcdef.sock"
    assert lock_path(tmp_path, FP) == tmp_path / "0123456789abcdef.lock"
    assert socket_path(tmp_path, "ab") == tmp_path / "ab.sock"
    for bad in ("", "../../etc/x", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="fingerprint"):
            socket_path(tmp_path, bad)
        with pytest.raises(ValueError, match="fingerprint"):
            lock_path(tmp_path, bad)


def test_socket_path_at_and_over_the_platform_limit(tmp_path: Path) -> None:
    limit = 107 if sys.platform.startswith("linux") else 103
    base = len(os.fsencode(tmp_path)) + len("/") + len("/0123456789abcdef.sock")
    if base >= limit:
        pytest.skip("the temporary directory's path alone is too long for this test")
    share_dir = ensure_private_dir(tmp_path / ("d" * (limit - base)))
    path = socket_path(share_dir, FP)
    assert len(os.fsencode(path)) == limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # the longest accepted path really binds
    longer = share_dir.parent / ("d" * (limit - base + 1))
    with pytest.raises(ShareUnavailable, match="set a shorter share_dir") as info:
        socket_path(longer, FP)
    assert f"{limit + 1} bytes" in str(info.value)
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.bind(str(longer / "0123456789abcdef.sock"))  # ... and one more byte would not


# -- the leader lock -------------------------------------------------------------------------


def test_two_locks_in_one_process_conflict(tmp_path: Path) -> None:
    path = lock_path(tmp_path, FP)
    first, second = LeaderLock(path), LeaderLock(path)
    assert first.try_acquire()
    assert first.held
    assert first.try_acquire()  # holding it already
    assert not second.try_acquire()
    assert not second.held
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first.release()
    assert not first.held
    first.release()  # idempotent
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()
    assert path.exists()  # never removed: a newcomer would lock a fresh file beside it
    assert "held=False" in repr(second)


def test_lock_in_a_missing_dir_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ShareUnavailable, match="cannot open the leader lock"):
        LeaderLock(tmp_path / "missing" / "x.lock").try_acquire()


def test_lock_file_that_is_a_symlink_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "x.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ShareUnavailable, match="cannot open the leader lock"):
        LeaderLock(tmp_path / "x.lock").try_acquire()
    assert not (tmp_path / "elsewhere").exists()


async def test_lock_of_a_killed_holder_is_released(tmp_path: Path, gate: Gate) -> None:
    path = lock_path(tmp_path, FP)

    def holder(report: Report) -> None:
        report({"held": LeaderLock(path).try_acquire()})
        gate.wait()

    child = Child(holder)
    assert await child.next() == {"held": True}
    mine = LeaderLock(path)
    assert not mine.try_acquire()
    os.kill(child.pid, signal.SIGKILL)
    assert await child.exit_code() == -signal.SIGKILL
    assert mine.try_acquire()
    mine.release()


async def test_forked_child_that_forgets_keeps_the_parents_lock(tmp_path: Path, gate: Gate) -> None:
    path = lock_path(tmp_path, FP)
    lock = LeaderLock(path)
    assert lock.try_acquire()

    def child_body(report: Report) -> None:
        lock.forget_after_fork()
        report({"held": lock.held, "mine": LeaderLock(path).try_acquire()})
        gate.wait()
        report({"after_parent_released": LeaderLock(path).try_acquire()})

    child = Child(child_body)
    assert await child.next() == {"held": False, "mine": False}
    assert lock.held
    assert not LeaderLock(path).try_acquire()  # the child's close did not unlock ours
    lock.release()
    gate.open()
    assert await child.next() == {"after_parent_released": True}
    assert await child.exit_code() == 0


async def test_release_in_a_forked_child_only_forgets(tmp_path: Path) -> None:
    path = lock_path(tmp_path, FP)
    lock = LeaderLock(path)
    assert lock.try_acquire()

    def child_body(report: Report) -> None:
        lock.release()  # no forget_after_fork first: must not unlock the parent's lock
        report({"held": lock.held})

    child = Child(child_body)
    assert await child.next() == {"held": False}
    assert await child.exit_code() == 0
    assert lock.held
    assert not LeaderLock(path).try_acquire()
    lock.release()
    assert LeaderLock(path).try_acquire()


async def test_a_childs_closed_descriptor_does_not_outlive_the_holder(
    tmp_path: Path, gate: Gate
) -> None:
    # The holder forks a child that forgets, then the holder dies: the child must not keep
    # the lock. Had it kept the inherited descriptor open, nobody could lead while it lives.
    path = lock_path(tmp_path, FP)

    def holder(report: Report) -> None:
        lock = LeaderLock(path)
        report({"holder": lock.try_acquire()})
        if os.fork() == 0:  # pragma: no cover - the grandchild
            code = 1
            try:
                lock.forget_after_fork()
                report({"forgot": not lock.held, "pid": os.getpid()})
                gate.wait()
                code = 0
            finally:
                os._exit(code)
        gate.wait()

    child = Child(holder)
    assert await child.next() == {"holder": True}
    forgot = await child.next()
    assert forgot["forgot"]
    mine = LeaderLock(path)
    assert not mine.try_acquire()  # the holder still holds it
    os.kill(child.pid, signal.SIGKILL)
    assert await child.exit_code() == -signal.SIGKILL
    os.kill(forgot["pid"], 0)  # the grandchild is still alive (it waits on the gate) ...
    assert mine.try_acquire()  # ... and holds nothing
    mine.release()


# -- peers ------------------------------------------------------------------------------------


def test_peer_of_the_same_user_passes() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.geteuid()
        check_peer(left)
        check_peer(right)


def test_socket_without_a_peer_is_refused() -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        assert peer_uid(sock) is None
        with pytest.raises(ShareUnavailable, match="cannot learn which user"):
            check_peer(sock)
    with socket.socket() as tcp, pytest.raises(ValueError, match="Unix-domain"):
        peer_uid(tcp)


async def test_server_of_the_same_user_in_another_process_passes(
    tmp_path: Path, gate: Gate
) -> None:
    path = socket_path(ensure_private_dir(tmp_path / "share"), FP)

    def server(report: Report) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
            sock.listen()
            report({"listening": True})
            gate.wait()

    child = Child(server)
    assert await child.next() == {"listening": True}
    check_socket_owner(path)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        assert peer_uid(client) == os.geteuid()
        check_peer(client)


async def test_peers_of_another_user_are_refused(
    nobody_dir: Path, nobody: pwd.struct_passwd, gate: Gate
) -> None:
    theirs = nobody_dir / "theirs.sock"
    ours = nobody_dir / "ours.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(ours))
    os.chmod(ours, 0o777)  # so that nobody may connect to it
    listener.listen()
    listener.settimeout(30)

    def foreign(report: Report) -> None:
        become(nobody)
        with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
            server.bind(str(theirs))
            server.listen()
            client.connect(str(ours))  # a foreign follower knocks at our leader's socket
            report({"uid": os.geteuid()})
            gate.wait()

    with listener:
        child = Child(foreign)
        assert await child.next() == {"uid": nobody.pw_uid}

        # As a follower: the socket file and the listening process are someone else's.
        with pytest.raises(ShareUnavailable, match=f"owned by uid {nobody.pw_uid}") as info:
            check_socket_owner(theirs)
        assert str(theirs) in str(info.value)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(theirs))
            assert peer_uid(client) == nobody.pw_uid
            with pytest.raises(ShareUnavailable, match=f"runs as uid {nobody.pw_uid}, not 0"):
                check_peer(client)

        # As a leader: the connecting process is someone else's.
        accepted, _ = listener.accept()
        with accepted:
            assert peer_uid(accepted) == nobody.pw_uid
            with pytest.raises(ShareUnavailable, match=f"runs as uid {nobody.pw_uid}"):
                check_peer(accepted)
    gate.open()
    assert await child.exit_code() == 0


def test_socket_owner_check(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_socket_owner(tmp_path / "none.sock")  # no leader yet: not a reason to give up
    (tmp_path / "file.sock").write_text("")
    with pytest.raises(ShareUnavailable, match="is not a socket"):
        check_socket_owner(tmp_path / "file.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "real.sock"))
        check_socket_owner(tmp_path / "real.sock")
        (tmp_path / "link.sock").symlink_to(tmp_path / "real.sock")
        with pytest.raises(ShareUnavailable, match="is not a socket"):
            check_socket_owner(tmp_path / "link.sock")
