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
from harness.loadgen.live import BreakerLog, LiveThrottling
from harness.loadgen.preflight import check_ports, check_target
from harness.loadgen.recorder import WriterSink
from harness.loadgen.run_time import stretch_to_run_time
from harness.loadgen.stack import EmbeddedStack, StackError
from harness.loadgen.state import LoadProcess, LoadRun, Recording, RunSetup, process_of
from harness.loadgen.tags import select_mixes
from harness.records import ENDED, GATEWAY_LOG, RECORDS_FILE, RecordWriter
from harness.scenario import Scenario, load_scenario
from harness.workload.requests import token_signer
from harness.workload.rundir import DEFAULT_RUNS_DIR, iso, new_run_id, versions, write_run_json, write_scenario_copy
from harness.workload.session import RunSettings, header_names_for

log = logging.getLogger("harness")

# said at the start of every run whose time is compressed: Locust's response times are scenario time
SCENARIO_CLOCK_NOTE = (
    "time scale %g: response times (Locust's and the report's) are in scenario milliseconds; "
    "requests per second in wall time (one wall second is %g scenario seconds)"
)
DEFAULT_SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml")


def prepare_run(environment: Any, options: Any) -> None:
    """At start-up: the pre-flight checks of this process's ports, then the first run (ready to Start)."""
    check_ports(options)
    open_run(environment, options)


def scenario_file(name: str) -> str:
    """The scenario path as given, else the shipped scenario of that name (`ptu-spillover.yaml` will do)."""
    if Path(name).exists() or Path(name).is_absolute():
        return name
    shipped = Path(DEFAULT_SCENARIO).parent
    for candidate in (shipped.parent / name, shipped / name):
        if candidate.exists():
            return str(candidate)
    return name


def run_key(environment: Any, options: Any) -> tuple[Any, ...]:
    """What makes two runs the same run: a prepared run is reused by Start only when none of it changed."""
    process = process_of(environment)
    return (
        scenario_file(options.scenario),
        tuple(harness_options.overrides_of(options)),
        process.users_option,
        process.spawn_rate_option,
        options.client_profile,
        options.run_dir,
        "" if environment.host in process.embedded_urls else environment.host,
    )


def open_run(environment: Any, options: Any) -> LoadRun:
    """Load the scenario, check the target, open the run directory, start the embedded stack (unless --host):
    a new run, the process's current one from now on."""
    process = process_of(environment)
    path = scenario_file(options.scenario)
    overrides = harness_options.overrides_of(options)
    scenario = load_scenario(path, overrides)
    stretch, said = stretch_to_run_time(scenario, float(getattr(options, "run_time", None) or 0))
    if stretch:  # -t longer than the scenario: the run's scenario (and its copy) say how it goes on
        overrides = overrides + stretch
        scenario = load_scenario(path, overrides)
    if said:
        log.info(said)
    load_settings = changed_load_settings(scenario, process)
    if load_settings:  # -u/-r or the web form's users and ramp: overrides like any other, so the report lists them
        overrides = [*overrides, *load_settings]
        scenario = load_scenario(path, overrides)
    mixes = select_mixes(scenario, options)
    arrivals = load_arrivals(scenario, path)  # a bad trace stops the run before anything starts
    clock = ScaledClock(scenario.run.time_scale)
    embedded = not environment.host or environment.host in process.embedded_urls
    run_dir = _run_dir(options.run_dir, new_run_id(clock.wall()), set(process.runs.values()))
    run_id = run_dir.name
    settings = run_settings(scenario, run_id, clock, options)
    if not embedded:
        check_target(environment.host, scenario, settings)
    key = run_key(environment, options)
    created_run_dir = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_scenario_copy(run_dir, path, overrides)
    process.runs[run_id] = run_dir
    stack = None
    if embedded:
        stack = _start_stack(process, path, overrides, run_dir, clock, scenario)
        environment.host = stack.target_url
        process.embedded_urls.add(environment.host)
        log.info("embedded stack ready: users target %s", environment.host)
    if clock.scale != 1:
        log.info(SCENARIO_CLOCK_NOTE, clock.scale, clock.scale)
    live = live_view(scenario, clock, run_dir if stack and stack.gateway_url else None)
    writer = RecordWriter(run_dir / RECORDS_FILE, clock)
    profiles = sorted({settings.profile_name(app) for app in scenario.workload.apps})
    run_info = {
        "run_id": run_id,
        "scenario": path,
        "overrides": overrides,
        "client_profiles": profiles,
        "client_profile_override": options.client_profile or None,
        "request_mixes": mixes,  # what --tags/--exclude-tags left (None: every mix)
        "time_scale": scenario.run.time_scale,
        "origin": clock.origin,
        "host": environment.host,
        "embedded": embedded,
        "stack": "gateway" if stack and stack.gateway_url else ("mock" if stack else None),
        "ready": stack.ready if stack else [],
        "stack_pid": stack.process.pid if stack else None,
        "versions": {**versions(), "openai_profile": ", ".join(profiles)},
        "started": iso(clock.wall()),
        ENDED: None,  # written at the end: a run.json without it is a run that never got there
        "distributed": isinstance(environment.runner, MasterRunner),
    }
    write_run_json(run_dir, run_info)
    recording = Recording(WriterSink(writer, live), run_dir, created_run_dir, writer, run_info)
    run = LoadRun(RunSetup(scenario, path, overrides, settings, clock, mixes), arrivals, recording, stack, live, key)
    process.run = run
    keep_flushing(process)
    process.ready.set()
    return run


