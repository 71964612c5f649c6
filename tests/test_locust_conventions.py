"""Locust's own options keep their meaning under the harness, in short headless runs on loopback:

- `-t` longer than the scenario stretches it (the users keep going, or the last stage does) and says so in one
  line; the run's scenario copy and run.json say how long it ran;
- `--exit-code-on-error N` exits N when a request failed, as in Locust (the harness's default is 0);
- `--stop-timeout` lets the requests in flight at the end finish and be recorded, as Locust lets tasks finish;
- `--csv` and `--html` say the time scale their figures were taken at;
- `--tags` / `--exclude-tags` select request mixes by name, or are refused in one line before anything starts.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from loadgen_helpers import LOCUST, LOCUSTFILE, RUN_TIMEOUT_S, free_port, run_info

from harness.loadgen.outputs import SCENARIO_RATE_COLUMN, TIME_SCALE_COLUMN
from harness.records import read_records
from harness.report.load import read_json_lines

pytestmark = pytest.mark.e2e

SCALE = 10
MIXES = f"""\
run: {{duration: 10, time_scale: {SCALE}, seed: 1}}
backends:
  - name: east
    deployments: {{gpt-4o: {{tpm: 1200, latency: {{ttft: 0.05, per_token: 0}}}}}}
workload:
  users: 2
  think_time: {{kind: constant, value: 0.5}}
  apps: [{{id: app, client_profile: none}}]
  mixes:
    - {{name: short, prompt_tokens: {{kind: constant, value: 40}}, max_tokens: {{kind: constant, value: 10}}}}
    - {{name: long, prompt_tokens: {{kind: constant, value: 200}}, max_tokens: {{kind: constant, value: 20}}}}
"""
STAGES = MIXES.replace("  users: 2\n", "  stages: [{duration: 4, users: 1}, {duration: 6, users: 2}]\n")


def run(tmp_path: Path, name: str, scenario: str, *options: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario_path = tmp_path / f"{name}.yaml"
    scenario_path.write_text(scenario, encoding="utf-8")
    run_dir = tmp_path / name
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--scenario", str(scenario_path),
        "--run-dir", str(run_dir), *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    return result, run_dir


def test_a_longer_t_runs_on_says_so_and_exit_code_csv_and_html_follow_locust(tmp_path: Path) -> None:
    prefix, report = tmp_path / "locust", tmp_path / "locust.html"
    result, run_dir = run(
        tmp_path, "longer", MIXES, "-t", "3s", "--exit-code-on-error", "5", "--csv", str(prefix),
        "--html", str(report), "--json-file", str(tmp_path / "locust"),
    )  # fmt: skip
    said = [line for line in result.stderr.splitlines() if "-t 3s is 30 scenario s" in line]
    assert len(said) == 1 and "longer than the scenario's 10 s: the users keep going" in said[0], result.stderr
    info = run_info(run_dir)
    assert info["ended_by"] == "completed" and info["scenario_seconds"] >= 29, info
    assert yaml.safe_load((run_dir / "scenario.yaml").read_text())["run"]["duration"] == 30
    records = read_records(run_dir / "records.csv")
    assert max(r["t_scenario"] for r in records) - info["load_started_at"] > 15  # the load went on past 10 s
    # requests failed (a 1,200 TPM deployment, no retries): Locust's --exit-code-on-error applies
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert sum(int(e["num_failures"]) for e in stats) > 0
    assert result.returncode == 5, result.stderr[-2000:]
    # the CSV says its time scale, and the rate per scenario second next to Locust's per wall second
    with (tmp_path / "locust_stats.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    aggregated = next(r for r in rows if r["Name"] == "Aggregated")
    assert aggregated[TIME_SCALE_COLUMN] == str(SCALE)
    assert float(aggregated[SCENARIO_RATE_COLUMN]) == pytest.approx(float(aggregated["Requests/s"]) / SCALE, rel=1e-3)
    with (tmp_path / "locust_stats_history.csv").open(newline="") as file:
        history = list(csv.DictReader(file))
    assert history and all(r[TIME_SCALE_COLUMN] == str(SCALE) for r in history)
    page = report.read_text(encoding="utf-8")
    assert f"Time scale {SCALE} (scenario seconds per wall second)" in page
    assert "response times are scenario milliseconds" in page


def test_tags_send_only_the_tagged_mix_and_failures_exit_0_by_default(tmp_path: Path) -> None:
    result, run_dir = run(tmp_path, "tagged", MIXES, "-t", "1s", "--tags", "short", "--json-file", str(tmp_path / "j"))
    assert "No tasks defined" not in result.stderr and "Traceback" not in result.stderr
    records = read_records(run_dir / "records.csv")
    assert records and {r["mix"] for r in records} == {"short"}
    assert run_info(run_dir)["request_mixes"] == ["short"]
    stats = json.loads((tmp_path / "j.json").read_text())
    assert sum(int(e["num_failures"]) for e in stats) > 0
    assert result.returncode == 0, result.stderr[-2000:]  # throttling is what the run measures


def test_exclude_tags_and_a_longer_t_extend_the_last_stage(tmp_path: Path) -> None:
    result, run_dir = run(tmp_path, "stages", STAGES, "-t", "2s", "--exclude-tags", "short")
    assert result.returncode == 0, result.stderr[-2000:]
    said = [line for line in result.stderr.splitlines() if "-t 2s is 20 scenario s" in line]
    assert len(said) == 1 and "its last stage (2 users) goes on to the end of -t" in said[0], result.stderr
    copy = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    assert [s["duration"] for s in copy["workload"]["stages"]] == [4, 16]
    records = read_records(run_dir / "records.csv")
    started = run_info(run_dir)["load_started_at"]
    assert {r["mix"] for r in records} == {"long"}
    late_users = {r["user"] for r in records if r["t_scenario"] - started > 12}  # past the stages' own 10 s
    assert len(late_users) == 2


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--tags", "medium"], "--tags: no request mix named medium in the scenario (its mixes: short, long)"),
        (
            ["--exclude-tags", "short", "long"],
            "--exclude-tags leaves no request mix to send (the scenario's mixes: short, long)",
        ),
    ],
)
def test_tags_naming_no_mix_are_one_line_and_start_nothing(tmp_path: Path, options: list[str], said: str) -> None:
    result, run_dir = run(tmp_path, "refused", MIXES, "-t", "1s", *options)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"locust: error: {said}"], result.stderr
    assert "Traceback" not in result.stderr and not run_dir.exists()


SLOW = """\
run: {duration: 2, time_scale: 1, seed: 1}
backends:
  - name: east
    deployments: {gpt-4o: {latency: {ttft: 1.5, per_token: 0}}}
