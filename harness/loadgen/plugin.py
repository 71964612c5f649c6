"""Locust integration: options, the embedded stack's life cycle, the user, the shape, records, summary.

The locustfile only imports `GatewayUser` and `ScenarioShape` and calls `install()`. Process roles:
- local (one process) and master: load the scenario, start the embedded stack (unless --host), own the
  run directory and the single records.csv, stop the stack, then summarize the run with the report package
  (the numbers of summary.json), print that summary, apply `checks:` to it and write the report;
- worker: gets the run's identity (run id, scenario time origin, settings) from the master in a message,
  and ships its records to the master every second.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from locust import LoadTestShape, User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from harness.client import GatewayHeaderNames
from harness.clock import ScaledClock
from harness.errors import HarnessError
from harness.loadgen import options as harness_options
from harness.loadgen.prompts import warm_up
from harness.loadgen.recorder import RECORDS_DONE_MESSAGE, RECORDS_MESSAGE, ShippingSink, WriterSink
from harness.loadgen.requests import RequestPlan, draw_request, pick_mix, replay_request
from harness.loadgen.rundir import DEFAULT_RUNS_DIR, iso, new_run_id, versions, write_run_json, write_scenario_copy
from harness.loadgen.session import RunSettings, execute
from harness.loadgen.shape import StagePlan, pacing_wait
from harness.loadgen.stack import EmbeddedStack
from harness.loadgen.trace import TraceRow, load_trace
from harness.loadgen.transport import Transport
from harness.records import RecordWriter
from harness.report.checks import evaluate_checks
from harness.report.console import format_console_summary
from harness.scenario import Scenario, load_scenario
from harness.scenario.workload import App

if TYPE_CHECKING:
    from harness.report.load import RunData

log = logging.getLogger("harness")

RUN_MESSAGE = "harness_run"
WORKER_DONE_WAIT_S = 15.0


class RequestFailed(Exception):
    """A logical request the caller saw fail; its text is the cause, which Locust groups failures by."""


class Interrupted(Exception):
    """The run stopped while this logical request was still retrying."""


@dataclass
class HarnessState:
    """Everything one process knows about the current run."""

    scenario: Scenario | None = None
    scenario_path: str = ""
    overrides: list[str] = field(default_factory=list)
    settings: RunSettings | None = None
    clock: ScaledClock | None = None
    run_dir: Path | None = None
    stack: EmbeddedStack | None = None
    writer: RecordWriter | None = None
    sink: Any = None
    flusher: Any = None
    run_info: dict[str, Any] = field(default_factory=dict)
    test_started_at: float | None = None
    test_stopped_at: float | None = None
    plan: StagePlan | None = None
    trace_rows: list[TraceRow] = field(default_factory=list)
    trace_next: int = 0
    app_counts: dict[str, int] = field(default_factory=dict)
    workers_done: set[str] = field(default_factory=set)
    ready: Event = field(default_factory=Event)
    worker_index: int = 0
    worker_count: int = 1
    # -u / -r as the user gave them; read at init, before headless mode fills in its defaults of 1
    users_option: int | None = None
    spawn_rate_option: float | None = None

    def elapsed(self) -> float:
        assert self.clock is not None
        if self.test_started_at is None:
            return 0.0
        return self.clock.now() - self.test_started_at


STATE = HarnessState()
DEFAULT_SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml")


def install(default_scenario: str | None = None) -> None:
    """Register the harness's event listeners (call once from the locustfile)."""
    scenario = default_scenario or DEFAULT_SCENARIO

    @events.init_command_line_parser.add_listener
    def _(parser: Any) -> None:
        harness_options.add_arguments(parser, scenario)

    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)


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
        runner.register_message(RUN_MESSAGE, _on_run_message)
        return
    try:
        _prepare_run(environment, options)
    except HarnessError as exc:
        _fail(str(exc))
    if isinstance(runner, MasterRunner):
        runner.register_message(RECORDS_MESSAGE, _on_worker_records)
        runner.register_message(RECORDS_DONE_MESSAGE, _on_worker_done)


