"""Rate-limit state machines: pure, synchronous, reading time only from an injected `Clock`.

Each returns a `Decision` with the numbers a server needs for its headers (remaining, retry_after,
reset_after); asyncio stays in the callers.

    >>> from harness.clock import VirtualClock
    >>> clock = VirtualClock()
    >>> window = SlidingWindow(limit=2, seconds=10, clock=clock)
    >>> [window.acquire(1).allowed for _ in range(3)]
    [True, True, False]
    >>> clock.advance(10); window.acquire(1).allowed
    True
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from harness.clock import Clock

_COMPACT_AFTER = 64  # expired buckets dropped from the front at once, not one by one


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Decision:
    """The outcome of asking a limiter for `amount` units."""

    allowed: bool
    limit: int
    remaining: int  # units left after this decision
    retry_after: float  # seconds until the request would fit (0 when allowed; inf when it never can)
    reset_after: float  # seconds until the window is entirely free again


class SlidingWindow:
    """Units spent within the last `seconds` may not exceed `limit`; they come back as they age out.

    Spending is kept in time buckets of `seconds / resolution` so that memory and the Retry-After
    computation stay bounded at any request rate. A bucket expires with its latest entry, so the
    window never frees units early. A gateway keeps one window per caller, so the state is compact: slots
    and one flat array of (start, latest, amount) triples, which the garbage collector never walks.
    """

    __slots__ = ("_buckets", "_granularity", "_head", "_used", "clock", "limit", "seconds")

    def __init__(self, limit: int, seconds: float, clock: Clock, resolution: int = 600) -> None:
        if limit <= 0 or seconds <= 0:
            raise ValueError("a window needs a positive limit and length")
        self.limit = int(limit)
        self.seconds = float(seconds)
        self.clock = clock
        self._granularity = self.seconds / resolution
        self._buckets = array("d")  # start, latest, amount of each bucket, oldest first from _head
        self._head = 0  # index of the oldest live bucket's start; expired ones before it are dropped in batches
        self._used = 0.0

    def _expire(self, now: float) -> None:
        buckets, head, end = self._buckets, self._head, len(self._buckets)
        while head < end and buckets[head + 1] + self.seconds <= now:
            self._used -= buckets[head + 2]
            head += 3
        if head == end:
            if end:
                del buckets[:]
            head = 0
            self._used = 0.0  # drop floating-point residue
        elif head > 3 * _COMPACT_AFTER and 2 * head > end:
            del buckets[:head]
            head = 0
        self._head = head

    @property
    def used(self) -> int:
        self._expire(self.clock.now())
        return round(self._used)

    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def peek(self, amount: float) -> Decision:
        """What `acquire(amount)` would decide, without spending anything."""
        now = self.clock.now()
        self._expire(now)
        if self._used + amount <= self.limit:
            return Decision(True, self.limit, self._remaining_after(amount), 0.0, self._reset_after(now))
        return Decision(
            False,
            self.limit,
            self._remaining_after(0),
            self._retry_after(now, amount),
            self._reset_after(now),
        )

    def acquire(self, amount: float) -> Decision:
        """Spend `amount` if it fits; otherwise spend nothing and say when it would fit."""
        decision = self.peek(amount)
        if decision.allowed:
            self._add(self.clock.now(), amount)
        return decision

    def charge(self, amount: float) -> None:
        """Spend `amount` whether or not it fits (a rejected request still uses the request window)."""
        now = self.clock.now()
        self._expire(now)
        self._add(now, amount)

    def refund(self, amount: float) -> None:
        """Give back up to `amount` from the newest spending (a charge later corrected downwards)."""
        buckets = self._buckets
        at = len(buckets) - 1  # the newest bucket's amount
        while amount > 0 and at > self._head:
            taken = min(buckets[at], amount)
            buckets[at] -= taken
            self._used -= taken
            amount -= taken
            at -= 3

    def _add(self, now: float, amount: float) -> None:
        buckets = self._buckets
        if len(buckets) > self._head and now - buckets[-3] < self._granularity:
            buckets[-2] = now
            buckets[-1] += amount
        else:
            buckets.extend((now, now, amount))
        self._used += amount

    def _remaining_after(self, amount: float) -> int:
        return max(0, math.floor(self.limit - self._used - amount))

    def _reset_after(self, now: float) -> float:
        return max(0.0, self._buckets[-2] + self.seconds - now) if len(self._buckets) > self._head else 0.0

    def _retry_after(self, now: float, amount: float) -> float:
        if amount > self.limit:
            return math.inf
        excess = self._used + amount - self.limit
        buckets = self._buckets
        for at in range(self._head, len(buckets), 3):
            excess -= buckets[at + 2]
            if excess <= 1e-9:
                return max(0.0, buckets[at + 1] + self.seconds - now)
        return self.seconds  # unreachable while _used is consistent; a safe upper bound


class LeakyBucket:
    """A level that drains continuously at `rate` units per second; full at `capacity` (100 %).

    Admission is allowed while the level is at or below capacity, and the cost is then added even if
    it takes the level past 100 % (short bursts over capacity are tolerated, as on PTU deployments).
    The bucket starts at `initial_level` (empty by default, so a cold bucket first admits a whole
    capacity before its drain rate starts to bind).
    """

    __slots__ = ("_at", "_level", "capacity", "clock", "rate")

    def __init__(self, capacity: float, rate: float, clock: Clock, initial_level: float = 0.0) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a leaky bucket needs a positive capacity and drain rate")
        if not 0 <= initial_level < math.inf:
            raise ValueError("a leaky bucket's initial level must be finite and >= 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.clock = clock
        self._level = float(initial_level)
        self._at = clock.now()

    def _drain(self) -> None:
        now = self.clock.now()
        self._level = max(0.0, self._level - (now - self._at) * self.rate)
        self._at = now

    @property
    def level(self) -> float:
        self._drain()
        return self._level

    def utilization(self) -> float:
        """Level as a percentage of capacity (may exceed 100)."""
        return 100.0 * self.level / self.capacity

    def acquire(self, amount: float) -> Decision:
        self._drain()
        if self._level > self.capacity:
            wait = (self._level - self.capacity) / self.rate
            return Decision(False, round(self.capacity), 0, wait, self._level / self.rate)
        self._level += amount
        remaining = max(0, math.floor(self.capacity - self._level))
        return Decision(True, round(self.capacity), remaining, 0.0, self._level / self.rate)

    def adjust(self, delta: float) -> None:
        """Correct the level by `delta` (the actual cost minus the estimate charged at admission)."""
        self._drain()
        self._level = max(0.0, self._level + delta)


CALENDAR_PERIODS = ("Hourly", "Daily", "Weekly", "Monthly", "Yearly")


def calendar_window(period: str, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the UTC calendar `period` containing `now`; weeks start on Monday.

    >>> calendar_window("Daily", 86_400 * 3 + 5)
    (259200.0, 345600.0)
    """
    at = datetime.fromtimestamp(now, tz=UTC)
    if period == "Hourly":
        start = at.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif period == "Daily":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif period == "Weekly":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=at.weekday())
        end = start + timedelta(days=7)
    elif period == "Monthly":
        start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    elif period == "Yearly":
        start = at.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1)
    else:
        raise ValueError(f"unknown calendar period {period!r} (one of {', '.join(CALENDAR_PERIODS)})")
    return start.timestamp(), end.timestamp()


