"""Locust integration: the event listeners that run the harness, and the user and shape for the locustfile.

The locustfile only imports `GatewayUser` and `ScenarioShape` and calls `install()`. Process roles:
- local (one process) and master: load the scenario, start the embedded stack (unless --host), own the
  run directory and the single records.csv, stop the stack, then summarize the run with the report package
  (the numbers of summary.json), print that summary, apply `checks:` to it and write the report;
- worker: gets the run's identity (run id, scenario time origin, settings) from the master in a message,
  and ships its records to the master every second.

The parts: `startup` (start of a run), `user`, `scenario_shape`, `distributed` (master and workers),
`end_of_run`; `state` is what they share in one process.
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from harness.errors import HarnessError
from harness.loadgen import options as harness_options
from harness.loadgen import planned_end
from harness.loadgen.distributed import (
    announce_run,
    collect_worker_records,
    listen_as_master,
    listen_as_worker,
    ship_last_records,
)
from harness.loadgen.end_of_run import finish_run
from harness.loadgen.scenario_shape import ScenarioShape
from harness.loadgen.startup import DEFAULT_SCENARIO, prepare_run
from harness.loadgen.state import STATE
from harness.loadgen.user import GatewayUser

__all__ = ["GatewayUser", "ScenarioShape", "install"]


def install(default_scenario: str | None = None) -> None:
    """Register the harness's event listeners (call once from the locustfile)."""
    scenario = default_scenario or DEFAULT_SCENARIO

    @events.init_command_line_parser.add_listener
    def _(parser: Any) -> None:
        harness_options.add_arguments(parser, scenario)

    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(finish_run)


def _fail(message: str) -> None:
    sys.stderr.write(f"locust: error: {message}\n")
    sys.stderr.flush()
    if STATE.stack is not None:
        STATE.stack.stop()
    sys.exit(2)


def _on_init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    STATE.users_option = getattr(options, "num_users", None)
    STATE.spawn_rate_option = getattr(options, "spawn_rate", None)
    if isinstance(runner, WorkerRunner):
        listen_as_worker(runner)
        return
    try:
        prepare_run(environment, options)
    except HarnessError as exc:
        _fail(str(exc))
    if isinstance(runner, MasterRunner):
        listen_as_master(runner)


def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    assert STATE.clock is not None and STATE.settings is not None
    STATE.test_started_at = STATE.clock.now()
    STATE.test_stopped_at = None
    # scenario time the users start: stages and trace offsets count from here
    STATE.run_info["load_started_at"] = STATE.test_started_at
    STATE.trace_next = 0
    STATE.workers_done.clear()
    planned_end.arm(runner)
    if isinstance(runner, MasterRunner):
        announce_run(runner)


def _on_test_stop(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        ship_last_records(runner)
        return
    planned_end.disarm()
    if STATE.clock is not None and STATE.test_stopped_at is None:  # else the planned end stopped it
        STATE.test_stopped_at = STATE.clock.now()
    if isinstance(runner, MasterRunner):
        collect_worker_records(runner)
