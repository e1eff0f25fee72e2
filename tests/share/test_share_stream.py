"""The follower's inbox: messages off a real StreamReader, and its silence timer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from aioapollo._share.stream import Inbox
from aioapollo._share.wire import Heartbeat, Resync, WireError, encode

FRAME = encode(Resync().to_wire())


def heartbeat(pid: int) -> bytes:
    return encode(
        Heartbeat(leader_pid=pid, healthy=True, last_poll_success=None, states={}).to_wire()
    )


async def test_silence_raises_timeout_and_the_inbox_goes_on() -> None:
    reader = asyncio.StreamReader()
    inbox = Inbox(reader)
    with pytest.raises(TimeoutError):
        await inbox.next(within=0.05)
    reader.feed_data(FRAME)
    assert await inbox.next(within=5) == Resync()


async def test_one_timer_serves_every_wait_of_a_busy_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncio.timeout around each wait would arm (and cancel) one timer per message."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    inbox = Inbox(reader)
    armed = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)  # nothing else in this test arms a timer
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    for pid in range(1, 51):
        loop.call_soon(reader.feed_data, heartbeat(pid))  # arrives while the inbox waits
        message = await inbox.next(within=60)
        assert isinstance(message, Heartbeat) and message.leader_pid == pid
    assert len(armed) == 1


async def test_frames_of_one_read_are_returned_one_at_a_time() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(heartbeat(1) + heartbeat(2))
    inbox = Inbox(reader)
    first, second = await inbox.next(within=60), await inbox.next(within=60)
    assert isinstance(first, Heartbeat) and isinstance(second, Heartbeat)
    assert (first.leader_pid, second.leader_pid) == (1, 2)


async def test_silence_counts_from_the_current_wait_not_an_earlier_one() -> None:
    """The timer armed for an earlier wait fires during a later one: it re-arms for the later
    wait's own deadline instead of ending it early."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    inbox = Inbox(reader)
    loop.call_soon(reader.feed_data, FRAME)
    assert await inbox.next(within=0.2) == Resync()  # armed a timer for about now + 0.2 s
    # The old timer fires during this wait, long before its own deadline (and before the
    # frame, even if the loop is late: timers run in the order of their times).
    loop.call_later(0.4, reader.feed_data, FRAME)
    assert await inbox.next(within=60) == Resync()


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    inbox = Inbox(asyncio.StreamReader())
    waiting = asyncio.create_task(inbox.next(within=60))
    await asyncio.sleep(0)  # it waits in the read
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_the_end_of_the_stream_is_none_and_a_cut_frame_an_error() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(FRAME)
    reader.feed_eof()
    inbox = Inbox(reader)
    assert await inbox.next(within=5) == Resync()
    assert await inbox.next(within=5) is None
    cut = asyncio.StreamReader()
    cut.feed_data(FRAME[:-1])
    cut.feed_eof()
    with pytest.raises(WireError, match="ended inside a frame"):
        await Inbox(cut).next(within=5)


async def test_a_shorter_silence_than_the_armed_timer_ends_its_wait_in_time() -> None:
    """The timer left from a longer wait fires too late for a shorter one: it is re-armed."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    inbox = Inbox(reader)
    loop.call_soon(reader.feed_data, FRAME)
    assert await inbox.next(within=60) == Resync()  # armed a timer for about now + 60 s
    async with asyncio.timeout(5):  # the fault: this wait would end only at that timer
        with pytest.raises(TimeoutError):
            await inbox.next(within=0.05)
    reader.feed_data(FRAME)
    assert await inbox.next(within=60) == Resync()


async def test_silence_is_a_timeout_in_a_task_that_swallowed_an_earlier_cancel() -> None:
    """As with asyncio.timeout: only a cancel requested during the wait stays a cancel."""
    inbox = Inbox(asyncio.StreamReader())

    async def reader() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # consumed without uncancel(): cancelling() stays 1
        with pytest.raises(TimeoutError):
            await inbox.next(within=0.05)

    await asyncio.create_task(reader())


@pytest.mark.parametrize("elsewhere_first", [True, False])
async def test_a_cancel_from_elsewhere_together_with_the_silence_stays_a_cancel(
    elsewhere_first: bool,
) -> None:
    """Both cancels land before the waiting task runs again (the loop was busy past the
    deadline), in either order: the task is cancelled, not timed out, and owes one cancel."""
    loop = asyncio.get_running_loop()
    inbox = Inbox(asyncio.StreamReader())
    cancelled_with: list[int] = []

    async def wait() -> None:
        try:
            await inbox.next(within=0.01)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            cancelled_with.append(task.cancelling())
            raise

    waiting = asyncio.create_task(wait())
    await asyncio.sleep(0)  # it waits in the read, its timer armed
    assert inbox._timer is not None
    if not elsewhere_first:
        loop.call_at(inbox._timer.when() + 0.005, waiting.cancel)  # runs after the timer, same turn
    time.sleep(0.03)  # noqa: ASYNC251 (the loop busy past the deadline and the cancel)
    if elsewhere_first:
        waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cancelled_with == [1]
