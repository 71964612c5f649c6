"""The Locust shape: users over time from the scenario's stages (or its constant count), in scenario time.

New users are asked of Locust all at once; each then waits for its place in the scenario's spawn schedule
(`harness.loadgen.ramp`), so users start as the scenario's `spawn_rate` says at any time scale, exactly as the
simulator starts them. `-r` (or the web form's rate) is Locust's own ramp, in users per wall second.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape

from harness.loadgen.state import STATE

# Locust's spawn rate when the ramp is ours: every new user in one dispatch (users then wait for their place)
AT_ONCE = 100_000.0


class ScenarioShape(LoadTestShape):
    """Users over time from the scenario, in scenario time: stages, else a constant count (-u/-r win)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        if STATE.scenario is None or STATE.clock is None:
            return None
        scale = STATE.clock.scale
        elapsed = STATE.elapsed()
        workload = STATE.scenario.workload
        if STATE.plan is not None:
            stage = STATE.plan.at(elapsed)
            run_time = run_time_given(self.runner)
            if stage is None or (run_time and elapsed >= run_time * scale):
                return None
            if STATE.plan.repeat and elapsed >= STATE.scenario.run.duration:
                return None  # repeated stages never run out: run.duration ends the run
            return self._ramp(stage.users, stage.spawn_rate, stage.started_s)
        # With a shape Locust only starts its --run-time clock after the shape ends, so the shape obeys it.
        run_time = run_time_given(self.runner)
        limit = run_time * scale if run_time else STATE.scenario.run.duration
        if elapsed >= limit:
            return None
        users = int(STATE.users_option or (workload.trace.users if workload.trace else workload.users))
        if STATE.spawn_rate_option:
            return users, float(STATE.spawn_rate_option)
        return self._ramp(users, workload.spawn_rate, 0.0)

    def _ramp(self, users: int, rate: float, edge_s: float) -> tuple[int, float]:
        """Start a ramp when the user count goes up (from the stage's edge, not from this late tick)."""
        if users != STATE.ramp_target:
            assert STATE.clock is not None
            alive = int(getattr(self.runner, "user_count", 0) or 0)
            # Locust asks the shape before it starts the test: the first ramp starts now
            started = STATE.test_started_at if STATE.test_started_at is not None else STATE.clock.now()
            if users > alive:
                STATE.ramp.begin(started + edge_s, users - alive, rate)
            STATE.ramp_target = users
        return users, AT_ONCE


def run_time_given(runner: Any) -> float:
    """Locust's --run-time in wall seconds (0 when not given)."""
    options = getattr(getattr(runner, "environment", None), "parsed_options", None)
    return float(getattr(options, "run_time", None) or 0)