def _prepare_run(environment: Any, options: Any) -> None:
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
    _load_arrivals(scenario)  # a bad trace stops the run before anything starts
    embedded = not environment.host
    if embedded:
        STATE.stack = EmbeddedStack.start(path, overrides, run_dir, origin=clock.origin, clock=clock)
        environment.host = STATE.stack.target_url
        log.info("embedded stack ready: users target %s", environment.host)
    STATE.settings = _settings(scenario, run_id, clock, options)
    STATE.writer = RecordWriter(run_dir / "records.csv", clock)
    STATE.sink = WriterSink(STATE.writer)
    STATE.flusher = gevent.spawn(_tick_forever)
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


def _settings(scenario: Scenario, run_id: str, clock: ScaledClock, options: Any) -> RunSettings:
    names = GatewayHeaderNames()
    token_limit = getattr(scenario.gateway, "token_limit", None)
    if token_limit is not None:
        # follow the gateway's configured header names when the scenario sets them
        names = GatewayHeaderNames(
            remaining_tokens=getattr(token_limit, "remaining_tokens_header_name", None) or names.remaining_tokens,
            remaining_quota=getattr(token_limit, "remaining_quota_tokens_header_name", None) or names.remaining_quota,
            tokens_consumed=getattr(token_limit, "tokens_consumed_header_name", None) or names.tokens_consumed,
            retry_after=getattr(token_limit, "retry_after_header_name", None) or names.retry_after,
        ).lowered()
    return RunSettings(
        run_id=run_id,
        clock=clock,
        api_version=scenario.workload.api_version,
        route=scenario.workload.route,
        timeout_s=scenario.workload.timeout,
        api_key=options.api_key or None,
        bearer_token=harness_options.bearer_token(options.bearer_token),
        client_profile=options.client_profile or None,
        header_names=names,
    )


def _load_arrivals(scenario: Scenario) -> None:
    STATE.plan = StagePlan(scenario.workload.stages) if scenario.workload.stages else None
    trace = scenario.workload.trace
    if trace is not None:
        file = Path(trace.file)
        if not file.is_absolute() and not file.exists():
            file = Path(STATE.scenario_path).parent / trace.file
        STATE.trace_rows = load_trace(file, [app.id for app in scenario.workload.apps])
    # the first requests of the run would otherwise start late by the time it takes to load a tokenizer
    deployments = [mix.deployment for mix in scenario.workload.mixes]
    if trace is not None:
        deployments += [trace.deployment, *(row.deployment for row in STATE.trace_rows if row.deployment)]
    warm_up(deployments)


def _tick_forever() -> None:
    # records reach the disk (or the master) at least once a second, even when no request ends
    while True:
        gevent.sleep(1.0)
        if STATE.sink is not None:
            STATE.sink.tick()


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
    if isinstance(runner, MasterRunner):
        workers = sorted(client.id for client in runner.clients.all)
        message = {
            "scenario": STATE.scenario_path,
            "overrides": STATE.overrides,
            "run_id": STATE.settings.run_id,
            "origin": STATE.clock.origin,
            "started_at": STATE.test_started_at,
            "api_key": STATE.settings.api_key,
            "bearer_token": STATE.settings.bearer_token,
            "client_profile": STATE.settings.client_profile,
            "workers": len(workers),
        }
        runner.send_message(RUN_MESSAGE, message)


