"""The event loop of the simulator: a heap of timed callbacks on a virtual clock; nothing sleeps.

Events at the same scenario time run in the order they were scheduled, so a run is a pure function of
the scenario and its seed. A core step that takes time (a generator yielding the seconds it waits, see
`harness.mock.core`) is carried out by `drive`, one event per wait.

    >>> events = Scheduler()
    >>> seen = []
    >>> events.after(2.0, seen.append, "late"); events.after(1.0, seen.append, "early")
    >>> events.run(until=10.0); seen, events.clock.now()
    (['early', 'late'], 10.0)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from harness.clock import VirtualClock

T = TypeVar("T")


class Scheduler:
    """Timed callbacks on a virtual clock (`clock.now()` is the time of the event being run)."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = VirtualClock(start)
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = 0
        self.events = 0  # events run so far

    # The three methods below run once or twice per event: they read the clock's time directly and inline
    # one another, as the simulator's speed is mostly the cost of its events.

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` at scenario time `when` (now, if `when` has passed)."""
        self._sequence += 1
        now = self.clock._now
        heapq.heappush(self._queue, (when if when > now else now, self._sequence, callback, args))

    def after(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self._sequence += 1
        when = self.clock._now + delay if delay > 0.0 else self.clock._now
        heapq.heappush(self._queue, (when, self._sequence, callback, args))

    def run(self, until: float) -> None:
        """Run every event due up to `until`, then leave the clock at `until` (later events stay queued)."""
        queue, clock, pop = self._queue, self.clock, heapq.heappop
        events = self.events
        try:
            while queue and queue[0][0] <= until:
                when, _, callback, args = pop(queue)
                if when > clock._now:
                    clock._now += when - clock._now  # as `advance` adds, so times repeat to the last bit
                events += 1
                callback(*args)
        finally:
            self.events = events
        if until > clock.now():
            clock.advance(until - clock.now())

    def drive(self, steps: Generator[float, None, T], done: Callable[[T], None]) -> None:
        """Carry out a core step: each yielded wait becomes an event; `done` gets its result."""
        try:
            wait = next(steps)
        except StopIteration as finished:
            done(finished.value)
            return
        self.after(wait, self.drive, steps, done)
