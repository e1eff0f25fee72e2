"""Supervised loops: every long-lived task of a client runs under this one helper.

A client's background work is a handful of loops that must run for as long as the client does:
the long poll(s), the safety refresh, the listener dispatcher, the cache writer and, with
``share_poll=True``, the sharing loop and the leader's per-follower senders. Each loop handles
the failures it expects (Apollo down, a full disk, a dead leader) itself. Anything else is a
bug, and a bug must neither freeze the loop silently nor be hidden by endless restarts:

- **Restart with backoff.** An unexpected exception ends the loop's current run: it is logged
  with its traceback, reported to the hooks as an :class:`~aioapollo.ErrorEvent` (operation
  ``"loop:<name>"``, error :class:`~aioapollo.LoopCrashedError`), and the loop is called again
  after a jittered delay, :data:`RESTART_INITIAL` doubling up to :data:`RESTART_MAX`.
- **Degraded until it works again.** From the crash until the loop reports one complete
  iteration (:meth:`Progress.done`), ``stats().degraded`` names it. The first iteration after a
  crash also resets the backoff.
- **A crash budget.** :data:`CRASH_BUDGET` crashes of one loop within :data:`CRASH_WINDOW`
  seconds make it *failing*: one ERROR is logged, ``stats().healthy`` is false, and the loop
  is retried at the backoff cap only. It stops failing once fewer than that many of its
  crashes lie in the window.
- **Cancellation is never a crash.** The task's own cancellation (``aclose()``, a follower that
  stops polling) ends it quietly. A stray :class:`asyncio.CancelledError` raised inside the loop
  while nobody cancelled its task is a crash like any other.

A loop's state that must survive a restart (notification ids, queued events, pending cache
writes, a follower's dirty set) lives in objects outside the loop's frame, and every loop is
written so that a run may start where an earlier one crashed.

Fault points: :func:`fault` is called at named points of the loops. It does nothing unless a
test put a callable into :data:`FAULTS` (one check of an empty dict in production).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable

from .._exceptions import LoopCrashedError
from .._hooks import ErrorEvent, HookSet

__all__ = [
    "CRASH_BUDGET",
    "CRASH_WINDOW",
    "FAULTS",
    "RESTART_INITIAL",
    "RESTART_MAX",
    "Progress",
    "Supervisor",
    "fault",
]

logger = logging.getLogger("aioapollo")

#: First delay before a crashed loop runs again (seconds, jittered to [d/2, d]).
RESTART_INITIAL = 0.1
#: The restart delay doubles up to this cap; a failing loop is retried at the cap only.
RESTART_MAX = 30.0
#: Crashes of one loop within :data:`CRASH_WINDOW` seconds that make it failing.
CRASH_BUDGET = 5
CRASH_WINDOW = 600.0

#: Test-only fault injection: point name -> callable run there (it raises to inject a crash).
FAULTS: dict[str, Callable[[], None]] = {}


def fault(point: str) -> None:
    """Run the fault a test injected at ``point``, if any (production: one empty-dict check)."""
    if FAULTS:
        injected = FAULTS.get(point)
        if injected is not None:
            injected()


class Progress:
    """One supervised loop's health, handed to the loop on each run.

    The loop calls :meth:`done` after each complete iteration (a poll answered, a refresh
    finished, an event delivered, a write done, a heartbeat or message handled); that is what
    ends a degraded state after a crash. Everything here survives the loop's restarts.
    """

    __slots__ = (
        "_app_id",
        "_backoff_failures",
        "_crashes",
        "_degraded",
        "_episode",
        "_runs",
        "name",
    )

    def __init__(self, name: str, app_id: str = "") -> None:
        self.name = name
        self._app_id = app_id
        #: Monotonic times of the crashes within CRASH_WINDOW (pruned at each crash).
        self._crashes: collections.deque[float] = collections.deque()
        #: The crash's exception class name while degraded, else None.
        self._degraded: str | None = None
        #: Crashes in the current failing episode (0: not failing when it last crashed).
        self._episode = 0
        self._backoff_failures = 0
        self._runs = 0

    @property
    def restarted(self) -> bool:
        """Whether this run of the loop follows a crash (its previous run did not finish)."""
        return self._runs > 1

    @property
    def degraded(self) -> bool:
        """Whether the loop crashed and has not completed an iteration since."""
        return self._degraded is not None

    def done(self) -> None:
        """The loop completed one full iteration (cheap: call it every time)."""
        if self._degraded is not None:
            self._recovered()

    def _recovered(self) -> None:
        logger.log(
            logging.DEBUG if self._episode else logging.INFO,
            "the %s loop of ApolloClient(%r) completed an iteration again after its crash",
            self.name,
            self._app_id,
        )
        self._degraded = None
        self._backoff_failures = 0

    def recent_crashes(self, now: float) -> int:
        """Crashes within the last :data:`CRASH_WINDOW` seconds (safe from any thread)."""
        since = now - CRASH_WINDOW
        return sum(1 for t in list(self._crashes) if t > since)

    def failing(self, now: float) -> bool:
        """Whether :data:`CRASH_BUDGET` crashes lie within the last :data:`CRASH_WINDOW` s."""
        # Asked for every heartbeat a leader sends: a loop that never crashed answers at once.
        return len(self._crashes) >= CRASH_BUDGET and self.recent_crashes(now) >= CRASH_BUDGET

    def _crash(self, now: float, crash: str) -> tuple[bool, float]:
        """Record a crash; whether the loop is failing now, and the jittered restart delay."""
        crashes = self._crashes
        crashes.append(now)
        while crashes[0] <= now - CRASH_WINDOW:
            crashes.popleft()
        self._degraded = crash
        failing = len(crashes) >= CRASH_BUDGET
        if failing:
            ceiling = RESTART_MAX
        else:
            ceiling = min(RESTART_MAX, RESTART_INITIAL * 2 ** min(self._backoff_failures, 32))
        self._backoff_failures += 1
        self._episode = self._episode + 1 if failing else 0
        return failing, random.uniform(ceiling / 2, ceiling)  # "equal jitter": [d/2, d]


#: A supervised loop: runs until cancelled (or returns when its work is over for good).
Loop = Callable[[Progress], Awaitable[None]]


class Supervisor:
    """Runs a client's loops (see the module docstring) and knows which are degraded.

    Args:
        app_id: The client's appId, for logs and hook events.
        hooks: Where crashes are reported (``ErrorEvent`` with operation ``"loop:<name>"``).

    The health queries (:attr:`degraded`, :meth:`failing`, :meth:`reasons`) may be called from
    any thread (``SyncApolloClient.stats()``).
    """

    def __init__(self, app_id: str, hooks: HookSet | None = None) -> None:
        self._app_id = app_id
        self._hooks = hooks if hooks is not None else HookSet(None)
        #: Every loop whose task runs now, in the order they were spawned.
        self._loops: dict[Progress, None] = {}
        #: Crashes seen since this supervisor was made (all loops).
        self.crashes = 0

    def spawn(self, name: str, loop: Loop, *, task_name: str | None = None) -> asyncio.Task[None]:
        """Run ``loop`` in a new task, restarting it after each crash until it is cancelled
        or returns; ``name`` is how logs, hooks and ``stats()`` call it."""
        progress = Progress(name, self._app_id)
        self._loops[progress] = None
        return asyncio.create_task(
            self._supervise(progress, loop), name=task_name or f"aioapollo-{name}-{self._app_id}"
        )

    # ------------------------------------------------------------------ health

    @property
    def degraded(self) -> tuple[str, ...]:
        """Names of the loops that crashed and have not completed an iteration since."""
        return tuple(dict.fromkeys(p.name for p in list(self._loops) if p.degraded))

    def failing(self) -> tuple[str, ...]:
        """Names of the loops over their crash budget."""
        now = time.monotonic()
        return tuple(dict.fromkeys(p.name for p in list(self._loops) if p.failing(now)))

    def reasons(self) -> list[str]:
        """Why each degraded or failing loop is, in words (no values, no messages)."""
        now = time.monotonic()
        reasons: dict[str, None] = {}
        for progress in list(self._loops):
            crashes = progress.recent_crashes(now)
            if crashes >= CRASH_BUDGET:
                reasons[
                    f"the {progress.name} loop crashed {crashes} times in {CRASH_WINDOW:g} s; "
                    f"retrying it every {RESTART_MAX:g} s"
                ] = None
            elif (crash := progress._degraded) is not None:
                reasons[
                    f"the {progress.name} loop was restarted after a crash ({crash}) and has "
                    "not completed an iteration since"
                ] = None
        return list(reasons)

    # ------------------------------------------------------------------ the task

    async def _supervise(self, progress: Progress, loop: Loop) -> None:
        try:
            while True:
                progress._runs += 1
                try:
                    await loop(progress)
                    return  # its work is over (a cache writer that was closed)
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is None or task.cancelling():
                        raise  # this task is being cancelled: never a crash
                    delay = self._crashed(progress, exc)  # raised inside, not a cancellation
                except Exception as exc:
                    delay = self._crashed(progress, exc)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # It crashed on its way out of a cancellation: end as asked, no restart.
                    raise asyncio.CancelledError
                await asyncio.sleep(delay)
        finally:
            self._loops.pop(progress, None)

    def _crashed(self, progress: Progress, exc: BaseException) -> float:
        """Log and report a crash; the delay before the loop runs again."""
        self.crashes += 1
        crash = type(exc).__name__
        failing, delay = progress._crash(time.monotonic(), crash)
        name, episode = progress.name, progress._episode
        if episode == 1:
            logger.error(
                "the %s loop of ApolloClient(%r) crashed %d times in %g s (%s); it is retried "
                "every %g s, and stats().healthy is false until it crashes less often",
                name,
                self._app_id,
                len(progress._crashes),
                CRASH_WINDOW,
                crash,
                RESTART_MAX,
                exc_info=exc,
            )
        else:
            # While failing, a warning on crashes 2, 4, 8, ... of the episode: never a flood.
            level = logging.DEBUG if failing and episode & (episode - 1) else logging.WARNING
            logger.log(
                level,
                "the %s loop of ApolloClient(%r) crashed (%s); restarting it in %.1f s",
                name,
                self._app_id,
                crash,
                delay,
                exc_info=exc,
            )
        if self._hooks:
            error = LoopCrashedError(name, crash)
            error.__cause__ = exc
            self._hooks.error(ErrorEvent(self._app_id, f"loop:{name}", error))
        return delay
