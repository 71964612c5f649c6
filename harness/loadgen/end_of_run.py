"""End of a run in the local (or master) process: close the records, stop the stack, summarize and judge.

Headless, the run ends when Locust quits; in the web UI each run ends when its users stop (Stop, or the
planned end), so every Start gets its own complete run directory and report.

The report package summarizes the run directory once (the numbers of summary.json); that one summary is
printed, checked against the scenario's `checks:`, stored in run.json and drawn in the report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import WorkerRunner

from harness.errors import CHECKS_FAILED_EXIT_CODE, HarnessError
from harness.loadgen.outputs import mark_outputs
from harness.loadgen.run_end import STACK_DIED_EXIT_CODE, end_facts
from harness.loadgen.seats import load_facts
from harness.loadgen.state import LoadProcess, LoadRun, process_of
from harness.records import ENDED, ENDED_BY, OFFERED_LOAD, RUN_SUMMARY, EndedBy
from harness.report.checks import evaluate_checks
from harness.report.console import format_console_summary, offered_load_warning
from harness.workload.rundir import iso, write_run_json

if TYPE_CHECKING:
    from harness.report.load import RunData
    from harness.report.summary.schema import Summary


def finish_run(environment: Any, **_: Any) -> None:
    """Locust's `quitting` listener: end the open run; the exit code is the worst verdict of this process's runs."""
    if isinstance(environment.runner, WorkerRunner):
        return
    process = process_of(environment)
    # a SIGTERM in the web UI also reaches Locust's own handler, which may be the one that got us here:
    # let our handler, pending in the same loop iteration, note the cause first
    gevent.sleep(0)
    runner = environment.runner
    run = process.active_run
    if run is not None and runner is not None and runner.state not in ("stopped", "init"):
        run.timeline.note_cause(EndedBy.STOPPED)
        runner.stop()  # Ctrl-C: users stop before the records file closes (a UI run then closes on test_stop)
    close_run(process)
    environment.process_exit_code = process.exit_code or failed_requests_exit_code(environment)
    if process.run is not None:
        mark_outputs(environment.parsed_options, process.run.clock.scale)


def failed_requests_exit_code(environment: Any) -> int:
    """Locust's --exit-code-on-error when any request failed (0 by the harness's default: see options.py)."""
    runner = environment.runner
    failed = runner is not None and bool(len(runner.errors) or len(runner.exceptions))
    return int(getattr(environment.parsed_options, "exit_code_on_error", 0) or 0) if failed else 0


def close_run(process: LoadProcess) -> None:
    """Close the open run: records, stack and logs, run.json's end, the summary, checks and report.html."""
    run = process.active_run
    if run is None:
        return
    recording, timeline, clock = run.recording, run.timeline, run.clock
    writer, run_dir, info = recording.writer, recording.run_dir, recording.run_info
    if writer is None or run_dir is None:
        return  # a worker's run: the master writes it
    run.open = False
    process.ready.clear()
    if run.watchdog is not None:
        run.watchdog.kill(block=False)
        run.watchdog = None
    recording.sink = None
    writer.close()
    if run.stack is not None:
        run.stack.stop()  # the servers flush backend.jsonl and gateway.jsonl as they stop
    info[ENDED] = iso(clock.wall())
    duration = 0.0
    if timeline.started_at is not None:
        duration = (timeline.stopped_at or clock.now()) - timeline.started_at
    info["scenario_seconds"] = round(duration, 3)
    info.update(end_facts(ended_by(run, duration), timeline.planned_s or run.scenario.load_duration(), duration))
    offered = offered_load(run, duration)
    info[OFFERED_LOAD] = offered
    write_run_json(run_dir, info)  # the summary reads the run's start and length from it
    data, summary = _summarize(run_dir)
    if summary is not None:
        print(format_console_summary(summary))
    elif offered["short"]:  # with a summary, its answer opens with this
        print(offered_load_warning(offered))
    results = evaluate_checks(run.scenario.checks, summary or {})
    for result in results:
        print(result.describe())
    info[RUN_SUMMARY] = summary
    info["checks"] = [r.describe() for r in results]
    # Throttled and failed requests are what a run measures, not an error of the run: the exit code is
    # the verdict of the scenario's checks (Locust alone would exit 1 on the first failed request).
    verdict = CHECKS_FAILED_EXIT_CODE if any(not r.passed for r in results) else 0
    if info[ENDED_BY] == EndedBy.STACK_DIED:
        verdict = STACK_DIED_EXIT_CODE
    process.exit_code = max(process.exit_code, verdict)
    write_run_json(run_dir, info)
    print(f"run directory: {run_dir}")
    if data is not None:
        _write_report(data, summary)
    process.last_finished = run_dir.name
    sys.stdout.flush()


def offered_load(run: LoadRun, ran_s: float) -> dict[str, Any]:
    """The load this run offered against its schedule: from this process, or from each worker's tally."""
    if run.recording.run_info.get("distributed"):  # a worker that never reported offered nothing the master saw
        by_process = dict(sorted(run.workers.load.items()))
    else:
        by_process = {"local": run.schedule.tally.as_dict()}
    return load_facts(by_process, run.schedule.seats or [], ran_s)


def ended_by(run: LoadRun, ran_s: float) -> EndedBy:
    """The noted cause, else completed when the load ran its plan (to Locust's one-second shape tick)."""
    if run.timeline.end_cause is not None:
        return run.timeline.end_cause
    planned = run.timeline.planned_s or run.scenario.load_duration()
    return EndedBy.COMPLETED if ran_s >= planned - run.clock.scale else EndedBy.STOPPED


def _summarize(run_dir: Path) -> tuple[RunData | None, Summary | None]:
    """The run as the report reads it, and its summary: the one source of the console, checks and report."""
    # imported here: pandas is for the end of a run, not for Locust's start-up
    from harness.report.load import load_run
    from harness.report.summary.build import summarize
    from harness.report.summary.schema import safe_summary

    try:
        run = load_run(run_dir)
        return run, safe_summary(summarize(run))
    except HarnessError as exc:
        print(f"summary: not computed: {exc}")
        return None, None


def _write_report(run: RunData, summary: Summary | None) -> None:
    from harness.report.html import write_report

    try:
        print(f"report: {write_report(run.run_dir, run=run, summary=summary)}")
    except HarnessError as exc:
        print(f"report: not written: {exc}")
