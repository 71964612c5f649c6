"""Users start on the scenario's spawn schedule, not Locust's: the same `spawn_offsets` the simulator uses.

Locust starts users in batches of floor(rate) per wall second, so at time scale k a scenario's rate r would
become batches of floor(r * k): the arrival process would change with the compression. Instead the shape
asks Locust for every new user at once, and each user, as it starts, takes the next place in the ramp and
waits for its scenario time (`spawn_offsets` after the stage's edge). A user whose place has passed (the
shape noticed the stage late: Locust asks it once a wall second) starts at once.

    >>> ramp = Ramp()
    >>> ramp.begin(start=100.0, count=3, rate=2.0)
    >>> [ramp.claim() for _ in range(4)]
    [100.0, 100.0, 101.0, None]
"""

from __future__ import annotations

from harness.workload.shape import spawn_offsets


class Ramp:
    """The scenario times at which the users of the current ramp start, handed out in start order."""

    def __init__(self) -> None:
        self._starts: list[float] = []
        self._next = 0

    def begin(self, start: float, count: int, rate: float) -> None:
        """A new ramp of `count` users from scenario time `start` at `rate` users per scenario second."""
        self._starts = [start + offset for offset in spawn_offsets(count, rate)]
        self._next = 0

    def claim(self) -> float | None:
        """The scenario time the next user starts at (None: no ramp place left: start now)."""
        if self._next >= len(self._starts):
            return None
        self._next += 1
        return self._starts[self._next - 1]
