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
from dataclasses import dataclass

from harness.scenario.workload import Stage


@dataclass(frozen=True, slots=True)
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