def changed_load_settings(scenario: Scenario, process: LoadProcess) -> list[str]:
    """The users and ramp given with -u/-r (or the web form) where they differ from the scenario's own, as
    overrides; stages set their own users and ramps, so there they do not apply.

    In users per scenario second, the ramp keeps its meaning at every time scale.
    """
    workload = scenario.workload
    if workload.stages:
        return []
    changed = []
    users_path, users = (
        ("workload.trace.users", workload.trace.users) if workload.trace else ("workload.users", workload.users)
    )
    if process.users_option and process.users_option != users:
        changed.append(f"{users_path}={process.users_option}")
    if process.spawn_rate_option and process.spawn_rate_option != workload.spawn_rate:
        changed.append(f"workload.spawn_rate={process.spawn_rate_option:g}")
    return changed


def _start_stack(
    process: LoadProcess, path: str, overrides: list[str], run_dir: Path, clock: ScaledClock, scenario: Scenario
) -> EmbeddedStack:
    """The run's embedded stack; its gateway on the port of this process's previous one when it can, so the
    URL the web UI shows for the target stays the URL of the stack that runs."""
    port = process.embedded_gateway_port
    if port and not scenario.gateway.port:
        try:
            return EmbeddedStack.start(path, [*overrides, f"gateway.port={port}"], run_dir, clock.origin, clock)
        except StackError as exc:
            log.info("the embedded gateway's earlier port %d is taken (%s): a new one", port, exc)
    stack = EmbeddedStack.start(path, overrides, run_dir, origin=clock.origin, clock=clock)
    gateway = stack.gateway_url
    if gateway:
        process.embedded_gateway_port = int(gateway.rsplit(":", 1)[1].split("/")[0])
    return stack


def _run_dir(given: str, run_id: str, used: set[Path]) -> Path:
    """--run-dir for the first run; later runs of the same process get `<dir>-2`, `<dir>-3`, ..."""
    if not given:
        return DEFAULT_RUNS_DIR / run_id
    base = Path(given)
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def live_view(scenario: Scenario, clock: ScaledClock, gateway_log_dir: Path | None) -> LiveThrottling:
    """The run's live throttling figures; breaker states only where this run's gateway logs them."""
    members = scenario.gateway.pool.members
    names = [m.backend for m in members] or [b.name for b in scenario.backends]
    primary = min(members, key=lambda m: m.priority).backend if members else None
    breakers = BreakerLog(gateway_log_dir / GATEWAY_LOG, names) if gateway_log_dir is not None else None
    return LiveThrottling(clock, breakers, primary)


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


def keep_flushing(process: LoadProcess) -> None:
    """Flush the current run's record sink every second, from one greenlet for the process's life."""
    if process.flusher is None:
        process.flusher = gevent.spawn(_tick_forever, process)


def _tick_forever(process: LoadProcess) -> None:
    # records reach the disk (or the master) at least once a second, even when no request ends
    while True:
        gevent.sleep(1.0)
        run = process.run
        if run is not None and run.recording.sink is not None:
            run.recording.sink.tick()
