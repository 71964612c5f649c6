"""The Locust shape: users over time from the scenario's stages (or its constant count), in scenario time."""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape

from harness.loadgen.state import STATE


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
            return stage.users, stage.spawn_rate * scale
        # With a shape Locust only starts its --run-time clock after the shape ends, so the shape obeys it.
        run_time = run_time_given(self.runner)
        limit = run_time * scale if run_time else STATE.scenario.run.duration
        if elapsed >= limit:
            return None
        users = STATE.users_option or (workload.trace.users if workload.trace else workload.users)
        spawn_rate = STATE.spawn_rate_option or workload.spawn_rate * scale
        return int(users), float(spawn_rate)


def run_time_given(runner: Any) -> float:
    """Locust's --run-time in wall seconds (0 when not given)."""
    options = getattr(getattr(runner, "environment", None), "parsed_options", None)
    return float(getattr(options, "run_time", None) or 0)
