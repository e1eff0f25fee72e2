"""The supervisor on its own: restarts, backoff, degraded, the crash budget, cancellation.

The client's loops under it, crashed at their fault points over real loopback, are in
tests/faults/test_loop_crashes.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from aioapollo import ErrorEvent, Hooks, LoopCrashedError
from aioapollo._core import supervise as _supervise
from aioapollo._core.supervise import CRASH_BUDGET, Progress, Supervisor
from aioapollo._hooks import HookSet


class Errors(Hooks):
    """Collects error events and what the supervisor (if given) said at each."""

    def __init__(self) -> None:
        self.events: list[ErrorEvent] = []
        self.supervisor: Supervisor | None = None
        self.seen: list[tuple[tuple[str, ...], list[str]]] = []

    def on_error(self, event: ErrorEvent) -> None:
        self.events.append(event)
        if self.supervisor is not None:
            self.seen.append((self.supervisor.degraded, self.supervisor.reasons()))


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def _quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_supervise, "RESTART_INITIAL", 0.001)
    monkeypatch.setattr(_supervise, "RESTART_MAX", 0.004)


class Flaky:
    """A loop that raises ``errors`` in turn, one per run, then reports an iteration and
    waits for ever; ``runs`` counts its runs and ``settled`` is set once it waits."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.runs = 0
        self.restarted: list[bool] = []
        self.settled = asyncio.Event()

    async def __call__(self, progress: Progress) -> None:
        self.runs += 1
        self.restarted.append(progress.restarted)
        if self.errors:
            raise self.errors.pop(0)
        progress.done()
        self.settled.set()
        await asyncio.Event().wait()


async def test_a_crashed_loop_restarts_is_reported_and_clears_after_one_iteration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    errors = Errors()
    supervisor = errors.supervisor = Supervisor("app", HookSet(errors))
    loop = Flaky(Boom("the value 's3cr3t' is bad"), KeyError("k"))
    seen = errors.seen
    task = supervisor.spawn("poll", loop)
    await asyncio.wait_for(loop.settled.wait(), 5)
    assert loop.runs == 3 and loop.restarted == [False, True, True]
    assert [e.operation for e in errors.events] == ["loop:poll", "loop:poll"]
    assert [e.kind for e in errors.events] == ["LoopCrashedError:Boom", "LoopCrashedError:KeyError"]
    first = errors.events[0].error
    assert isinstance(first, LoopCrashedError) and first.loop == "poll" and first.crash == "Boom"
    assert isinstance(first.__cause__, Boom)
    # Degraded from each crash until the iteration that followed the last one.
    assert [names for names, _ in seen] == [("poll",), ("poll",)]
    assert "the poll loop was restarted after a crash (Boom)" in seen[0][1][0]
    assert supervisor.degraded == () and supervisor.reasons() == []
    assert supervisor.failing() == () and supervisor.crashes == 2
    # Each crash logged once, with its traceback; the recovery once, at INFO.
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert [r.levelno for r in crashes] == [logging.WARNING, logging.WARNING]
    assert all(r.exc_info is not None for r in crashes)
    assert sum("completed an iteration again" in r.getMessage() for r in caplog.records) == 1
    # The message, the reason and the hook's error name classes, never what an error says.
    texts = [r.getMessage() for r in caplog.records] + [str(first), *seen[0][1]]
    assert not any("s3cr3t" in text for text in texts)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled() and supervisor.crashes == 2
    assert supervisor._loops == {}  # a loop that ended is forgotten


async def test_a_loop_that_returns_ends_without_a_crash() -> None:
    supervisor = Supervisor("app")
    ran = []

    async def once(progress: Progress) -> None:
        ran.append(progress.name)

    task = supervisor.spawn("cache", once)
    await task
    assert ran == ["cache"] and supervisor.crashes == 0 and supervisor._loops == {}


async def test_cancellation_is_never_a_crash_but_a_stray_cancelled_error_is() -> None:
    errors = Errors()
    supervisor = Supervisor("app", HookSet(errors))
    loop = Flaky(asyncio.CancelledError())  # raised inside, while nobody cancels the task
    task = supervisor.spawn("listeners", loop)
    await asyncio.wait_for(loop.settled.wait(), 5)
    assert [e.kind for e in errors.events] == ["LoopCrashedError:CancelledError"]
    task.cancel()  # this one is the task's own cancellation
    await asyncio.wait([task])
    assert task.cancelled() and len(errors.events) == 1 and supervisor.crashes == 1


