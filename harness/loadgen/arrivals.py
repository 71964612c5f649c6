"""What the users send when: the stage plan and the trace rows, loaded once per run and dealt out."""

from __future__ import annotations

from harness.loadgen.state import Arrivals
from harness.scenario import Scenario
from harness.workload.prompts import warm_up
from harness.workload.shape import StagePlan
from harness.workload.trace import load_trace, trace_path


def load_arrivals(scenario: Scenario, scenario_path: str, worker_index: int = 0, worker_count: int = 1) -> Arrivals:
    """The scenario's stage plan and trace rows; a trace path is also tried next to the scenario."""
    workload = scenario.workload
    plan = StagePlan(workload.stages, workload.repeat_stages) if workload.stages else None
    trace = scenario.workload.trace
    rows = []
    if trace is not None:
        file = trace_path(scenario_path, trace.file)
        rows = load_trace(file, [app.id for app in scenario.workload.apps], scenario.deployment_names())
    # the first requests of the run would otherwise start late by the time it takes to load a tokenizer
    deployments = [mix.deployment for mix in scenario.workload.mixes]
    if trace is not None:
        deployments += [trace.deployment, *(row.deployment for row in rows if row.deployment)]
    warm_up(deployments)
    return Arrivals(plan, rows, worker_index=worker_index, worker_count=worker_count)
