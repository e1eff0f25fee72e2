"""share_poll=True under attack: never deaf, never fatal, never leaks.

Each case was found by attacking a sharing group with real processes; each test here failed
on the code before its fix. Leaders that must die, hang or run out of descriptors are forked
children; followers are clients in this process, talking over the real Unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient
from aioapollo._share import group as share_mod
from aioapollo._share import timing
from aioapollo._share.wire import MAGIC, PROTOCOL_VERSION, Decoder, Hello, Refuse, encode, parse
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import Child
from ..conftest import APP, FAST, ClientFactory, Events

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@pytest.fixture
def share_dir(tmp_path: Path) -> Path:
    return tmp_path / "share"


@pytest.fixture
def shared(make_client: ClientFactory, share_dir: Path) -> Any:
    def factory(**kwargs: Any) -> ApolloClient:
        kwargs.setdefault("share_dir", share_dir)
        return make_client(share_poll=True, **kwargs)

    return factory


def group_socket(share_dir: Path, client: ApolloClient) -> Path:
    group = client.stats().group
    assert group is not None
    return share_dir / f"{group[:16]}.sock"


def leader_in_child(shared: Any, **options: Any) -> Child:
    """A forked leader that reports once it leads, then serves until killed."""

    async def body(report: Any) -> None:
        leader = shared(**options)
        await leader.start()
        report({"role": leader.stats().role})
        await asyncio.Event().wait()

    return Child.running(body, timeout=60)


# ---------------------------------------------------------------------- 1. the directory goes


async def test_a_removed_share_dir_never_leaves_the_group_deaf(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    """A tmp cleaner removes the directory; later the leader dies. The followers can neither
    lead nor follow in the old directory: they poll Apollo at once, re-make the directory
    and re-elect, and a publish made meanwhile reaches them."""
    leader = leader_in_child(shared)
    assert (await leader.next())["role"] == "leader"
    followers = [shared() for _ in range(2)]
    for follower in followers:
        await follower.start()
    assert [f.stats().role for f in followers] == ["follower", "follower"]
    heard = [Events.of(f) for f in followers]

    shutil.rmtree(share_dir)
    os.kill(leader.pid, signal.SIGKILL)
    await leader.exit_code()
    server.publish(APP, "application", {"greeting": "after the cleaner", "timeout": "30"})
    for events in heard:
        assert (await events.next()).changes["greeting"].new_value == "after the cleaner"
    # The group re-formed in a re-made (private) directory: one leader, one follower.
    await wait_until(
        lambda: sorted(f.stats().role for f in followers) == ["follower", "leader"], timeout=10
    )
    assert os.stat(share_dir).st_mode & 0o7777 == 0o700  # re-made, private
    await wait_until(lambda: all(f.stats().healthy for f in followers), timeout=10)
    await server.wait_for_polls(1)
    await wait_until(lambda: server.held_polls == 1, timeout=10)


async def test_a_leader_whose_socket_was_removed_moves_into_the_remade_directory(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    leader = shared()
    await leader.start()
    shutil.rmtree(share_dir)
    await wait_until(lambda: os.path.exists(group_socket(share_dir, leader)), timeout=5)
    assert leader.stats().role == "leader"
    newcomer = shared()
    await newcomer.start()
    assert newcomer.stats().role == "follower"
    assert newcomer.stats().leader_pid == os.getpid()
    heard = Events.of(newcomer)
    server.publish(APP, "application", {"greeting": "re-homed", "timeout": "30"})
    assert (await heard.next()).changes["greeting"].new_value == "re-homed"


# ---------------------------------------------------------------------- 2. an unusable lock


@pytest.mark.parametrize("how", ["a directory", "a file nobody may open"])
async def test_an_unusable_lock_at_start_runs_solo_with_one_warning(
    server: ApolloTestServer,
    shared: Any,
    share_dir: Path,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    probe = shared()
    group = share_mod.share_fingerprint(probe.options)
    os.mkdir(share_dir, 0o700)
    lock = share_dir / f"{group[:16]}.lock"
    if how == "a directory":
        os.mkdir(lock)
    else:
        if os.geteuid() == 0:
            pytest.skip("root opens any file; the directory case covers root")
        os.close(os.open(lock, os.O_CREAT | os.O_WRONLY, 0))
    client = shared()
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        await client.start()
    assert client.stats().role == "solo"
    assert client.get_nowait("greeting") == "hello"
    warnings = [r.getMessage() for r in caplog.records if "runs solo" in r.getMessage()]
    assert len(warnings) == 1 and str(lock) in warnings[0], warnings
    heard = Events.of(client)
    server.publish(APP, "application", {"greeting": "solo", "timeout": "30"})
    assert (await heard.next()).changes["greeting"].new_value == "solo"


# ---------------------------------------------------------------------- 3. a hung leader


async def test_a_follower_back_from_a_hung_leader_logs_no_false_error_and_keeps_watching(
    server: ApolloTestServer,
    shared: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leader stops (SIGSTOP) long enough for its follower to poll Apollo itself, then
    comes back: the follower stops its own poll. That is not its loop dying: no ERROR, and
    when its loop really ends later, that is still reported."""
    monkeypatch.setattr(timing, "LEADER_SILENCE", 0.5)
    leader = leader_in_child(shared)
    assert (await leader.next())["role"] == "leader"
    follower = shared()
    degraded, recovered, done = threading.Event(), threading.Event(), threading.Event()
    reads: list[str | None] = []

    async def in_its_own_loop() -> None:
        await follower.start()
        assert follower.stats().role == "follower"
        # the test stops and resumes the leader; this loop runs on meanwhile
        while not degraded.is_set() or not recovered.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # back on the fast path: a change is heard and read
        events = Events.of(follower)
        server.publish(APP, "application", {"greeting": "after the hang", "timeout": "30"})
        await events.next()
        reads.append(follower.get_nowait("greeting"))
        done.set()
        # ...and then this loop ends without aclose(): that must still be reported

    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        thread = asyncio.create_task(asyncio.to_thread(asyncio.run, in_its_own_loop()))
        await wait_until(lambda: follower.stats().role == "follower", timeout=10)
        os.kill(leader.pid, signal.SIGSTOP)
        try:
            await wait_until(lambda: follower.stats().degraded is not None, timeout=10)
            degraded.set()
        finally:
            os.kill(leader.pid, signal.SIGCONT)
        await wait_until(lambda: follower.stats().degraded is None, timeout=10)
        errors_after_recovery = [
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
        ]
        recovered.set()
        await asyncio.wait_for(thread, 30)
    assert errors_after_recovery == []
    assert reads == ["after the hang"]
    assert done.is_set()
    ended = [r.getMessage() for r in caplog.records if "without aclose()" in r.getMessage()]
    assert len(ended) == 1, ended


