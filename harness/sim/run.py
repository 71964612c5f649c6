"""`harness simulate`: a whole scenario as a discrete-event simulation, written as a run directory.

No sockets and no sleeps: users, gateway and resources are the live components' rules driven by events on
a virtual clock, so a run of an hour of scenario time takes seconds, and the same scenario and seed give
the same records.csv (apart from the run id and the wall-clock column). The run directory has the same
files as a live run (records.csv, gateway.jsonl, backend.jsonl, scenario.yaml, run.json with
`"engine": "sim"`), so `harness report` and `harness compare` read it unchanged.

    >>> run_dir = simulate("scenarios/quickstart.yaml", ["run.duration=5"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.clock import RealClock
from harness.errors import CHECKS_FAILED_EXIT_CODE, ScenarioError, UsageError
from harness.gateway.log import GatewayLog
from harness.mock.log import JsonlLog
from harness.records import BACKEND_LOG, ENDED, GATEWAY_LOG, RECORDS_FILE, RUN_INFO_FILE, RUN_SUMMARY, RecordWriter
from harness.scenario import Scenario, load_scenario
from harness.sim.backend import SimBackend
from harness.sim.client import Callers, start_users
from harness.sim.engine import Scheduler
from harness.sim.gateway import SimReplicas
from harness.workload.requests import token_signer
from harness.workload.rundir import DEFAULT_RUNS_DIR, iso, new_run_id, versions, write_run_json, write_scenario_copy
from harness.workload.session import RunSettings, header_names_for
from harness.workload.trace import load_trace, trace_path

ENGINE = "sim"
# Simulated runs start at 2026-01-01T00:00:00Z: the same scenario time in every run, so calendar quotas
# (an APIM hourly or daily token quota) line up the same way each time.
SIM_EPOCH = 1_767_225_600.0


def simulate(
    scenario_file: str, overrides: list[str], run_dir: str | Path | None = None, *, report: bool = False
) -> Path:
    """Simulate `scenario_file` with `overrides` into `run_dir` (a new directory under reports/runs when None).

    `report` also writes report.html and its figures. Returns the run directory.
    """
    scenario = load_scenario(scenario_file, overrides)
    _check_simulable(scenario)
    wall = RealClock()
    target = Path(run_dir) if run_dir is not None else DEFAULT_RUNS_DIR / new_run_id(wall.wall())
    if (target / RECORDS_FILE).exists():
        raise UsageError(f"{target} already holds a run (records.csv); choose another --run-dir")
    target.mkdir(parents=True, exist_ok=True)
    write_scenario_copy(target, scenario_file, overrides)
    info: dict[str, Any] = {
        "run_id": target.name,
        "scenario": scenario_file,
        "overrides": overrides,
        "engine": ENGINE,
        "seed": scenario.run.seed,
        "client_profiles": sorted({app.client_profile for app in scenario.workload.apps}),
        "time_scale": None,  # scenario time only: nothing runs on the wall clock
        "origin": SIM_EPOCH,
        "embedded": True,
        "stack": "gateway",
        "versions": versions(),
        "started": iso(wall.wall()),
        ENDED: None,
    }
    write_run_json(target, info)
    started_wall = wall.wall()
    callers = _run(scenario, scenario_file, target, wall)
    info.update(
        {ENDED: iso(wall.wall())},
        scenario_seconds=round(callers.ends - callers.started, 3),
        load_started_at=callers.started,
        wall_seconds=round(wall.wall() - started_wall, 3),
        events=callers.scheduler.events,
        logical_requests=callers.requests,
        attempts=callers.attempts,
    )
    write_run_json(target, info)
    _summarize(target, info, scenario, report)
    return target


def _check_simulable(scenario: Scenario) -> None:
    for i, backend in enumerate(scenario.backends):
        if backend.url:
            raise ScenarioError(f"backends[{i}].url", "a real endpoint cannot be simulated (drop url, or run live)")


# Cyclic garbage collected once per this many new objects (Python's default: 700), while a run goes.
SIM_COLLECT_EVERY = 50_000


@contextmanager
def _rare_collections() -> Iterator[None]:
    """The event loop makes millions of short-lived objects, nearly all freed by reference counting; the
    cyclic collector's passes over them, and over everything loaded before the run (the scenario, the
    tokenizer's tables: frozen out of its sight), cost about a tenth of a run's time. The cycles a run does
    make (a request and its callbacks) are still collected, every `SIM_COLLECT_EVERY` objects."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(SIM_COLLECT_EVERY, threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _run(scenario: Scenario, scenario_file: str, run_dir: Path, wall: RealClock) -> Callers:
    scheduler = Scheduler(SIM_EPOCH)
    seed = scenario.run.seed
    backend_log = JsonlLog(run_dir / BACKEND_LOG, wall)
    gateway_log = GatewayLog(run_dir / GATEWAY_LOG)
    writer = RecordWriter(run_dir / RECORDS_FILE, wall)
    try:
        backends = {b.name: SimBackend(b, scheduler, backend_log, wall, seed) for b in scenario.backends}
        gateway = SimReplicas(scenario, scheduler, backends, gateway_log, wall)
        settings = RunSettings(
            run_id=run_dir.name,
            clock=scheduler.clock,
            api_version=scenario.workload.api_version,
            route=scenario.workload.route,
            timeout_s=scenario.workload.timeout,
            header_names=header_names_for(scenario),
            signer=token_signer(scenario, scheduler.clock),
        )
        workload = scenario.workload
        trace = None
        if workload.trace is not None:
            rows = load_trace(
                trace_path(scenario_file, workload.trace.file),
                [app.id for app in workload.apps],
                scenario.deployment_names(),
            )
            trace = iter(rows)
        ends = SIM_EPOCH + scenario.load_duration()
        callers = Callers(scenario, scheduler, gateway, settings, writer.write, wall, SIM_EPOCH, ends, trace)
        start_users(callers)
        # Run in slices so the logs reach the disk as the simulation goes, not all at the end.
        edge = SIM_EPOCH
        with _rare_collections():
            while edge < callers.ends:
                edge = min(callers.ends, edge + 60.0)
                scheduler.run(until=edge)
                gateway_log.flush()
        return callers
    finally:
        writer.close()
        gateway_log.close()
        backend_log.close()