class CalendarWindow:
    """Units spent within the current UTC calendar period (an APIM token quota) may not exceed `limit`.

    The count starts from zero at each period boundary, whatever was spent before.

    >>> from harness.clock import VirtualClock
    >>> clock = VirtualClock(start=3_600 * 5 + 10)
    >>> quota = CalendarWindow(limit=100, period="Hourly", clock=clock)
    >>> quota.acquire(80).allowed, quota.acquire(30).allowed, quota.acquire(30).retry_after
    (True, False, 3590.0)
    """

    __slots__ = ("_end", "_used", "clock", "limit", "period")

    def __init__(self, limit: int, period: str, clock: Clock) -> None:
        if limit <= 0:
            raise ValueError("a calendar window needs a positive limit")
        calendar_window(period, 0.0)  # reject an unknown period now rather than on first use
        self.limit = int(limit)
        self.period = period
        self.clock = clock
        self._end = -math.inf
        self._used = 0.0

    def _roll(self, now: float) -> None:
        if now >= self._end:
            _, self._end = calendar_window(self.period, now)
            self._used = 0.0

    @property
    def used(self) -> int:
        self._roll(self.clock.now())
        return round(self._used)

    def remaining(self) -> int:
        return max(0, math.floor(self.limit - self.used))

    def peek(self, amount: float) -> Decision:
        now = self.clock.now()
        self._roll(now)
        reset_after = self._end - now
        if self._used + amount <= self.limit:
            return Decision(True, self.limit, max(0, math.floor(self.limit - self._used - amount)), 0.0, reset_after)
        retry_after = math.inf if amount > self.limit else reset_after
        return Decision(False, self.limit, max(0, math.floor(self.limit - self._used)), retry_after, reset_after)

    def acquire(self, amount: float) -> Decision:
        decision = self.peek(amount)
        if decision.allowed:
            self._used += amount
        return decision

    def charge(self, amount: float) -> None:
        """Spend `amount` whether or not it fits (usage known only after the response)."""
        self._roll(self.clock.now())
        self._used += amount

    def refund(self, amount: float) -> None:
        self._roll(self.clock.now())
        self._used = max(0.0, self._used - amount)