def _on_run_message(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: set up this run as the master describes it, sharing its scenario clock."""
    data = msg.data
    runner = environment.runner
    try:
        scenario = load_scenario(data["scenario"], data["overrides"])
    except HarnessError as exc:
        log.error("worker cannot load the scenario: %s", exc)
        return
    clock = ScaledClock(scenario.run.time_scale, origin=data["origin"])
    STATE.scenario, STATE.scenario_path, STATE.overrides, STATE.clock = (
        scenario,
        data["scenario"],
        data["overrides"],
        clock,
    )

    class _Options:
        api_key = data.get("api_key") or ""
        bearer_token = data.get("bearer_token") or ""
        client_profile = data.get("client_profile") or ""

    STATE.settings = _settings(scenario, data["run_id"], clock, _Options)
    STATE.test_started_at = data["started_at"]
    STATE.worker_index = getattr(runner, "worker_index", 0) or 0
    STATE.worker_count = max(1, int(data.get("workers") or 1))
    STATE.trace_next = 0
    STATE.sink = ShippingSink(runner.send_message)
    if STATE.flusher is None:
        STATE.flusher = gevent.spawn(_tick_forever)
    _load_arrivals(scenario)
    STATE.ready.set()


def _on_worker_records(environment: Any, msg: Any, **_: Any) -> None:
    if isinstance(STATE.sink, WriterSink):
        STATE.sink.write_cells(msg.data)


def _on_worker_done(environment: Any, msg: Any, **_: Any) -> None:
    STATE.workers_done.add(msg.node_id)


def _on_test_stop(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        if isinstance(STATE.sink, ShippingSink):
            STATE.sink.tick()
            runner.send_message(RECORDS_DONE_MESSAGE, {"shipped": STATE.sink.shipped})
        return
    if STATE.clock is not None:
        STATE.test_stopped_at = STATE.clock.now()
    if isinstance(runner, MasterRunner):
        _collect_worker_records(runner)


def _collect_worker_records(runner: MasterRunner) -> None:
    """Make sure every worker has stopped and shipped its last records before the master quits."""
    from locust.rpc import Message

    workers = [client.id for client in runner.clients.all]
    for worker in workers:
        if worker not in STATE.workers_done:
            runner.server.send_to_client(Message("stop", None, worker))
    waited = 0.0
    while waited < WORKER_DONE_WAIT_S and not set(workers) <= STATE.workers_done:
        gevent.sleep(0.1)
        waited += 0.1
    missing = set(workers) - STATE.workers_done
    if missing:
        log.warning("records of %d worker(s) may be incomplete: no final batch from %s", len(missing), sorted(missing))


def _on_quitting(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or STATE.writer is None or STATE.run_dir is None:
        return
    assert STATE.clock is not None and STATE.scenario is not None
    runner = environment.runner
    if runner is not None and runner.state not in ("stopped", "init"):
        runner.stop()  # Ctrl-C: users stop before the records file closes
    if STATE.flusher is not None:
        STATE.flusher.kill(block=False)
    STATE.writer.close()
    if STATE.stack is not None:
        STATE.stack.stop()  # the servers flush backend.jsonl and gateway.jsonl as they stop
    STATE.run_info["ended"] = iso(STATE.clock.wall())
    duration = 0.0
    if STATE.test_started_at is not None:
        duration = (STATE.test_stopped_at or STATE.clock.now()) - STATE.test_started_at
    STATE.run_info["scenario_seconds"] = round(duration, 3)
    run, summary = _summarize(STATE.run_dir)
    if summary is not None:
        print(format_console_summary(summary))
    results = evaluate_checks(STATE.scenario.checks, summary or {})
    for result in results:
        print(result.describe())
    STATE.run_info["summary"] = summary
    STATE.run_info["checks"] = [r.describe() for r in results]
    # Throttled and failed requests are what a run measures, not an error of the run: the exit code is
    # the verdict of the scenario's checks (Locust alone would exit 1 on the first failed request).
    environment.process_exit_code = 3 if any(not r.passed for r in results) else 0
    write_run_json(STATE.run_dir, STATE.run_info)
    print(f"run directory: {STATE.run_dir}")
    if run is not None:
        _write_report(run, summary)
    sys.stdout.flush()


def _summarize(run_dir: Path) -> tuple[RunData | None, dict[str, Any] | None]:
    """The run as the report reads it, and its summary: the one source of the console, checks and report."""
    # imported here: pandas is for the end of a run, not for Locust's start-up
    from harness.report.html import json_safe
    from harness.report.load import load_run
    from harness.report.metrics import summarize

    try:
        run = load_run(run_dir)
        return run, json_safe(summarize(run))
    except HarnessError as exc:
        print(f"summary: not computed: {exc}")
        return None, None


def _write_report(run: RunData, summary: dict[str, Any] | None) -> None:
    from harness.report.html import write_report

    try:
        print(f"report: {write_report(run.run_dir, run=run, summary=summary)}")
    except HarnessError as exc:
        print(f"report: not written: {exc}")


def _next_trace_row() -> TraceRow | None:
    """The next row this process sends: rows are dealt to workers round-robin by index."""
    rows = STATE.trace_rows
    while STATE.trace_next < len(rows) or (
        STATE.scenario and STATE.scenario.workload.trace and STATE.scenario.workload.trace.loop and rows
    ):
        index = STATE.trace_next
        STATE.trace_next += 1
        if index >= len(rows):
            return None
        if index % STATE.worker_count == STATE.worker_index:
            return rows[index]
    return None


def _assign_app(apps: list[App]) -> App:
    """Apps get users in proportion to their weights (largest deficit first), not by chance."""
    total = sum(STATE.app_counts.get(a.id, 0) for a in apps) + 1
    weight_sum = sum(a.weight for a in apps)
    app = max(apps, key=lambda a: a.weight / weight_sum * total - STATE.app_counts.get(a.id, 0))
    STATE.app_counts[app.id] = STATE.app_counts.get(app.id, 0) + 1
    return app


class GatewayUser(User):
    """A caller of the scenario's workload: one app, its client profile, requests drawn from its mixes."""

    abstract = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.transport: Transport | None = None
        self.sequence = 0
        self.last_start: float | None = None

    def on_start(self) -> None:
        if not STATE.ready.wait(timeout=30):
            raise StopUser()
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        workload = STATE.scenario.workload
        self.app = _assign_app(workload.apps)
        self.name = f"{STATE.worker_index}-{id(self) % 1_000_000}"
        self.rng = random.Random(f"{STATE.scenario.run.seed}:{self.name}")
        self.transport = Transport(self.host or self.environment.host, STATE.clock, STATE.settings.timeout_s)

    def on_stop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def wait_time(self) -> float:
        assert STATE.scenario is not None and STATE.clock is not None
        scale = STATE.clock.scale
        if STATE.trace_rows:
            return 0.0
        stage = STATE.plan.at(STATE.elapsed()) if STATE.plan else None
        if stage is not None and stage.rate:
            since = STATE.clock.now() - (self.last_start or STATE.clock.now())
            return pacing_wait(stage.rate, max(1, stage.users), since) / scale
        return STATE.scenario.workload.think_time.sample(self.rng) / scale

    @task
    def request(self) -> None:
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        plan = self._next_plan()
        if plan is None:
            gevent.sleep(0.2)  # the trace is used up: idle until the run ends
            return
        self.last_start = STATE.clock.now()
        self.sequence += 1
        self._send(plan)

    def _next_plan(self) -> RequestPlan | None:
        assert STATE.scenario is not None and STATE.clock is not None
        workload = STATE.scenario.workload
        if not STATE.trace_rows:
            return draw_request(self.app, pick_mix(workload, self.app, self.rng), self.rng)
        row = _next_trace_row()
        if row is None:
            return None
        wait = STATE.test_started_at + row.offset_s - STATE.clock.now() if STATE.test_started_at else 0.0
        if wait > 0:
            STATE.clock.sleep(wait)
        return replay_request(row, workload)

    def _send(self, plan: RequestPlan) -> None:
        assert STATE.settings is not None and self.transport is not None and STATE.clock is not None
        attempts = [0]
        started = STATE.clock.now()

        def sink(record: dict[str, Any]) -> None:
            attempts[0] += 1
            STATE.sink(record)

        try:
            outcome = execute(plan, self.name, self.sequence, self.transport, STATE.settings, self.rng, sink)
        except gevent.GreenletExit:
            if attempts[0]:
                # stopped while retrying: still one logical request, so records = requests + retries holds
                self._fire(plan.request_type, STATE.clock.now() - started, 0, Interrupted("run stopped while retrying"))
            raise
        failure = outcome.failure
        self._fire(
            outcome.request_type, outcome.latency_s, outcome.response_bytes, RequestFailed(failure) if failure else None
        )

    def _fire(self, name: str, latency_s: float, length: int, exception: Exception | None) -> None:
        # Locust shows scenario milliseconds, the same unit as the records and the report
        self.environment.events.request.fire(
            request_type="POST",
            name=name,
            response_time=latency_s * 1000.0,
            response_length=length,
            exception=exception,
            context={"app": self.app.id},
        )


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
            run_time = _run_time_given(self.runner)
            if stage is None or (run_time and elapsed >= run_time * scale):
                return None
            return stage.users, stage.spawn_rate * scale
        # With a shape Locust only starts its --run-time clock after the shape ends, so the shape obeys it.
        run_time = _run_time_given(self.runner)
        limit = run_time * scale if run_time else STATE.scenario.run.duration
        if elapsed >= limit:
            return None
        users = STATE.users_option or (workload.trace.users if workload.trace else workload.users)
        spawn_rate = STATE.spawn_rate_option or workload.spawn_rate * scale
        return int(users), float(spawn_rate)


def _run_time_given(runner: Any) -> float:
    """Locust's --run-time in wall seconds (0 when not given)."""
    options = getattr(getattr(runner, "environment", None), "parsed_options", None)
    return float(getattr(options, "run_time", None) or 0)
