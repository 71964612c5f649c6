"""End of a run in the local (or master) process: close the records, stop the stack, summarize and judge.

The report package summarizes the run directory once (the numbers of summary.json); that one summary is
printed, checked against the scenario's `checks:`, stored in run.json and drawn in the report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locust.runners import WorkerRunner

from harness.errors import HarnessError
from harness.loadgen.rundir import iso, write_run_json
from harness.loadgen.state import STATE
from harness.report.checks import evaluate_checks
from harness.report.console import format_console_summary

if TYPE_CHECKING:
    from harness.report.load import RunData


def finish_run(environment: Any, **_: Any) -> None:
    """Locust's `quitting` listener: the exit code becomes the verdict of the scenario's checks."""
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
    write_run_json(STATE.run_dir, STATE.run_info)  # the summary reads the run's start and length from it
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
