"""Start of a run in the local (or master) process: scenario, run directory, embedded stack, records file.

Also what a worker shares with it: the run settings every user sends with, and the once-a-second flush.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner

from harness.clock import ScaledClock
from harness.loadgen import options as harness_options
from harness.loadgen.arrivals import load_arrivals
from harness.loadgen.recorder import WriterSink
from harness.loadgen.requests import token_signer
from harness.loadgen.rundir import DEFAULT_RUNS_DIR, iso, new_run_id, versions, write_run_json, write_scenario_copy
from harness.loadgen.session import RunSettings, header_names_for
from harness.loadgen.stack import EmbeddedStack
from harness.loadgen.state import STATE
from harness.records import RECORDS_FILE, RecordWriter
from harness.scenario import Scenario, load_scenario

log = logging.getLogger("harness")

DEFAULT_SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml")


def prepare_run(environment: Any, options: Any) -> None:
    """Load the scenario, open the run directory, start the embedded stack (unless --host), then mark ready."""
    path = options.scenario
    if not Path(path).exists() and not Path(path).is_absolute():
        packaged = Path(DEFAULT_SCENARIO).parents[1] / path
        path = str(packaged) if packaged.exists() else path
    overrides = harness_options.overrides_of(options)
    scenario = load_scenario(path, overrides)
    clock = ScaledClock(scenario.run.time_scale)
    run_id = new_run_id(clock.wall())
    run_dir = Path(options.run_dir) if options.run_dir else DEFAULT_RUNS_DIR / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if options.run_dir:
        run_id = run_dir.name
    write_scenario_copy(run_dir, path, overrides)
    STATE.scenario, STATE.scenario_path, STATE.overrides = scenario, path, overrides
    STATE.clock, STATE.run_dir = clock, run_dir
    load_arrivals(scenario)  # a bad trace stops the run before anything starts
    embedded = not environment.host
    if embedded:
        STATE.stack = EmbeddedStack.start(path, overrides, run_dir, origin=clock.origin, clock=clock)
        environment.host = STATE.stack.target_url
        log.info("embedded stack ready: users target %s", environment.host)
    STATE.settings = run_settings(scenario, run_id, clock, options)
    STATE.writer = RecordWriter(run_dir / RECORDS_FILE, clock)
    STATE.sink = WriterSink(STATE.writer)
    STATE.flusher = gevent.spawn(tick_forever)
    profiles = sorted({STATE.settings.profile_name(app) for app in scenario.workload.apps})
    STATE.run_info = {
        "run_id": run_id,
        "scenario": path,
        "overrides": overrides,
        "client_profiles": profiles,
        "client_profile_override": options.client_profile or None,
        "time_scale": scenario.run.time_scale,
        "origin": clock.origin,
        "host": environment.host,
        "embedded": embedded,
        "stack": "gateway" if STATE.stack and STATE.stack.gateway_url else ("mock" if STATE.stack else None),
        "ready": STATE.stack.ready if STATE.stack else [],
        "stack_pid": STATE.stack.process.pid if STATE.stack else None,
        "versions": {**versions(), "openai_profile": ", ".join(profiles)},
        "started": iso(clock.wall()),
        "ended": None,
        "distributed": isinstance(environment.runner, MasterRunner),
    }
    write_run_json(run_dir, STATE.run_info)
    STATE.ready.set()


def run_settings(scenario: Scenario, run_id: str, clock: ScaledClock, options: Any) -> RunSettings:
    """What every user of this process sends with: route, credentials, client profile, header names."""
    return RunSettings(
        run_id=run_id,
        clock=clock,
        api_version=scenario.workload.api_version,
        route=scenario.workload.route,
        timeout_s=scenario.workload.timeout,
        api_key=options.api_key or None,
        bearer_token=harness_options.bearer_token(options.bearer_token),
        client_profile=options.client_profile or None,
        header_names=header_names_for(scenario),
        signer=token_signer(scenario, clock),
    )


def tick_forever() -> None:
    """Flush the record sink every second (run as a greenlet)."""
    # records reach the disk (or the master) at least once a second, even when no request ends
    while True:
        gevent.sleep(1.0)
        if STATE.sink is not None:
            STATE.sink.tick()
