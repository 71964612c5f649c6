"""The run's seats between processes: dealt among the workers that hold the users, carried in messages, and
the load each process was asked for against the load it offered.

    >>> from harness.workload.shape import Seat
    >>> seats = [Seat(0, 0, 0.0, 10.0), Seat(1, 1, 0.0, 5.0), Seat(2, 1, 5.0, 10.0), Seat(3, 2, 1.0, 10.0)]
    >>> {w: [s.number for s in mine] for w, mine in deal(seats, {"a": 1, "b": 2}).items()}
    {'a': [1, 2], 'b': [0, 3]}
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from harness.records import OFFERED_SHARE_MIN
from harness.workload.shape import Seat


def deal(seats: list[Seat], users: dict[str, int]) -> dict[str, list[Seat]]:
    """Seats split among processes that hold `users` users each: each seat, in start order, to the process
    with the most free users at its start (ties: the one with fewer seats), so no process ever needs more
    users than it has and the load spreads evenly."""
    order = sorted(users)
    dealt: dict[str, list[Seat]] = {name: [] for name in order}
    ends: dict[str, list[float]] = {name: [] for name in order}  # a heap per process: its live seats' ends
    for seat in sorted(seats, key=lambda s: (s.start_s, s.number)):
        for heap in ends.values():
            while heap and heap[0] <= seat.start_s:
                heapq.heappop(heap)
        name = max(order, key=lambda n: (users[n] - len(ends[n]), -len(dealt[n])))
        dealt[name].append(seat)
        heapq.heappush(ends[name], seat.end_s)
    return dealt


def seats_to_message(seats: list[Seat]) -> list[list[Any]]:
    return [[s.number, s.slot, s.start_s, s.end_s, s.app] for s in seats]


def seats_from_message(rows: list[list[Any]]) -> list[Seat]:
    return [Seat(int(n), int(slot), float(start), float(end), str(app)) for n, slot, start, end, app in rows]


@dataclass
class LoadTally:
    """The load one process was asked for and the load it offered, in user-seconds of scenario time: a user
    offers load from the moment it can send (its seat's start, or later when it started late) to its end."""

    planned_user_s: float = 0.0
    offered_user_s: float = 0.0
    seats: int = 0
    started: int = 0
    late_max_s: float = 0.0  # the latest a seat started after its scheduled time (scenario s)
    first_start_s: float | None = None  # scenario s after the run's start at which the first seat started

    def plan(self, seats: list[Seat]) -> None:
        self.planned_user_s += sum(s.user_seconds() for s in seats)
        self.seats += len(seats)

    def started_seat(self, at_s: float, late_s: float) -> None:
        self.started += 1
        self.late_max_s = max(self.late_max_s, late_s)
        self.first_start_s = at_s if self.first_start_s is None else min(self.first_start_s, at_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned_user_s": round(self.planned_user_s, 3),
            "offered_user_s": round(self.offered_user_s, 3),
            "seats": self.seats,
            "started": self.started,
            "late_max_s": round(self.late_max_s, 3),
            "first_start_s": None if self.first_start_s is None else round(self.first_start_s, 3),
        }


def load_facts(by_process: dict[str, dict[str, Any]], seats: list[Seat], ran_s: float) -> dict[str, Any]:
    """run.json's `offered_load`: offered against planned user-seconds over the `ran_s` scenario seconds the
    load ran, in total and per process (worker).

    >>> seats = [Seat(0, 0, 0.0, 60.0), Seat(1, 1, 0.0, 60.0)]
    >>> facts = load_facts({"w0": {"offered_user_s": 40.0}, "w1": {"offered_user_s": 50.0}}, seats, 50.0)
    >>> facts["offered_share"], facts["short"]
    (0.9, True)
    """
    planned_user_s = sum(max(0.0, min(s.end_s, ran_s) - s.start_s) for s in seats)
    offered = sum(float(p.get("offered_user_s") or 0.0) for p in by_process.values())
    share = offered / planned_user_s if planned_user_s > 0 else None
    return {
        "planned_user_s": round(planned_user_s, 3),
        "offered_user_s": round(offered, 3),
        "offered_share": None if share is None else round(share, 4),
        "short": share is not None and share < OFFERED_SHARE_MIN,
        "by_process": by_process,
    }
