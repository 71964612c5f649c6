"""The arrival shape in scenario time: stages of users (and optional target rate) mapped to wall time.

`StagePlan.at(elapsed)` answers "how many users, spawning how fast, at what request rate" for a number of
scenario seconds since the start; the Locust `LoadTestShape` asks it every tick, and users ask it for their
pacing, so both follow the same plan in every process of a distributed run.

    >>> from harness.scenario.workload import Stage
    >>> plan = StagePlan([Stage(duration=60, users=5), Stage(duration=60, users=10, rate=2)])
    >>> plan.at(30).users, plan.at(90).rate, plan.at(130)
    (5, 2.0, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from harness.scenario.workload import Stage


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class StageNow:
    users: int
    spawn_rate: float  # users per scenario second
    rate: float | None  # requests per scenario second across all users
    started_s: float = 0.0  # scenario seconds since the run's start at which this stage (this round) began


class StagePlan:
    """Stages one after another; `at` past the last stage is None (the run is over), or, with `repeat`, the
    stages start over.

        >>> StagePlan([Stage(duration=60, users=5), Stage(duration=60, users=1)], repeat=True).at(130).users
        5
    """

    def __init__(self, stages: list[Stage], repeat: bool = False) -> None:
        self.stages = stages
        self.repeat = repeat
        self.total_s = sum(s.duration for s in stages)

    def at(self, elapsed_s: float) -> StageNow | None:
        rounds = 0.0
        if self.repeat and self.total_s > 0:
            rounds = (elapsed_s // self.total_s) * self.total_s
            elapsed_s -= rounds
        edge = 0.0
        for stage in self.stages:
            if elapsed_s < edge + stage.duration:
                spawn_rate = float(stage.spawn_rate or max(1, stage.users))
                return StageNow(stage.users, spawn_rate, stage.rate, rounds + edge)
            edge += stage.duration
        return None

    def stage_starts(self, until_s: float) -> Iterator[tuple[float, int, float]]:
        """(scenario second, users, spawn rate) of every stage start before `until_s`, in order; a plan that
        does not repeat ends with a stage of 0 users.

        >>> list(StagePlan([Stage(duration=10, users=2), Stage(duration=5, users=1)], repeat=True).stage_starts(20))
        [(0.0, 2, 2.0), (10.0, 1, 1.0), (15.0, 2, 2.0)]
        """
        base = 0.0
        while True:
            edge = base
            for stage in self.stages:
                if edge >= until_s:
                    return
                yield edge, stage.users, float(stage.spawn_rate or max(1, stage.users))
                edge += stage.duration
            if not self.repeat or self.total_s <= 0:
                if edge < until_s:
                    yield edge, 0, 1.0
                return
            base += self.total_s


@dataclass(frozen=True, slots=True)
class Seat:
    """One user's place in a run's schedule, the same in one process or spread over workers.

    `number` is the seat's place in start order over the whole run (it seeds the user's draws, as the
    simulator's k-th user); `slot` its place among the users of a stage: slot k lives while the stage has
    more than k users, so a stage with fewer users retires the latest started, as Locust and the simulator
    do. Times are scenario seconds after the run's start.
    """

    number: int
    slot: int
    start_s: float
    end_s: float
    app: str = ""

    def user_seconds(self) -> float:
        return max(0.0, self.end_s - self.start_s)


def schedule(plan: StagePlan | None, users: int, rate: float, until_s: float) -> list[Seat]:
    """Every seat of a run that lasts `until_s` scenario seconds: the stages of `plan`, else `users` users
    started at `rate` users per scenario second and kept to the end.

    >>> [(s.slot, s.start_s, s.end_s) for s in schedule(None, 2, 1.0, 30.0)]
    [(0, 0.0, 30.0), (1, 1.0, 30.0)]
    >>> plan = StagePlan([Stage(duration=10, users=2), Stage(duration=10, users=1)], repeat=True)
    >>> [(s.number, s.slot, s.start_s, s.end_s) for s in schedule(plan, 0, 0, 30.0)]
    [(0, 0, 0.0, 30.0), (1, 1, 0.0, 10.0), (2, 1, 20.0, 30.0)]
    """
    starts = list(plan.stage_starts(until_s)) if plan is not None else [(0.0, users, rate)]
    seats: list[Seat] = []
    previous = 0
    for index, (edge, count, spawn_rate) in enumerate(starts):
        for k, offset in enumerate(spawn_offsets(max(0, count - previous), spawn_rate)):
            slot = previous + k
            end = next((e for e, n, _ in starts[index + 1 :] if n <= slot), until_s)
            if edge + offset < min(end, until_s):
                seats.append(Seat(len(seats), slot, edge + offset, min(end, until_s)))
        previous = count
    return seats


def peak_users(seats: list[Seat]) -> int:
    """The most seats live at the same moment: the users a process needs to hold them all.

    >>> peak_users([Seat(0, 0, 0.0, 10.0), Seat(1, 1, 0.0, 5.0), Seat(2, 1, 5.0, 10.0)])
    2
    """
    events = sorted([(s.start_s, 1) for s in seats] + [(s.end_s, -1) for s in seats])
    live = peak = 0
    for _, change in events:  # at a tie an end (-1) sorts first: a seat ending frees its user for the next
        live += change
        peak = max(peak, live)
    return peak


def spawn_offsets(count: int, rate: float) -> list[float]:
    """Scenario seconds after a ramp's start at which each of `count` new users starts, at `rate` users/s.

    Users start in whole batches, the way Locust's dispatcher starts them: max(1, floor(rate)) users at
    once, one batch every batch/rate seconds. So `spawn_rate` >= the new users starts them all together
    (a stage's default), and a rate of 2.5 starts two users every 0.8 s.

    >>> spawn_offsets(5, 2.5)
    [0.0, 0.0, 0.8, 0.8, 1.6]
    >>> spawn_offsets(3, 14.0)
    [0.0, 0.0, 0.0]
    """
    batch = max(1, math.floor(rate))
    return [(i // batch) * batch / rate for i in range(count)]


def pacing_wait(rate: float | None, users: int, since_last_start_s: float) -> float:
    """Scenario seconds a user waits before its next request so that `users` users make `rate` requests/s.

    >>> pacing_wait(2.0, 4, 0.5)
    1.5
    """
    if not rate or users <= 0:
        return 0.0
    return max(0.0, users / rate - since_last_start_s)
