"""Locust integration: the event listeners that run the harness, and the user and shape for the locustfile.

The locustfile only imports `GatewayUser` and `ScenarioShape` and calls `install()`. Process roles:
- local (one process) and master: load the scenario, start the embedded stack (unless --host), own the
  run directory and the single records.csv, stop the stack, then summarize the run with the report package
  (the numbers of summary.json), print that summary, apply `checks:` to it and write the report;
- worker: gets the run's identity (run id, scenario time origin, settings) from the master in a message,
  and ships its records to the master every second.

In the web UI every Start is a run of its own (a new run directory and embedded stack, the options of the
form applied) and every Stop ends it (records, summary and report.html written at once).

The parts: `startup` (start of a run, with `preflight` checks), `user`, `scenario_shape`, `distributed`
(master and workers), `end_of_run` and `run_end` (how it ended), `webui` and `live` (the Throttling tab);
`state` is what they share in one process.
"""

from __future__ import annotations

import sys
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from harness.errors import HarnessError
from harness.loadgen import options as harness_options
from harness.loadgen import planned_end
from harness.loadgen.distributed import (
    START_LEAD_WALL_S,
    announce_run,
    collect_worker_records,
    deliver_seats,
    listen_as_master,
    listen_as_worker,
    ship_last_records,
    start_load_when_seated,
)
from harness.loadgen.end_of_run import close_run, finish_run
from harness.loadgen.run_end import install_signal_handlers, note_cause, watch_stack
from harness.loadgen.scenario_shape import ScenarioShape, seat_dispatcher
from harness.loadgen.startup import DEFAULT_SCENARIO, open_run, prepare_run
from harness.loadgen.state import STATE
from harness.loadgen.user import GatewayUser
from harness.loadgen.webui import install_web_ui
from harness.records import EndedBy
from harness.workload.shape import Seat

__all__ = ["GatewayUser", "ScenarioShape", "install"]

DEFAULT_WEB_HOST = "127.0.0.1"


def install(default_scenario: str | None = None) -> None:
    """Register the harness's event listeners (call once from the locustfile)."""
    scenario = default_scenario or DEFAULT_SCENARIO

    @events.init_command_line_parser.add_listener
    def _(parser: Any) -> None:
        harness_options.add_arguments(parser, scenario)
        # the web UI starts and stops load against this machine: local only unless --web-host says otherwise
        parser.set_defaults(web_host=DEFAULT_WEB_HOST)

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
    STATE.cli_options = (STATE.users_option, STATE.spawn_rate_option, float(getattr(options, "time_scale", 0) or 0))
    STATE.cli_overrides = list(getattr(options, "overrides", None) or [])
    if isinstance(runner, WorkerRunner):
        listen_as_worker(runner)
        return
    if isinstance(runner, MasterRunner):
        environment.dispatcher_class = seat_dispatcher(lambda dealt: deliver_seats(runner, dealt))
    else:
        environment.dispatcher_class = seat_dispatcher(_seat_here)
    try:
        prepare_run(environment, options)
    except HarnessError as exc:
        _fail(str(exc))
    install_signal_handlers(environment)
    if environment.web_ui is not None:
        install_web_ui(environment)
    if isinstance(runner, MasterRunner):
        listen_as_master(runner)


def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    if not STATE.run_open:  # started without the web UI's Start (Locust's keyboard controls): a new run too
        try:
            open_run(environment, environment.parsed_options)
        except HarnessError as exc:
            _fail(str(exc))
    if STATE.stack is not None:  # whatever the web UI's host field said: users load this run's own stack
        environment.host = STATE.stack.target_url
    assert STATE.clock is not None and STATE.settings is not None
    STATE.workers_done.clear()
    STATE.test_stopped_at = None
    STATE.trace_next = 0
    if isinstance(runner, MasterRunner):
        # the workers set the run up, get their seats and start their users; the load's start is fixed once
        # all of them hold their seats, so none starts late (`distributed.start_load_when_seated`)
        announce_run(runner)
        gevent.spawn(start_load_when_seated, runner, _load_starts)
    else:
        # users take their seats a moment before the load's start: at the start only their requests are left
        _load_starts(runner, STATE.clock.now() + START_LEAD_WALL_S * STATE.clock.scale)
    if STATE.stack is not None and STATE.watchdog is None:
        STATE.watchdog = gevent.spawn(watch_stack, environment)


def _load_starts(runner: Any, at: float) -> None:
    """The load's start on the scenario clock: stages, seats, trace offsets and the planned end count from it."""
    STATE.test_started_at = at
    STATE.run_info["load_started_at"] = at
    planned_end.arm(runner)
    STATE.load_start.set()


def _seat_here(dealt: dict[str, list[Seat]]) -> None:
    """One process: every seat is this process's."""
    for seats in dealt.values():
        STATE.tally.plan(seats)
        STATE.ramp.load(seats)


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
    options = environment.parsed_options
    if not getattr(options, "headless", False) and STATE.test_started_at is not None:
        note_cause(EndedBy.STOPPED)  # unless the planned end or a signal said otherwise first
        close_run()  # each Start of the web UI is a run: its records, summary and report are written now