async def test_a_loop_that_raises_while_being_cancelled_is_not_restarted() -> None:
    supervisor = Supervisor("app")
    running = asyncio.Event()
    runs = []

    async def untidy(progress: Progress) -> None:
        runs.append(progress.restarted)
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom from None  # a bug in its cleanup

    task = supervisor.spawn("cache", untidy)
    await asyncio.wait_for(running.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled() and runs == [False]
    assert supervisor.crashes == 1 and supervisor._loops == {}


async def test_cancelled_while_waiting_to_restart_ends_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_supervise, "RESTART_INITIAL", 60.0)
    monkeypatch.setattr(_supervise, "RESTART_MAX", 60.0)
    supervisor = Supervisor("app")
    crashed = asyncio.Event()

    async def broken(progress: Progress) -> None:
        crashed.set()
        raise Boom

    task = supervisor.spawn("refresh", broken)
    await asyncio.wait_for(crashed.wait(), 5)  # it waits to restart by now (same step)
    assert supervisor.degraded == ("refresh",)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled() and supervisor.crashes == 1 and supervisor.degraded == ()


async def test_the_crash_budget_fails_the_loop_with_one_error_then_retries_at_the_cap(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioapollo")
    supervisor = Supervisor("app")
    loop = Flaky(*(Boom() for _ in range(CRASH_BUDGET + 3)))
    task = supervisor.spawn("share", loop)
    await asyncio.wait_for(loop.settled.wait(), 5)
    assert supervisor.failing() == ("share",)  # 8 crashes in the window
    assert supervisor.degraded == ()  # ... although it completed an iteration since
    (reason,) = supervisor.reasons()
    assert reason.startswith(f"the share loop crashed {CRASH_BUDGET + 3} times in 600 s")
    levels = [r.levelno for r in caplog.records if "crashed" in r.getMessage()]
    # 4 warnings, the one error at the budget, then crashes 2 and 4 of the episode warn.
    assert levels == [logging.WARNING] * 4 + [logging.ERROR] + [
        logging.WARNING,
        logging.DEBUG,
        logging.WARNING,
    ]
    # It fails for as long as the crashes lie in the window.
    monkeypatch.setattr(_supervise, "CRASH_WINDOW", 0.0)
    assert supervisor.failing() == () and supervisor.reasons() == []
    task.cancel()
    await asyncio.wait([task])


def test_restart_delays_double_with_jitter_up_to_the_cap_and_reset_on_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_supervise, "RESTART_INITIAL", 0.1)
    monkeypatch.setattr(_supervise, "RESTART_MAX", 30.0)
    monkeypatch.setattr(_supervise, "CRASH_BUDGET", 100)
    progress = Progress("poll")
    now = 1000.0
    for expected in [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]:
        failing, delay = progress._crash(now, "Boom")
        assert not failing and expected / 2 <= delay <= expected
    progress.done()  # a complete iteration resets the backoff
    assert not progress.degraded
    assert 0.05 <= progress._crash(now, "Boom")[1] <= 0.1
    # Over the budget the delay is the cap at once, whatever the backoff says.
    monkeypatch.setattr(_supervise, "CRASH_BUDGET", 5)
    progress.done()
    failing, delay = progress._crash(now, "Boom")
    assert failing and 15.0 <= delay <= 30.0


def test_only_crashes_within_the_window_count() -> None:
    progress = Progress("poll")
    for t in (0.0, 1.0, 2.0, 3.0):
        assert not progress._crash(t, "Boom")[0]
    assert progress._crash(4.0, "Boom")[0]  # 5 within 600 s
    assert progress.failing(599.0) and not progress.failing(600.5)
    assert progress.recent_crashes(602.0) == 2
    assert not progress._crash(700.0, "Boom")[0]  # the old ones are pruned at a crash
    assert len(progress._crashes) == 1


async def test_degraded_names_each_loop_once_however_many_instances() -> None:
    supervisor = Supervisor("app")
    loops = [Flaky(Boom()), Flaky(Boom()), Flaky()]
    gate, both_restarted = asyncio.Event(), asyncio.Event()
    restarted: list[str] = []

    def held(loop: Flaky) -> _supervise.Loop:
        async def run(progress: Progress) -> None:
            if progress.restarted:
                restarted.append(progress.name)
                if len(restarted) == 2:
                    both_restarted.set()
                await gate.wait()  # stays degraded until the gate opens
            await loop(progress)

        return run

    tasks = [supervisor.spawn("poll", held(loops[0])), supervisor.spawn("poll", held(loops[1]))]
    tasks.append(supervisor.spawn("cache", held(loops[2])))
    await asyncio.wait_for(asyncio.gather(loops[2].settled.wait(), both_restarted.wait()), 5)
    assert supervisor.crashes == 2 and supervisor.degraded == ("poll",)
    gate.set()
    await asyncio.wait_for(asyncio.gather(loops[0].settled.wait(), loops[1].settled.wait()), 5)
    assert supervisor.degraded == ()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