workload:
  users: 2
  think_time: {kind: constant, value: 0}
  apps: [{id: app, client_profile: none}]
"""


@pytest.mark.parametrize("stop_timeout", [None, "10"])
def test_stop_timeout_lets_the_requests_in_flight_finish(tmp_path: Path, stop_timeout: str | None) -> None:
    options = ["--stop-timeout", stop_timeout] if stop_timeout else []
    result, run_dir = run(tmp_path, "slow", SLOW, *options)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_records(run_dir / "records.csv")
    backend = read_json_lines(run_dir / "backend.jsonl", None, [])
    answered = set(backend["client_request_id"])
    recorded = {r["request_id"] for r in records if r["status"] == 200}
    # two users, 1.5 s a request, the load ends at 2 s: each user has a second request in flight then
    assert len(answered) == 4
    if stop_timeout:
        assert recorded == answered  # waited for, as Locust waits for running tasks
    else:
        assert len(recorded) == 2  # stopped at once, as Locust stops users without --stop-timeout


def test_tags_reach_the_workers_of_a_distributed_run(tmp_path: Path) -> None:
    scenario_path = tmp_path / "mixes.yaml"
    scenario_path.write_text(MIXES, encoding="utf-8")
    run_dir, port = tmp_path / "dist", free_port()
    common = ["-f", str(LOCUSTFILE), "--scenario", str(scenario_path)]
    worker = subprocess.Popen(
        [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        command = [
            LOCUST, *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", "1", "--headless", "--only-summary", "-t", "1s", "--tags", "long",
            "--run-dir", str(run_dir),
        ]  # fmt: skip
        master = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=10)
    assert master.returncode == 0, master.stderr[-2000:]
    records = read_records(run_dir / "records.csv")
    assert records and {r["mix"] for r in records} == {"long"}