# ---------------------------------------------------------------------- 4. what peers send


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path))


async def _closed_by_leader(reader: asyncio.StreamReader, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while await reader.read(1 << 16):
            pass


@pytest.mark.parametrize("after_hello", [False, True])
async def test_a_peer_announcing_a_huge_frame_is_cut_at_the_header(
    server: ApolloTestServer, shared: Any, share_dir: Path, after_hello: bool
) -> None:
    leader = shared()
    await leader.start()
    reader, writer = await _connect(group_socket(share_dir, leader))
    if after_hello:
        group = leader.stats().group
        assert group is not None
        writer.write(encode(Hello(fingerprint=group, pid=os.getpid()).to_wire()))
    # 200 MB announced, a few bytes sent: the leader closes without reading further.
    writer.write(MAGIC + bytes((PROTOCOL_VERSION,)) + (200 << 20).to_bytes(4, "big") + b"x")
    await writer.drain()
    await _closed_by_leader(reader)
    writer.close()
    follower = shared()
    await follower.start()
    assert follower.stats().role == "follower"


async def test_a_peer_that_never_says_hello_is_dropped(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    leader = shared()
    await leader.start()
    reader, writer = await _connect(group_socket(share_dir, leader))
    await _closed_by_leader(reader, within=timing.HANDSHAKE_TIMEOUT + 3)
    writer.close()


async def test_a_hello_from_another_group_is_refused(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    """A peer whose fingerprint is not the group's is told why and closed, never welcomed."""
    leader = shared()
    await leader.start()
    reader, writer = await _connect(group_socket(share_dir, leader))
    writer.write(encode(Hello(fingerprint="0" * 64, pid=os.getpid()).to_wire()))
    await writer.drain()
    decoder, received = Decoder(), b""
    async with asyncio.timeout(5):
        while chunk := await reader.read(1 << 16):
            received += chunk
    writer.close()
    answers = [parse(msg) for msg in decoder.feed(received)]
    assert answers == [Refuse(reason="not a member of this group")]
    assert leader.stats().followers == 0


# ---------------------------------------------------------------------- 5. too many peers


async def test_followers_beyond_the_limit_are_refused_and_poll_for_themselves(
    server: ApolloTestServer, shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    leader = shared(share_max_followers=2)
    await leader.start()
    clients = [shared(share_max_followers=2) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        for client in clients:
            await client.start()
    assert leader.stats().followers == 2
    refused = [c for c in clients if c.stats().role != "follower" or c.stats().degraded]
    assert len(refused) == 1 and refused[0].stats().polls_apollo
    assert any("share_max_followers" in r.getMessage() for r in caplog.records)
    heard = [Events.of(c) for c in clients]
    server.publish(APP, "application", {"greeting": "everyone", "timeout": "30"})
    for events in heard:
        assert (await events.next()).changes["greeting"].new_value == "everyone"


async def test_a_crowd_of_silent_peers_holds_no_descriptors(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    """200 connections that never say hello: the leader keeps at most a handful open, and a
    real follower still joins."""
    leader = shared()
    await leader.start()
    path = group_socket(share_dir, leader)
    before = len(os.listdir("/proc/self/fd"))
    socks = []
    try:
        for _ in range(200):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(str(path))
            socks.append(sock)
        # Our 200 ends are ours; the leader's ends (same process here) are what is bounded.
        await wait_until(
            lambda: (
                len(os.listdir("/proc/self/fd")) - before - len(socks) <= timing.MAX_HANDSHAKES + 2
            ),
            timeout=10,
        )
        follower = shared()
        await follower.start()
        assert follower.stats().role in ("follower", "solo")
    finally:
        for sock in socks:
            sock.close()
    await wait_until(lambda: leader.stats().followers <= 1, timeout=10)


async def test_a_leader_out_of_descriptors_backs_off_and_logs_once(
    server: ApolloTestServer, shared: Any, share_dir: Path
) -> None:
    """The leader's process is at its descriptor limit (its application holds them). Peers
    knocking get no flood of ERRORs; once the app lets go, a follower joins."""
    release = os.pipe()

    async def body(report: Any) -> None:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger().addHandler(handler)  # asyncio's own log lines too
        leader = shared()
        await leader.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        held = []
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        report({"full": True})
        # The test knocks now; the accept loop must meet the limit, and say so, once.
        await wait_until(
            lambda: any("cannot accept followers" in r.getMessage() for r in records),
            timeout=20,
        )
        report({"warned": True})
        await asyncio.to_thread(os.read, release[0], 1)
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        report({"freed": True})
        await asyncio.to_thread(os.read, release[0], 1)
        lines = [f"{r.levelname} {r.getMessage()}" for r in records if "accept" in r.getMessage()]
        report({"lines": lines})

    leader = Child.running(body, timeout=60)
    assert (await leader.next())["full"]
    # Knock: the leader, out of descriptors, cannot accept them.
    knockers = []
    follower_probe = ApolloClient(APP, config_server=server.url, share_poll=True, **FAST)
    path = share_dir / f"{share_mod.share_fingerprint(follower_probe.options)[:16]}.sock"
    for _ in range(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError):
            sock.connect(str(path))
        knockers.append(sock)
    assert (await leader.next())["warned"]
    os.write(release[1], b"x")
    assert (await leader.next())["freed"]
    for sock in knockers:
        sock.close()
    follower = shared()
    await follower.start()
    assert follower.stats().role == "follower"
    os.write(release[1], b"x")
    lines = (await leader.next())["lines"]
    errors = [line for line in lines if line.startswith("ERROR")]
    warned = [line for line in lines if "cannot accept followers" in line]
    assert errors == [] and len(warned) == 1, lines
    assert errno.EMFILE  # (the limit hit is EMFILE: too many open files in this process)


# ---------------------------------------------------------------------- 6. close/lead races


async def test_closing_while_taking_the_lead_leaks_no_socket(
    server: ApolloTestServer, make_client: ClientFactory, share_dir: Path
) -> None:
    """A follower is closed the moment it becomes leader (the leader's close hands over to
    it): no listening socket escapes its close (unraisable warnings are errors, and gc runs
    each round), 50 times in a row."""
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        leader = ApolloClient(
            APP, config_server=server.url, share_poll=True, share_dir=share_dir, **FAST
        )
        follower = ApolloClient(
            APP, config_server=server.url, share_poll=True, share_dir=share_dir, **FAST
        )
        await leader.start()
        await follower.start()
        assert follower.stats().role == "follower"
        closing = asyncio.create_task(leader.aclose())
        async with asyncio.timeout(10):
            while follower.stats().role != "leader":  # noqa: ASYNC110
                await asyncio.sleep(0)  # one loop turn: close at the first turn it leads
        await follower.aclose()
        await closing
        gc.collect()
        # Nothing listens any more: the socket file is gone and no descriptor is left open.
        assert not any(name.endswith(".sock") for name in os.listdir(share_dir))
        assert len(os.listdir("/proc/self/fd")) <= fds


async def test_a_clean_handover_is_info_and_a_vanished_leader_a_warning(
    server: ApolloTestServer, shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    leader = shared()
    await leader.start()
    follower = shared()
    await follower.start()
    with caplog.at_level(logging.INFO, logger="aioapollo"):
        await leader.aclose()
        await wait_until(lambda: follower.stats().role == "leader", timeout=5)
    gone = [r for r in caplog.records if "electing a new one" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO], [r.getMessage() for r in gone]
    assert "handed over" in gone[0].getMessage()
    assert not any(r.levelno >= logging.WARNING for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ]
    # A leader that vanishes (SIGKILL) is an incident: WARNING.
    caplog.clear()
    await follower.aclose()
    victim = leader_in_child(shared)
    assert (await victim.next())["role"] == "leader"
    survivor = shared()
    await survivor.start()
    with caplog.at_level(logging.INFO, logger="aioapollo"):
        os.kill(victim.pid, signal.SIGKILL)
        await wait_until(lambda: survivor.stats().role == "leader", timeout=5)
    gone = [r for r in caplog.records if "electing a new one" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.WARNING]
    assert "is gone" in gone[0].getMessage()


@pytest.mark.parametrize("ending", ["aclose", "the loop ends"])
async def test_a_recycled_leader_exits_without_a_traceback(
    server: ApolloTestServer, shared: Any, ending: str
) -> None:
    """A recycled worker that leads exits while followers are connected: nothing it logs
    carries a traceback (its loop's end included), and a follower takes over."""
    release = os.pipe()

    def body(report: Any) -> None:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger().addHandler(handler)  # asyncio's own log lines too

        async def serve() -> None:
            leader = shared()
            await leader.start()
            report({"role": leader.stats().role})
            await asyncio.to_thread(os.read, release[0], 1)
            await wait_until(lambda: leader.stats().followers == 2, timeout=10)
            if ending == "aclose":
                await leader.aclose()

        asyncio.run(serve())
        report({"tracebacks": [r.getMessage() for r in records if r.exc_info]})

    leader = Child(body)
    assert (await leader.next())["role"] == "leader"
    followers = [shared() for _ in range(2)]
    for follower in followers:
        await follower.start()
    os.write(release[1], b"x")
    assert (await leader.next())["tracebacks"] == []
    assert await leader.exit_code() == 0
    await wait_until(lambda: "leader" in [f.stats().role for f in followers], timeout=10)
