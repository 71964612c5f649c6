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
from harness.loadgen.run_end import STACK_DIED_EXIT_CODE, end_facts, note_cause
from harness.loadgen.seats import load_facts
from harness.loadgen.state import STATE
from harness.records import ENDED, ENDED_BY, OFFERED_LOAD, EndedBy
from harness.report.checks import evaluate_checks
from harness.report.console import format_console_summary, offered_load_warning
from harness.workload.rundir import iso, write_run_json

if TYPE_CHECKING:
    from harness.report.load import RunData


def finish_run(environment: Any, **_: Any) -> None:
    """Locust's `quitting` listener: end the open run; the exit code is the worst verdict of this process's runs."""
    if isinstance(environment.runner, WorkerRunner):
        return
    # a SIGTERM in the web UI also reaches Locust's own handler, which may be the one that got us here:
    # let our handler, pending in the same loop iteration, note the cause first
    gevent.sleep(0)
    runner = environment.runner
    if STATE.run_open and runner is not None and runner.state not in ("stopped", "init"):
        note_cause(EndedBy.STOPPED)
        runner.stop()  # Ctrl-C: users stop before the records file closes (a UI run then closes on test_stop)
    close_run()
    environment.process_exit_code = STATE.exit_code or failed_requests_exit_code(environment)
    if STATE.clock is not None:
        mark_outputs(environment.parsed_options, STATE.clock.scale)


def failed_requests_exit_code(environment: Any) -> int:
    """Locust's --exit-code-on-error when any request failed (0 by the harness's default: see options.py)."""
    runner = environment.runner
    failed = runner is not None and bool(len(runner.errors) or len(runner.exceptions))
    return int(getattr(environment.parsed_options, "exit_code_on_error", 0) or 0) if failed else 0


def close_run() -> None:
    """Close the open run: records, stack and logs, run.json's end, the summary, checks and report.html."""
    if not STATE.run_open or STATE.writer is None or STATE.run_dir is None:
        return
    assert STATE.clock is not None and STATE.scenario is not None
    STATE.run_open = False
    STATE.ready.clear()
    if STATE.watchdog is not None:
        STATE.watchdog.kill(block=False)
        STATE.watchdog = None
    STATE.sink = None
    STATE.writer.close()
    if STATE.stack is not None:
        STATE.stack.stop()  # the servers flush backend.jsonl and gateway.jsonl as they stop
    STATE.run_info[ENDED] = iso(STATE.clock.wall())
    duration = 0.0
    if STATE.test_started_at is not None:
        duration = (STATE.test_stopped_at or STATE.clock.now()) - STATE.test_started_at
    STATE.run_info["scenario_seconds"] = round(duration, 3)
    STATE.run_info.update(end_facts(ended_by(duration), STATE.planned_s or STATE.scenario.load_duration(), duration))
    offered = offered_load(duration)
    STATE.run_info[OFFERED_LOAD] = offered
    write_run_json(STATE.run_dir, STATE.run_info)  # the summary reads the run's start and length from it
    run, summary = _summarize(STATE.run_dir)
    if summary is not None:
        print(format_console_summary(summary))
    elif offered["short"]:  # with a summary, its answer opens with this
        print(offered_load_warning(offered))
    results = evaluate_checks(STATE.scenario.checks, summary or {})
    for result in results:
        print(result.describe())
    STATE.run_info["summary"] = summary
    STATE.run_info["checks"] = [r.describe() for r in results]
    # Throttled and failed requests are what a run measures, not an error of the run: the exit code is
    # the verdict of the scenario's checks (Locust alone would exit 1 on the first failed request).
    verdict = CHECKS_FAILED_EXIT_CODE if any(not r.passed for r in results) else 0
    if STATE.run_info[ENDED_BY] == EndedBy.STACK_DIED:
        verdict = STACK_DIED_EXIT_CODE
    STATE.exit_code = max(STATE.exit_code, verdict)
    write_run_json(STATE.run_dir, STATE.run_info)
    print(f"run directory: {STATE.run_dir}")
    if run is not None:
        _write_report(run, summary)
    STATE.last_finished = STATE.run_dir.name
    sys.stdout.flush()


def offered_load(ran_s: float) -> dict[str, Any]:
    """The load this run offered against its schedule: from this process, or from each worker's tally."""
    if STATE.run_info.get("distributed"):  # a worker that never reported offered nothing the master saw
        by_process = dict(sorted(STATE.load_by_worker.items()))
    else:
        by_process = {"local": STATE.tally.as_dict()}
    return load_facts(by_process, STATE.seats or [], ran_s)


def ended_by(ran_s: float) -> EndedBy:
    """The noted cause, else completed when the load ran its plan (to Locust's one-second shape tick)."""
    if STATE.end_cause is not None:
        return STATE.end_cause
    assert STATE.clock is not None and STATE.scenario is not None
    planned = STATE.planned_s or STATE.scenario.load_duration()
    return EndedBy.COMPLETED if ran_s >= planned - STATE.clock.scale else EndedBy.STOPPED


def _summarize(run_dir: Path) -> tuple[RunData | None, dict[str, Any] | None]:
    """The run as the report reads it, and its summary: the one source of the console, checks and report."""
    # imported here: pandas is for the end of a run, not for Locust's start-up
    from harness.report.load import load_run
    from harness.report.summary.build import summarize
    from harness.report.summary.schema import json_safe

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
