"""Scenario time: the only module that reads the system clock.

Every quota window, trip duration and latency in the harness is expressed in *scenario seconds*.
`now()` returns scenario seconds on the Unix epoch scale, so calendar windows (an APIM hourly or daily
quota) truncate the same way under every clock. With a time scale k, one wall second is k scenario
seconds; processes that share an `origin` agree on scenario time, which keeps their logs comparable.

    >>> clock = VirtualClock(start=1_000.0)
    >>> clock.sleep(2.5)
    >>> clock.now()
    1002.5
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the state machines and servers read time from."""

    scale: float

    def now(self) -> float:
        """Scenario seconds since the Unix epoch."""
        ...

    def wall(self) -> float:
        """Wall-clock seconds since the Unix epoch (for records that keep both times)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for `seconds` of scenario time (gevent-friendly once monkey-patched)."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Await `seconds` of scenario time."""
        ...


class ScaledClock:
    """Scenario time runs `scale` times faster than the wall clock, anchored at `origin`.

    >>> ScaledClock(10.0, origin=time.time()).scale
    10.0
    """

    def __init__(self, scale: float = 1.0, origin: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self.scale = float(scale)
        self.origin = time.time() if origin is None else float(origin)
        # Anchor once, then advance on the monotonic clock so NTP steps cannot move scenario time backwards.
        self._wall_at_start = time.time()
        self._mono_at_start = time.monotonic()

    def wall(self) -> float:
        return self._wall_at_start + (time.monotonic() - self._mono_at_start)

    def now(self) -> float:
        return self.origin + (self.wall() - self.origin) * self.scale

    def to_wall_seconds(self, scenario_seconds: float) -> float:
        return max(0.0, scenario_seconds) / self.scale

    def sleep(self, seconds: float) -> None:
        time.sleep(self.to_wall_seconds(seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(self.to_wall_seconds(seconds))


class RealClock(ScaledClock):
    """The wall clock: scenario time is real time."""

    def __init__(self) -> None:
        super().__init__(1.0)


class VirtualClock:
    """A clock that only moves when told to: `sleep`/`asleep` and `advance` jump it forward at once.

    >>> c = VirtualClock(); c.advance(60); c.now()
    60.0
    """

    scale = 1.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a virtual clock cannot go backwards")
        self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)  # still yield, so concurrent tasks interleave as they would for real


def clock_for_scale(scale: float, origin: float | None = None) -> ScaledClock:
    """The clock a process uses for a run at `scale` (1.0 is the real clock)."""
    return ScaledClock(scale, origin)
