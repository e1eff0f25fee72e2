"""One long poll per host (share_poll=True) inside one process: election, push, failover.

Several clients in one process stand for several processes: the leader lock is an ``flock``,
which conflicts between two open files of one process just as between processes, and the
followers talk to the leader over the real Unix socket. Real worker processes are in
tests/share/test_share_servers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from aioapollo import ApolloClient, Hooks, RoleEvent
from aioapollo._core import supervise as _supervise
from aioapollo._share import group as share_mod
from aioapollo._share import timing, wire
from aioapollo._share.group import share_fingerprint
from aioapollo._share.rendezvous import (
    LeaderLock,
    ensure_private_dir,
    lock_path,
    socket_path,
)
from aioapollo.testing import ApolloTestServer

from .._support import wait_until
from .._workers import Child
from ..conftest import APP, ClientFactory, Events

#: Python 3.12+ warns when a process with threads forks; forking such a process is the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


class Roles(Hooks):
    def __init__(self) -> None:
        self.events: list[RoleEvent] = []

    def on_role(self, event: RoleEvent) -> None:
        self.events.append(event)


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    """Another user (needs root, to act as or give things to them)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")


def group_of(client: ApolloClient) -> tuple[Path, str]:
    """The share directory and group fingerprint of ``client``: where its group meets."""
    assert client.options.share_dir is not None
    return ensure_private_dir(Path(client.options.share_dir)), share_fingerprint(client.options)


@pytest.fixture
def shared(make_client: ClientFactory, tmp_path: Path) -> Any:
    share_dir = tmp_path / "share"

    def factory(**kwargs: Any) -> ApolloClient:
        kwargs.setdefault("share_dir", share_dir)
        return make_client(share_poll=True, **kwargs)

    return factory


@contextlib.asynccontextmanager
async def raw_follower(leader: ApolloClient) -> AsyncIterator[Callable[[], list[wire.Message]]]:
    """A follower socket that speaks the wire protocol by hand, joined to ``leader``'s group
    (welcomed, sent the snapshot and a heartbeat); yields a function that returns what has
    arrived on it since it was last called, without waiting."""
    directory, group = group_of(leader)
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.setblocking(False)
    decoder = wire.Decoder()

    def received_now() -> list[wire.Message]:
        data = b""
        while True:
            try:
                chunk = peer.recv(1 << 16)
            except BlockingIOError:
                return [wire.parse(msg) for msg in decoder.feed(data)]
            assert chunk, "the leader closed the connection"
            data += chunk

    try:
        peer.connect(str(socket_path(directory, group)))
        peer.send(wire.encode(wire.Hello(fingerprint=group, pid=os.getpid()).to_wire()))
        joined: list[wire.Message] = []

        def loaded() -> bool:
            joined.extend(received_now())
            return any(isinstance(m, wire.Heartbeat) for m in joined)

        await wait_until(loaded)
        yield received_now
    finally:
        peer.close()


async def test_the_leader_writes_a_release_to_an_idle_follower_before_its_own_listeners_run(
    server: ApolloTestServer, shared: Any
) -> None:
    """An idle follower is written to while the release is applied: when the leader's own
    listener runs, the follower's socket holds the release and its heartbeat already (the
    followers never wait for the leader's listeners, cache write or next poll)."""
    leader = shared()
    await leader.start()
    async with raw_follower(leader) as received_now:
        seen: list[list[wire.Message]] = []

        @leader.on_change
        async def heard(event: Any) -> None:
            seen.append(received_now())

        received_now()  # a heartbeat of the leader's beat, if one came meanwhile
        server.publish(APP, "application", {"greeting": "pushed", "timeout": "30"})
        await wait_until(lambda: bool(seen))
        # (A beat may still slip in before the release: only the release and the heartbeat
        # written with it are asked for.)
        releases = [m for m in seen[0] if isinstance(m, wire.Release)]
        assert len(releases) == 1 and releases[0].items["greeting"] == "pushed", seen[0]
        assert isinstance(seen[0][-1], wire.Heartbeat), seen[0]


