"""The Locust shape: enough users to hold the run's schedule, whose seats say who sends when.

The schedule (`harness.workload.shape.schedule`: the scenario's stages, or its constant count, or -u/-r)
is worked out once, at the first tick, as seats in scenario time; Locust is asked for the most seats ever
live at once, in one dispatch, and `SeatDispatcher` hands each process its seats with that dispatch. Users
then start and stop on the scenario clock (`harness.loadgen.ramp`), in one process or on many workers,
rather than at Locust's once-a-wall-second ticks. `-u`/`-r` (or the web form's users and ramp) override
the scenario's `users` and `spawn_rate` (users per scenario second).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from locust import LoadTestShape
from locust.dispatch import UsersDispatcher

from harness.loadgen.seats import deal
from harness.loadgen.state import LoadProcess, LoadRun, process_of
from harness.workload.requests import assign_app
from harness.workload.shape import Seat, peak_users, schedule


class ScenarioShape(LoadTestShape):
    """Users to hold every seat of the run's schedule, until its planned end."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        run = process_of(self.runner.environment).run if self.runner is not None else None
        if run is None:
            return None
        limit = planned_limit(self.runner, run)
        schedule = run.schedule
        if schedule.seats is None:
            schedule.seats = run_schedule(run, limit)
            schedule.dealt = False
        if run.timeline.started_at is not None and run.elapsed() >= limit:
            return None
        users = max(1, peak_users(schedule.seats))
        return users, float(users)  # Locust's spawn rate: every user in one dispatch (they wait for their seats)


def run_schedule(run: LoadRun, limit_s: float) -> list[Seat]:
    """Every seat of the run, each with its app (apps get users in proportion to their weights, in start
    order, as in the simulator)."""
    workload = run.scenario.workload
    # -u/-r and the web form's users and ramp are in the scenario as overrides (`startup.changed_load_settings`)
    users = workload.trace.users if workload.trace else workload.users
    seats = schedule(run.arrivals.plan, users, workload.spawn_rate, limit_s)
    counts: dict[str, int] = {}
    return [Seat(s.number, s.slot, s.start_s, s.end_s, assign_app(workload.apps, counts).id) for s in seats]


def planned_limit(runner: Any, run: LoadRun) -> float:
    """Scenario seconds the load runs: the scenario's (run.duration, or the stages' end), or -t if shorter."""
    planned = run.scenario.load_duration()
    run_time = run_time_given(runner)
    return min(planned, run_time * run.clock.scale) if run_time else planned


def run_time_given(runner: Any) -> float:
    """Locust's --run-time in wall seconds (0 when not given)."""
    options = getattr(getattr(runner, "environment", None), "parsed_options", None)
    return float(getattr(options, "run_time", None) or 0)


def seat_dispatcher(process: LoadProcess, deliver: Callable[[dict[str, list[Seat]]], None]) -> type[UsersDispatcher]:
    """Locust's dispatcher, which also hands the current run's seats to the processes it puts users on
    (`deliver` gets {process id: its seats}), before Locust tells them to start their users."""

    class SeatDispatcher(UsersDispatcher):
        def __next__(self) -> dict[str, dict[str, int]]:
            dispatched = super().__next__()
            schedule = process.run.schedule if process.run is not None else None
            if schedule is not None and schedule.seats is not None and not schedule.dealt:
                schedule.dealt = True
                users = {node: sum(counts.values()) for node, counts in dispatched.items()}
                deliver(deal(schedule.seats, users))
            return dispatched

    return SeatDispatcher
