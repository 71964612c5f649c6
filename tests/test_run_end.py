"""Runs end honestly: signals and a dead embedded stack still write the end of the run, and say why in run.json."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.loadgen.run_end import STACK_DIED_EXIT_CODE, end_facts
from harness.records import ATTEMPTS_CUT, ENDED_BY, TIME_MISSING, EndedBy, read_records
from tests.loadgen_helpers import PLAIN_SCENARIO, RUN_TIMEOUT_S, locust, records_written, run_info, wait_for

pytestmark = pytest.mark.e2e


def test_end_facts_say_how_much_of_the_plan_is_missing() -> None:
    assert end_facts(EndedBy.SIGTERM, planned_s=600.0, ran_s=90.25) == {
        ENDED_BY: "signal:SIGTERM",
        TIME_MISSING: 509.75,
    }
    assert end_facts(EndedBy.COMPLETED, planned_s=600.0, ran_s=599.9)[TIME_MISSING] == 0.0
    assert end_facts(EndedBy.STOPPED, planned_s=60.0, ran_s=75.0)[TIME_MISSING] == 0.0  # never negative


def headless_run(tmp_path: Path, text: str = "") -> tuple[subprocess.Popen[str], Path]:
    """A headless run of `text` (PLAIN_SCENARIO when empty) at time scale 10, once its first records are in."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text or PLAIN_SCENARIO)
    run_dir = tmp_path / "run"
    proc = locust(
        "--headless", "--scenario", str(scenario), "--time-scale", "10", "--run-dir", str(run_dir), "--only-summary",
        cwd=tmp_path,
    )  # fmt: skip
    wait_for(lambda: records_written(run_dir), what="the first records")
    return proc, run_dir


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_the_end_summary_and_report(tmp_path: Path, signum: signal.Signals) -> None:
    proc, run_dir = headless_run(tmp_path)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-2000:]
    info = run_info(run_dir)
    assert info["ended"] and info["summary"]["requests"]["logical"] > 0
    assert info[ENDED_BY] == f"signal:{signum.name}"
    # 600 planned scenario seconds, a few wall seconds at time scale 10 ran
    assert 400 < info[TIME_MISSING] < 600 and info[TIME_MISSING] + info["scenario_seconds"] == pytest.approx(
        600, abs=0.01
    )
    assert (run_dir / "report.html").exists() and "Harness summary" in out
    assert "Traceback" not in err


def test_a_dead_embedded_stack_ends_the_run_with_one_line_and_exit_4(tmp_path: Path) -> None:
    proc, run_dir = headless_run(tmp_path)
    os.killpg(run_info(run_dir)["stack_pid"], signal.SIGKILL)  # the servers die under the load
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == STACK_DIED_EXIT_CODE == 4, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("locust: error:")]
    assert len(lines) == 1 and "the embedded stack exited during the run (exit code -9)" in lines[0]
    assert "Traceback" not in err
    info = run_info(run_dir)
    assert info[ENDED_BY] == "stack_died" and info[TIME_MISSING] > 0 and info["ended"]


# requests of about one wall second (10 scenario s at time scale 10): at any moment each user has one in flight
SLOW_SCENARIO = """\
run: {duration: 600, seed: 1}
backends:
  - name: aoai-eastus
    deployments:
      gpt-4o: {tpm: 100000000, latency: {ttft: 5, per_token: 0.1}}
workload:
  users: 6
  think_time: 0
  apps: [{id: chat-app}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 20, max_tokens: 50, stream_share: 0.5}]
"""


def test_ctrl_c_waits_for_the_attempts_in_flight_and_records_them(tmp_path: Path) -> None:
    proc, run_dir = headless_run(tmp_path, SLOW_SCENARIO)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-2000:]
    info = run_info(run_dir)
    assert info[ENDED_BY] == "signal:SIGINT" and info[ATTEMPTS_CUT] == 0
    records = read_records(run_dir / "records.csv")
    served = (run_dir / "backend.jsonl").read_text().splitlines()
    # every request the mock answered has its record, those in flight at the signal included
    assert len(records) == len(served) >= 6
    assert all(r["status"] == 200 for r in records)


def test_the_report_of_a_killed_run_opens_by_saying_it_was_cut_short(tmp_path: Path) -> None:
    proc, run_dir = headless_run(tmp_path)
    stack = run_info(run_dir)["stack_pid"]
    proc.kill()  # SIGKILL: nothing of the end of the run is written
    proc.communicate(timeout=RUN_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack, signal.SIGKILL)
    assert run_info(run_dir)["ended"] is None and not (run_dir / "report.html").exists()
    records = run_dir / "records.csv"
    lines = records.read_text().count("\n")
    with records.open("a") as tail:
        tail.write("run,17966")  # died mid-write: half a record without its newline
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr[-2000:]
    page = (run_dir / "report.html").read_text()
    opening = page[page.index('<p class="verdict">') :]
    assert opening.startswith('<p class="verdict">This run was cut short: its run.json has no end')
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["never_ended"] is True and summary["requests"]["attempts"] == lines - 1
    assert f"records.csv: line {lines + 1}, half written when the run was cut off, is left out" in page
