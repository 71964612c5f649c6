"""What the users send when: the stage plan and the trace rows, loaded once per process and dealt out."""

from __future__ import annotations

from harness.loadgen.state import STATE
from harness.scenario import Scenario
from harness.workload.prompts import warm_up
from harness.workload.shape import StagePlan
from harness.workload.trace import TraceRow, load_trace, trace_path


def load_arrivals(scenario: Scenario) -> None:
    """The scenario's stage plan and trace rows into STATE; a trace path is also tried next to the scenario."""
    workload = scenario.workload
    STATE.plan = StagePlan(workload.stages, workload.repeat_stages) if workload.stages else None
    trace = scenario.workload.trace
    STATE.trace_rows = []
    if trace is not None:
        file = trace_path(STATE.scenario_path, trace.file)
        STATE.trace_rows = load_trace(file, [app.id for app in scenario.workload.apps], scenario.deployment_names())
    # the first requests of the run would otherwise start late by the time it takes to load a tokenizer
    deployments = [mix.deployment for mix in scenario.workload.mixes]
    if trace is not None:
        deployments += [trace.deployment, *(row.deployment for row in STATE.trace_rows if row.deployment)]
    warm_up(deployments)


def next_trace_row() -> TraceRow | None:
    """The next row this process sends: rows are dealt to workers round-robin by index."""
    rows = STATE.trace_rows
    while STATE.trace_next < len(rows):
        index = STATE.trace_next
        STATE.trace_next += 1
        if index % STATE.worker_count == STATE.worker_index:
            return rows[index]
    return None
