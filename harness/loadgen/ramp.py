"""Users start and stop on the scenario's schedule, not Locust's: the same seats in one process or many.

Locust starts users in batches of floor(rate) per wall second and learns of a new stage only at its next
shape tick (once a wall second, ten scenario seconds at time scale 10), and a distributed run adds the
time its messages take. So the run's schedule is worked out once, as seats (`harness.workload.shape.
schedule`: which user starts and stops when, in scenario seconds after the run's start), and Locust is only
asked for enough users to hold them. Each process gets its seats in a message (`harness.loadgen.seats.
deal` splits them among workers); each of its users takes the next seat, waits for the seat's start, sends
until its end and takes the next. A seat whose start has passed (a late message) starts at once: catch-up, never a skipped user.
"""

from __future__ import annotations

from gevent.queue import Empty, Queue

from harness.workload.shape import Seat


class Ramp:
    """The seats this process still has to start, in start order; users take them one at a time."""

    def __init__(self) -> None:
        self._seats: Queue[Seat] = Queue()
        self.count = 0

    def load(self, seats: list[Seat]) -> None:
        for seat in sorted(seats, key=lambda s: (s.start_s, s.number)):
            self._seats.put(seat)
        self.count += len(seats)

    def claim(self, timeout_s: float) -> Seat | None:
        """The next seat (None when none came within `timeout_s` wall seconds)."""
        try:
            return self._seats.get(timeout=timeout_s)
        except Empty:
            return None