def _summarize(run_dir: Path, info: dict[str, Any], scenario: Scenario, report: bool) -> None:
    """The summary and the checks' verdict into run.json (and the report when asked), as a live run ends."""
    from harness.report.checks import evaluate_checks
    from harness.report.html import write_report
    from harness.report.load import load_run
    from harness.report.summary.build import summarize
    from harness.report.summary.schema import safe_summary

    run = load_run(run_dir)
    summary = safe_summary(summarize(run))
    results = evaluate_checks(scenario.checks, summary)
    info[RUN_SUMMARY] = summary
    info["checks"] = [r.describe() for r in results]
    info["checks_passed"] = all(r.passed for r in results)
    write_run_json(run_dir, info)
    if report:
        write_report(run_dir, run=run, summary=summary)


def run(args: argparse.Namespace) -> int:
    """`harness simulate --scenario FILE [--set PATH=VALUE ...] [--run-dir DIR] [--no-report]`."""
    from harness.report.console import format_console_summary
    from harness.report.summary.load import summary_from

    run_dir = simulate(args.scenario, list(args.overrides), args.run_dir, report=not args.no_report)
    path = run_dir / RUN_INFO_FILE
    info = json.loads(path.read_text(encoding="utf-8"))
    summary = summary_from(info[RUN_SUMMARY], path, RUN_SUMMARY)  # simulate stores the summary it computed
    print(format_console_summary(summary))
    for line in info["checks"]:
        print(line)
    print(
        f"simulated {info['scenario_seconds']:g} scenario s, {info['attempts']} attempts in "
        f"{info['wall_seconds']:.2f} wall s",
        file=sys.stderr,
    )
    print(f"run directory: {run_dir}")
    return 0 if info["checks_passed"] else CHECKS_FAILED_EXIT_CODE