async def test_the_leader_writes_a_heartbeat_to_an_idle_follower_in_the_beat_itself(
    server: ApolloTestServer, shared: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A beat wakes no sender task for an idle follower: the heartbeat is in its socket by
    the next turn of the leader's loop (a callback queued just before the beat runs then,
    ahead of any task the beat woke)."""
    monkeypatch.setattr(timing, "HEARTBEAT_INTERVAL", 0.05)
    leader = shared()
    await leader.start()
    async with raw_follower(leader) as received_now:
        await asyncio.sleep(0)  # its sender has sent the snapshot and waits
        received_now()
        loop = asyncio.get_running_loop()
        seen: list[list[wire.Message]] = []

        def before_the_beat() -> None:  # the fault point right before beat()
            if not seen:
                loop.call_soon(lambda: seen.append(received_now()))

        monkeypatch.setitem(_supervise.FAULTS, "share.heartbeat", before_the_beat)
        await wait_until(lambda: bool(seen))
        assert any(isinstance(m, wire.Heartbeat) for m in seen[0]), seen[0]


async def test_one_leader_polls_and_every_client_hears_a_publish(
    server: ApolloTestServer, shared: Any
) -> None:
    roles = Roles()
    clients = [shared(hooks=[roles]) for _ in range(4)]
    for client in clients:
        await client.start()
    stats = [c.stats() for c in clients]
    assert [s.role for s in stats].count("leader") == 1
    assert [s.role for s in stats].count("follower") == 3
    leader = next(c for c in clients if c.stats().role == "leader")
    assert {s.group for s in stats} == {leader.stats().group}
    assert all(s.leader_pid == os.getpid() for s in stats)
    await server.wait_for_polls(1)
    assert server.held_polls == 1
    await wait_until(lambda: leader.stats().followers == 3)
    await wait_until(lambda: all(c.stats().healthy for c in clients))
    heard = [Events.of(c) for c in clients]
    before = len(server.requests)
    server.publish(APP, "application", {"greeting": "bonjour", "timeout": "30"})
    events = [await h.next() for h in heard]
    assert all(e.changed_keys == {"greeting"} for e in events)
    assert all(c.get_nowait("greeting") == "bonjour" for c in clients)
    # The release and then its notification id (advanced once the fetch succeeded) arrive.
    await wait_until(
        lambda: (
            {c.notification_ids["application"] for c in clients}
            == {leader.notification_ids["application"]}
        )
    )
    assert server.held_polls == 1
    # The group fetched the new release once (a solo client each would have fetched 4x).
    fetches = [r for r in server.requests[before:] if r.path.startswith("/configs/")]
    assert len(fetches) == 1
    assert [e.role for e in roles.events].count("leader") == 1


async def test_followers_fire_listeners_once_per_change_and_never_on_first_load(
    server: ApolloTestServer, shared: Any
) -> None:
    leader = shared()
    await leader.start()
    follower = shared()
    heard = Events.of(follower)
    await follower.start()
    assert follower.stats().role == "follower"
    for n in range(3):
        server.publish(APP, "application", {"greeting": f"v{n}", "timeout": "30"})
        event = await heard.next()
        assert event.snapshot.get("greeting") == f"v{n}"
    assert heard.queue.empty()


async def test_the_leader_goes_away_and_a_follower_takes_over_without_missing_a_release(
    server: ApolloTestServer, shared: Any
) -> None:
    first = shared()
    await first.start()
    followers = [shared() for _ in range(2)]
    for f in followers:
        await f.start()
    heard = [Events.of(f) for f in followers]
    await first.aclose()  # the leader leaves: EOF on every follower
    # A publish right away, during the failover: every survivor must see it.
    server.publish(APP, "application", {"greeting": "during", "timeout": "30"})
    for h in heard:
        assert (await h.next()).snapshot.get("greeting") == "during"
    await wait_until(lambda: sorted(f.stats().role for f in followers) == ["follower", "leader"])
    assert all(f.stats().failovers == 1 for f in followers)
    new_leader = next(f for f in followers if f.stats().role == "leader")
    await wait_until(lambda: new_leader.stats().followers == 1)
    server.publish(APP, "application", {"greeting": "after", "timeout": "30"})
    for h in heard:
        assert (await h.next()).snapshot.get("greeting") == "after"
    await server.wait_for_polls(1)
    assert all(h.queue.empty() for h in heard)


async def test_different_options_make_separate_groups(
    server: ApolloTestServer, shared: Any
) -> None:
    plain, labelled = shared(), shared(label="canary")
    await plain.start()
    await labelled.start()
    assert plain.stats().role == labelled.stats().role == "leader"
    assert plain.stats().group != labelled.stats().group
    await server.wait_for_polls(2)


async def test_a_secret_changes_the_group_and_never_shows_in_it(
    shared: Any,
) -> None:
    a, b = shared(secret="s3cret-one"), shared(secret="s3cret-two")
    group_a = share_mod.share_fingerprint(a.options)
    group_b = share_mod.share_fingerprint(b.options)
    assert group_a != group_b
    assert "s3cret" not in group_a


@pytest.mark.parametrize("mode", [0o777, 0o750])
async def test_a_share_dir_others_can_enter_runs_solo_with_one_warning(
    server: ApolloTestServer,
    shared: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: int,
) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(mode)
    client = shared(share_dir=loose)
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        await client.start()
    assert client.stats().role == "solo"
    warnings = [r for r in caplog.records if "runs solo" in r.getMessage()]
    assert len(warnings) == 1
    assert oct(mode)[2:] in warnings[0].getMessage()
    await server.wait_for_polls(1)


# ---------------------------------------------------------------------- fork


async def test_a_killed_leader_is_replaced_although_its_forked_child_lives_on(
    server: ApolloTestServer, shared: Any
) -> None:
    """The leader (a child process here) forks a grandchild, then dies by SIGKILL. The
    grandchild closed its inherited lock descriptor at fork (never unlocking it), so the
    kernel frees the lock with the leader and a follower takes over at once."""
    follower = shared()
    release = os.pipe()

    async def leader_body(report: Any) -> None:
        leader = shared()
        await leader.start()
        grandchild = os.fork()
        if grandchild == 0:  # pragma: no cover - the grandchild just lives on
            os.read(release[0], 1)
            os._exit(0)
        report({"role": leader.stats().role, "grandchild": grandchild})
        await asyncio.Event().wait()  # until killed

    leader_proc = Child.running(leader_body, timeout=60)
    try:
        first = await leader_proc.next()
        assert first["role"] == "leader" and first["grandchild"] > 0
        await follower.start()
        assert follower.stats().role == "follower"
        assert follower.stats().leader_pid == leader_proc.pid
        os.kill(leader_proc.pid, signal.SIGKILL)
        await wait_until(lambda: follower.stats().role == "leader", timeout=3.0)
        assert follower.stats().degraded is None
    finally:
        os.write(release[1], b"x")  # the grandchild (now init's) exits


async def test_a_follower_started_before_fork_rejoins_in_the_child(
    server: ApolloTestServer, shared: Any
) -> None:
    leader, follower = shared(), shared()
    await leader.start()
    await follower.start()

    async def child_body(report: Any) -> None:
        await follower.start()  # the inherited client restarts in the child's loop
        stats = follower.stats()
        report({"role": stats.role, "leader": stats.leader_pid})
        heard = Events.of(follower)
        report({"ready": True})
        event = await heard.next(timeout=10)
        report({"value": event.snapshot.get("greeting")})
        await follower.aclose()

    child = Child.running(child_body)
    first = await child.next()
    assert first == {"role": "follower", "leader": os.getpid()}
    assert await child.next() == {"ready": True}
    server.publish(APP, "application", {"greeting": "to-the-child", "timeout": "30"})
    assert await child.next() == {"value": "to-the-child"}
    assert await child.exit_code() == 0
    assert leader.stats().followers is not None


async def test_sync_and_async_clients_with_the_same_options_share(
    server: ApolloTestServer, shared: Any, make_sync: Any, tmp_path: Path
) -> None:
    leader = shared()
    await leader.start()
    sync = make_sync(share_poll=True, share_dir=tmp_path / "share")
    await asyncio.to_thread(sync.start)
    assert sync.stats().role == "follower" and sync.stats().leader_pid == os.getpid()
    await server.wait_for_polls(1)
    assert server.held_polls == 1
    server.publish(APP, "application", {"greeting": "mixed", "timeout": "30"})
    await wait_until(lambda: sync.get("greeting") == "mixed")


async def test_a_socket_served_by_another_user_is_refused(
    server: ApolloTestServer,
    shared: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    nobody: pwd.struct_passwd,
) -> None:
    """Someone else listens on our group's socket (and holds the lock): never follow it."""
    client = shared()
    directory, fingerprint = group_of(client)
    lock = LeaderLock(lock_path(directory, fingerprint))
    assert lock.try_acquire()  # the test holds the lock: the client cannot lead
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path(directory, fingerprint)))
    ready = os.pipe()

    def impostor(report: Any) -> None:
        os.setuid(nobody.pw_uid)  # listen() records the uid peers will see: nobody's
        listener.listen()
        report({"listening": True})
        conn, _ = listener.accept()
        conn.sendall(b"AAPO\x01")  # whatever it would say, it is never read as ours
        os.read(ready[0], 1)

    child = Child(impostor)
    try:
        assert await child.next() == {"listening": True}
        with caplog.at_level(logging.WARNING, logger="aioapollo"):
            await client.start()
        assert client.stats().role == "solo"
        assert any(
            "runs solo" in r.getMessage() and str(nobody.pw_uid) in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
        assert client.get_nowait("greeting") == "hello"  # loaded from Apollo itself
    finally:
        os.write(ready[1], b"x")
        await child.exit_code()
        listener.close()
        lock.release()


# ---------------------------------------------------------------------- the protocol's edges


async def test_a_follower_that_stops_reading_is_dropped_and_slows_no_one(
    server: ApolloTestServer, shared: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timing, "SLOW_FOLLOWER", 0.5)
    leader, follower = shared(), shared()
    await leader.start()
    await follower.start()
    directory, fingerprint = group_of(leader)
    assert leader.stats().group == fingerprint
    # A follower that says hello, then never reads again.
    _reader, writer = await asyncio.open_unix_connection(str(socket_path(directory, fingerprint)))
    hello = wire.Hello(fingerprint=fingerprint, pid=os.getpid())
    writer.write(wire.encode(hello.to_wire()))
    await wait_until(lambda: leader.stats().followers == 2)
    heard = Events.of(follower)
    big = "x" * 1_000_000  # a few of these fill the stalled socket's buffers
    for n in range(6):
        server.publish(APP, "application", {"greeting": f"v{n}", "blob": big})
        event = await heard.next()  # the healthy follower never waits for the stalled one
        assert event.snapshot.get("greeting") == f"v{n}"
    await wait_until(lambda: leader.stats().followers == 1)  # the stalled one was dropped
    writer.close()


async def test_a_follower_mirrors_its_leaders_poll_time_and_health(
    server: ApolloTestServer, shared: Any
) -> None:
    leader, follower = shared(), shared()
    await leader.start()
    await follower.start()
    await wait_until(lambda: leader.last_poll_success is not None)
    await wait_until(lambda: follower.last_poll_success == leader.last_poll_success)
    stats = follower.stats()
    assert stats.leader_healthy and stats.in_sync and stats.healthy
    assert stats.as_dict()["role"] == "follower"


async def test_another_local_protocol_version_is_another_group(
    shared: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a rolling deploy, two aioapollo versions never read each other's frames."""
    client = shared()
    now = share_mod.share_fingerprint(client.options)
    monkeypatch.setattr(share_mod, "PROTOCOL_VERSION", wire.PROTOCOL_VERSION + 1)
    assert share_mod.share_fingerprint(client.options) != now


async def test_a_share_dir_of_another_user_runs_solo(
    server: ApolloTestServer,
    shared: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    nobody: pwd.struct_passwd,
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    client = shared(share_dir=theirs)
    with caplog.at_level(logging.WARNING, logger="aioapollo"):
        await client.start()
    assert client.stats().role == "solo"
    (warning,) = [r.getMessage() for r in caplog.records if "runs solo" in r.getMessage()]
    assert str(nobody.pw_uid) in warning
    assert list(theirs.iterdir()) == []  # nothing of ours was put there
