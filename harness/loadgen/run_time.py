"""Locust's `-t`/`--run-time` against the scenario's own length: longer stretches the scenario, and says so.

`-t` is wall time, as everywhere in Locust; at time scale 10, `-t 60s` is 600 scenario seconds. Shorter than
the scenario, it cuts the run (the planned end and the shape stop there). Longer, the load goes on to the end
of `-t`, in one line on the console and in the run's scenario copy (as overrides):

- users (or stages that repeat): `run.duration` becomes `-t`, the users keep their count (the stages their cycle);
- stages that do not repeat: the last stage is extended, at its users and rate;
- a trace: a trace is replayed once, so the run ends with it, at `run.duration`.

    >>> from harness.scenario import load_scenario_text
    >>> scenario = load_scenario_text("run: {duration: 60, time_scale: 10}\\nbackends: [{name: east}]")
    >>> overrides, line = stretch_to_run_time(scenario, 30)
    >>> overrides
    ['run.duration=300.0']
    >>> print(line)
    -t 30s is 300 scenario s, longer than the scenario's 60 s: the users keep going to the end of -t
"""

from __future__ import annotations

from harness.scenario import Scenario

# below this many scenario seconds of difference, -t and the scenario are the same length (shape tick, rounding)
SAME_LENGTH_S = 1e-6


def stretch_to_run_time(scenario: Scenario, run_time_s: float) -> tuple[list[str], str | None]:
    """The overrides that stretch `scenario` to `run_time_s` wall seconds, and the line saying what -t does
    (none when -t is not given or not longer than the scenario)."""
    if not run_time_s or run_time_s <= 0:
        return [], None
    wanted = run_time_s * scenario.run.time_scale
    planned = scenario.load_duration()
    if wanted <= planned + SAME_LENGTH_S:
        return [], None
    head = f"-t {run_time_s:g}s is {wanted:g} scenario s, longer than the scenario's {planned:g} s"
    workload = scenario.workload
    duration = f"run.duration={round(wanted, 6)!r}"
    if workload.trace is not None:
        return [], f"{head}: a trace is replayed once, so the run ends with it at {planned:g} s"
    if workload.stages and not workload.repeat_stages:
        last = len(workload.stages) - 1
        stage = workload.stages[last]
        longer = stage.duration + (wanted - planned)
        what = f"{stage.users} users" + (f" at {stage.rate:g} requests/s" if stage.rate else "")
        overrides = [f"workload.stages[{last}].duration={round(longer, 6)!r}"]
        if scenario.run.duration < wanted:
            overrides.append(duration)
        return overrides, f"{head}: its last stage ({what}) goes on to the end of -t"
    if workload.stages:
        return [duration], f"{head}: the stages keep repeating to the end of -t"
    return [duration], f"{head}: the users keep going to the end of -t"
