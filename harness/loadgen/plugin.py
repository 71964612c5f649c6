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
`state` is what they share: the process's `LoadProcess` on `environment.harness`, its current `LoadRun`.

The only module-level state is the listeners registered on Locust's global `events` hook: Locust imports the
locustfile (and so calls `install()`) before any Environment exists, and fires `init` with it once it does;
that listener creates the process's harness and hangs it on the Environment.
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
from harness.loadgen.run_end import install_signal_handlers, watch_stack
from harness.loadgen.scenario_shape import ScenarioShape, seat_dispatcher
from harness.loadgen.startup import DEFAULT_SCENARIO, open_run, prepare_run
from harness.loadgen.state import CommandLine, LoadProcess, LoadRun, attach, process_of
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


def _fail(environment: Any, message: str) -> None:
    sys.stderr.write(f"locust: error: {message}\n")
    sys.stderr.flush()
    run = process_of(environment).run
    if run is not None and run.stack is not None:
        run.stack.stop()
    sys.exit(2)


def _on_init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    # -u / -r as the user gave them: read here, before headless mode fills in its defaults of 1
    users, rate = getattr(options, "num_users", None), getattr(options, "spawn_rate", None)
    command_line = CommandLine(
        users, rate, float(getattr(options, "time_scale", 0) or 0), tuple(getattr(options, "overrides", None) or [])
    )
    process = attach(environment, LoadProcess(command_line, users_option=users, spawn_rate_option=rate))
    if isinstance(runner, WorkerRunner):
        listen_as_worker(runner)
        return
    if isinstance(runner, MasterRunner):
        environment.dispatcher_class = seat_dispatcher(process, lambda dealt: deliver_seats(runner, dealt))
    else:
        environment.dispatcher_class = seat_dispatcher(process, lambda dealt: _seat_here(process, dealt))
    try:
        prepare_run(environment, options)
    except HarnessError as exc:
        _fail(environment, str(exc))
    install_signal_handlers(environment)
    if environment.web_ui is not None:
        install_web_ui(environment)
    if isinstance(runner, MasterRunner):
        listen_as_master(runner)


def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    process = process_of(environment)
    run = process.active_run
    if run is None:  # started without the web UI's Start (Locust's keyboard controls): a new run too
        try:
            run = open_run(environment, environment.parsed_options)
        except HarnessError as exc:
            _fail(environment, str(exc))
            return
    if run.stack is not None:  # whatever the web UI's host field said: users load this run's own stack
        environment.host = run.stack.target_url
    # a prepared run stopped before its load started (no request sent yet) is started again as it was
    run.workers.done.clear()
    run.timeline.stopped_at = None
    if isinstance(runner, MasterRunner):
        # the workers set the run up, get their seats and start their users; the load's start is fixed once
        # all of them hold their seats, so none starts late (`distributed.start_load_when_seated`)
        announce_run(runner, run)
        gevent.spawn(start_load_when_seated, runner, run, _load_starts)
    else:
        # users take their seats a moment before the load's start: at the start only their requests are left
        _load_starts(runner, run, run.clock.now() + START_LEAD_WALL_S * run.clock.scale)
    if run.stack is not None and run.watchdog is None:
        run.watchdog = gevent.spawn(watch_stack, environment, run)


def _load_starts(runner: Any, run: LoadRun, at: float) -> None:
    """The load's start on the scenario clock: stages, seats, trace offsets and the planned end count from it."""
    run.timeline.started_at = at
    run.recording.run_info["load_started_at"] = at
    planned_end.arm(runner, run)
    run.timeline.load_start.set()


def _seat_here(process: LoadProcess, dealt: dict[str, list[Seat]]) -> None:
    """One process: every seat is this process's."""
    assert process.run is not None
    for seats in dealt.values():
        process.run.schedule.tally.plan(seats)
        process.run.schedule.ramp.load(seats)


def _on_test_stop(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        ship_last_records(runner)
        return
    process = process_of(environment)
    run = process.run
    if run is None:
        return
    planned_end.disarm(run)
    if run.timeline.stopped_at is None:  # else the planned end stopped it
        run.timeline.stopped_at = run.clock.now()
    if isinstance(runner, MasterRunner):
        collect_worker_records(runner, run)
    options = environment.parsed_options
    if not getattr(options, "headless", False) and run.timeline.started_at is not None:
        run.timeline.note_cause(EndedBy.STOPPED)  # unless the planned end or a signal said otherwise first
        close_run(process)  # each Start of the web UI is a run: its records, summary and report are written now
