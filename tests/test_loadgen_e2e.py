"""End to end: real headless Locust against the embedded stack (mock pool + gateway), time-compressed.

Each run is a `locust` subprocess on loopback, a few wall seconds long, stopping by itself.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from distributed_helpers import run_scenario
from loadgen_helpers import LOCUST, LOCUSTFILE, ROOT, RUN_TIMEOUT_S, free_port

from harness.loadgen.live import RETRIED_SUFFIX
from harness.mock.headers import POLICY_IDS
from harness.records import BACKEND_LOG, read_records
from harness.records.outcomes import BackendDecision

pytestmark = pytest.mark.e2e


def run_locust(
    run_dir: Path, scenario: str, *extra: str, users: int | None = 4, seconds: int = 4, scale: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run headless Locust; `users=None` leaves -u/-r out so the scenario's own user count applies."""
    user_options = ["-u", str(users), "-r", str(users)] if users is not None else []
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", *user_options, "-t", f"{seconds}s",
        "--scenario", str(ROOT / "scenarios" / scenario), "--set", f"run.time_scale={scale}",
        "--run-dir", str(run_dir), "--csv", str(run_dir / "locust"), "--json-file", str(run_dir / "locust"),
        "--only-summary", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=run_dir.parent)


def locust_request_counts(run_dir: Path) -> tuple[int, int]:
    """(logical requests, retried attempts) as Locust counted them."""
    # the JSON file is written after the runner has stopped (the CSV lags by up to a second)
    entries = json.loads((run_dir / "locust.json").read_text())
    retried = sum(int(e["num_requests"]) for e in entries if e["name"].endswith(RETRIED_SUFFIX))
    return sum(int(e["num_requests"]) for e in entries) - retried, retried


def assert_records_match_locust(run_dir: Path) -> list[dict]:
    records = read_records(run_dir / "records.csv")
    retries = sum(1 for r in records if r["attempt"] > 1)
    assert records, "no records written"
    logical, retried = locust_request_counts(run_dir)
    assert len(records) == logical + retries
    # every attempt the client retried is a failure of its own in Locust's statistics
    assert retried == sum(1 for r in records if r["decision"] == "retry")
    return records


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quickstart_writes_a_complete_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "quick"
    result = run_locust(run_dir, "quickstart.yaml", users=None)
    assert result.returncode == 0, result.stderr[-2000:]
    records = assert_records_match_locust(run_dir)
    # without -u the scenario's `workload.users` (4) are spawned, not Locust's headless default of 1
    assert len({r["user"] for r in records}) == 4
    assert {r["request_type"] for r in records} >= {"chat", "embeddings"}
    assert all(r["status"] == 200 and r["decision"] == "success" for r in records)
    assert any(r["stream"] and r["ttft_s"] and r["usage_source"] == "stream_usage_chunk" for r in records)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["embedded"] and info["time_scale"] == 20.0 and info["client_profiles"] == ["openai-python"]
    assert info["versions"]["locust"] and info["ended"] and info["summary"]["requests"]["logical"] > 0
    assert "run.time_scale=20.0" in (run_dir / "scenario.yaml").read_text()
    assert (run_dir / "backend.jsonl").stat().st_size > 0
    assert "Harness summary" in result.stdout and "goodput" in result.stdout
    assert not alive(info["stack_pid"]), "the embedded stack outlived Locust"
    if info["stack"] == "gateway":
        assert all(r["gateway_request_id"] and r["backend"] == "aoai-eastus" for r in records)


def test_throttling_captures_retry_after_and_token_headers(tmp_path: Path) -> None:
    run_dir = tmp_path / "limit"
    result = run_locust(run_dir, "token-limit-per-app.yaml", seconds=5)
    assert result.returncode == 0, result.stderr[-2000:]
    records = assert_records_match_locust(run_dir)
    throttled = [r for r in records if r["status"] == 429]
    assert throttled, "the noisy app was never throttled"
    assert {r["app_id"] for r in throttled} == {"noisy"}
    assert all(r["error_kind"] == "gateway_token_limit" for r in throttled)
    assert all(r["retry_after_s"] is not None and r["retry_after_s"] > 0 for r in throttled)
    assert all(r["gateway_remaining_tokens"] is not None for r in throttled)
    assert any(r["gateway_tokens_consumed"] for r in records if r["status"] == 200)
    with (run_dir / "locust_failures.csv").open() as handle:
        assert any("429 gateway token limit" in row["Error"] for row in csv.DictReader(handle))


def test_backend_429_headers_and_sdk_retries_are_recorded(tmp_path: Path) -> None:
    run_dir = tmp_path / "drain"
    result = run_locust(run_dir, "max-tokens-drain.yaml", seconds=5, scale=30.0)
    assert result.returncode == 0, result.stderr[-2000:]
    records = assert_records_match_locust(run_dir)
    backend_429 = [r for r in records if r["error_kind"] == "backend_429"]
    assert backend_429
    # Each 429 carries the policy its backend logged refusing it, and its wait. The drain is the token limit;
    # a run squeezed by a busy machine (requests bunched on the 30x clock) may also meet the request-rate
    # limit now and then, as AOAI's short request windows do, so that one is told apart, not ruled out.
    logged = [json.loads(line) for line in (run_dir / BACKEND_LOG).read_text().splitlines()]
    decision_of = {row["request_id"]: row["decision"] for row in logged}
    assert all(r["policy_id"] == POLICY_IDS[decision_of[r["backend_request_id"]]] for r in backend_429)
    assert all(r["retry_after_ms"] for r in backend_429)
    by_tokens = [r for r in backend_429 if r["policy_id"] == POLICY_IDS[BackendDecision.RATE_LIMITED_TOKENS]]
    assert len(by_tokens) * 2 > len(backend_429), "the drain throttles by tokens"
    assert all(r["ratelimit_remaining_tokens"] is not None for r in backend_429)
    retried = [r for r in backend_429 if r["decision"] == "retry"]
    assert retried and all(r["retry_wait_source"] in ("retry-after-ms", "retry-after") for r in retried)
    # the drain: usage far below what max_tokens reserved
    ok = [r for r in records if r["status"] == 200]
    assert ok and max(r["usage_completion"] for r in ok) < 2000 / 4
    # requests the end of the run cut off while they waited to retry are unfinished, not failed
    last: dict[str, dict] = {}
    for r in records:
        if r["logical_id"] not in last or r["attempt"] > last[r["logical_id"]]["attempt"]:
            last[r["logical_id"]] = r
    unfinished = sum(1 for r in last.values() if r["decision"] == "retry")
    requests = json.loads((run_dir / "summary.json").read_text())["requests"]
    assert (requests["unfinished"], requests["logical"]) == (unfinished, len(last) - unfinished)
    if unfinished:
        assert f"({len(records)} attempts, {unfinished} unfinished at the end" in result.stdout


def test_a_violated_check_fails_the_headless_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "checks"
    result = run_locust(run_dir, "quickstart.yaml", "--set", "checks.max_p95_latency_s=0.001", seconds=3)
    assert result.returncode == 3, result.stdout[-2000:]
    assert "check max_p95_latency_s: FAILED" in result.stdout
    assert "off by" in result.stdout
    # one number everywhere: the console's p95, the check's actual value and summary.json's end-to-end p95
    p95 = json.loads((run_dir / "summary.json").read_text())["end_to_end_latency"]["p95"]
    console_p95 = next(line for line in result.stdout.splitlines() if line.startswith("latency p50 / p95"))
    assert console_p95.endswith(f" / {p95:.3f} s")
    assert f"check max_p95_latency_s: FAILED: actual {p95:.4g}, limit 0.001" in result.stdout
    assert json.loads((run_dir / "run.json").read_text())["summary"]["end_to_end_latency"]["p95"] == p95


def test_bad_scenario_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "bad"
    result = run_locust(run_dir, "quickstart.yaml", "--set", "workload.mixes[0].deployment=gpt-5", seconds=2)
    assert result.returncode == 2
    assert "workload.mixes[0].deployment: unknown deployment 'gpt-5' (the backends have: gpt-4o)" in result.stderr
    assert "Traceback" not in result.stderr


def test_master_and_two_workers_write_every_record(tmp_path: Path) -> None:
    run_dir = tmp_path / "dist"
    options = ["-u", "6", "-r", "6", "-t", "4s", "--json-file", str(run_dir / "locust")]
    master = run_scenario(run_dir, "quickstart.yaml", 2, "run.time_scale=20", options=options)
    assert master.returncode == 0, master.stdout[-3000:]
    records = assert_records_match_locust(run_dir)
    assert len({r["user"].split("-")[0] for r in records}) == 2, "records from both workers"
    assert json.loads((run_dir / "run.json").read_text())["distributed"] is True


@pytest.mark.parametrize(
    "scenario",
    [
        "ptu-spillover.yaml",
        "breaker-trip-duration.yaml",
        "retry-after-day.yaml",
        "streaming-accounting.yaml",
        "breaker-vs-retry.yaml",
    ],
)
def test_every_shipped_scenario_runs(tmp_path: Path, scenario: str) -> None:
    run_dir = tmp_path / scenario.removesuffix(".yaml")
    result = run_locust(run_dir, scenario, seconds=3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_records_match_locust(run_dir)


def test_options_are_registered_on_locusts_parser() -> None:
    # Locust 2.47 answers --help before it imports the locustfile, so the help is printed from Locust's
    # own parser after the locustfile has registered its options (what Locust does for every other command).
    script = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "from locust.argument_parser import get_parser; get_parser().print_help()"
    )
    result = subprocess.run([sys.executable, "-c", script, str(LOCUSTFILE)], capture_output=True, text=True, timeout=60)
    for option in (
        "--scenario",
        "--set",
        "--run-dir",
        "--client-profile",
        "--time-scale",
        "--api-key",
        "--bearer-token",
    ):
        assert option in result.stdout, result.stderr[-1000:]


def test_web_ui_default_run_and_ctrl_c_leave_no_orphan(tmp_path: Path) -> None:
    import time
    import urllib.request

    run_dir = tmp_path / "ui"
    port = free_port()
    proc = subprocess.Popen(
        [LOCUST, "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        page = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "scenario" in page and "quickstart.yaml" in page  # the custom options are in the UI
        info = json.loads((run_dir / "run.json").read_text())
        assert info["embedded"] and alive(info["stack_pid"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    for _ in range(50):
        if not alive(info["stack_pid"]):
            break
        time.sleep(0.1)
    assert not alive(info["stack_pid"]), "Ctrl-C left the embedded stack running"


# offset_s, app, operation, prompt_tokens, max_tokens, stream: one row per logical request, listed out of
# time order in the file (the replay sorts them); rows at least a scenario second apart so their order is sharp
TRACE_ROWS = [
    (4.5, "chat-app", "chat", 300, None, True),
    (1.0, "chat-app", "chat", 120, 50, False),
    (3.0, "batch-app", "embeddings", 64, None, False),
    (6.0, "batch-app", "completions", 80, 20, False),
    (8.0, "chat-app", "chat", 40, 10, True),
    (15.0, "chat-app", "embeddings", 500, None, False),
    (11.0, "batch-app", "chat", 200, 30, False),
    (20.0, "chat-app", "completions", 150, None, True),
]
TRACE_SCALE = 10.0
# how late (wall seconds) an attempt may start after its offset, never early: a few ms of gevent wake-up
# and prompt building, with room for a busy 2-core machine (loading a tokenizer, ~0.1 s, would not fit)
TRACE_LATE_WALL_S = 0.05

TRACE_SCENARIO = """\
run: {duration: 60, seed: 1}
backends:
  - name: aoai-eastus
    deployments:
      gpt-4o: {tpm: 1000000}
workload:
  apps: [{id: chat-app}, {id: batch-app}]
  trace: {file: %s, users: 8}
"""


def write_trace(path: Path) -> None:
    if path.suffix == ".csv":
        lines = ["offset_s,app,operation,prompt_tokens,max_tokens,stream"]
        for offset, app, operation, prompt, max_tokens, stream in TRACE_ROWS:
            lines.append(f"{offset},{app},{operation},{prompt},{'' if max_tokens is None else max_tokens},{stream}")
        path.write_text("\n".join(lines) + "\n")
    else:
        keys = ("offset_s", "app", "operation", "prompt_tokens", "max_tokens", "stream")
        path.write_text("".join(json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in TRACE_ROWS))


@pytest.mark.serial  # each row at most 50 wall ms late
@pytest.mark.parametrize("trace_name", ["trace.csv", "trace.jsonl"])
def test_trace_rows_are_each_sent_once_at_their_offset(tmp_path: Path, trace_name: str) -> None:
    # the trace sits next to the scenario (not in Locust's working directory): its path is the scenario's
    scenario_dir = tmp_path / "scenario"
    scenario_dir.mkdir()
    write_trace(scenario_dir / trace_name)
    scenario = scenario_dir / "trace.yaml"
    scenario.write_text(TRACE_SCENARIO % trace_name)
    run_dir = tmp_path / "trace"
    result = run_locust(run_dir, str(scenario), users=None, seconds=4, scale=TRACE_SCALE)
    assert result.returncode == 0, result.stderr[-2000:]
    records = assert_records_match_locust(run_dir)
    assert all(r["status"] == 200 and r["attempt"] == 1 for r in records), "the replay was throttled or failed"
    sent = sorted(records, key=lambda r: r["t_scenario"])
    expected = sorted(TRACE_ROWS, key=lambda row: row[0])
    assert len(sent) == len(expected), "every trace row sent exactly once"
    started = json.loads((run_dir / "run.json").read_text())["load_started_at"]
    backend = {
        row["client_request_id"]: row for row in map(json.loads, (run_dir / "backend.jsonl").read_text().splitlines())
    }
    for record, (offset, app, operation, prompt, max_tokens, stream) in zip(sent, expected, strict=True):
        late = record["t_scenario"] - started - offset
        assert 0 <= late <= TRACE_LATE_WALL_S * TRACE_SCALE, (offset, late)
        assert (record["app_id"], record["operation"], record["stream"]) == (app, operation, stream)
        assert record["max_tokens"] == max_tokens and record["deployment"] == "gpt-4o"
        assert record["prompt_tokens_est"] == prompt
        assert backend[record["request_id"]]["prompt_tokens"] == prompt


def test_trace_row_of_an_unknown_app_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    scenario_dir = tmp_path / "scenario"
    scenario_dir.mkdir()
    (scenario_dir / "trace.csv").write_text("offset_s,app,operation\n1,chat-app,chat\n2,chat-ap,chat\n")
    scenario = scenario_dir / "trace.yaml"
    scenario.write_text(TRACE_SCENARIO % "trace.csv")
    run_dir = tmp_path / "typo"
    result = run_locust(run_dir, str(scenario), users=None, seconds=2)
    assert result.returncode == 2
    trace = scenario_dir / "trace.csv"
    message = f"locust: error: {trace}:3: app 'chat-ap' is not one of the workload's apps (chat-app, batch-app)\n"
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "backend.jsonl").exists(), "the embedded stack was started"


SPAWN_SCHEDULE = """
run: {duration: 8, time_scale: 4, seed: 3}
backends: [{name: aoai, deployments: {gpt-4o: {tpm: 1000000}}}]
workload:
  think_time: 5
  stages:
    - {duration: 8, users: 5, spawn_rate: 2.5}
  apps: [{id: app, client_profile: none}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 20, max_tokens: 10}]
"""


@pytest.mark.serial  # batches within 30 wall ms of their schedule
def test_users_start_on_the_scenarios_spawn_schedule_live_and_simulated(tmp_path: Path) -> None:
    """`spawn_rate` 2.5 means batches of two users every 0.8 scenario s, at any time scale and in both
    drivers: Locust's own ramp (batches of floor(2.5 x 4) = 10 per wall second) would start all five at once."""
    from harness.sim import simulate

    scenario = tmp_path / "spawn.yaml"
    scenario.write_text(SPAWN_SCHEDULE)
    expected = [0.0, 0.0, 0.8, 0.8, 1.6]

    def first_sends(run_dir: Path) -> list[float]:
        records = read_records(run_dir / "records.csv")
        firsts = sorted(min(r["t_scenario"] for r in records if r["user"] == u) for u in {r["user"] for r in records})
        return [t - firsts[0] for t in firsts]

    simulated = first_sends(simulate(str(scenario), [], tmp_path / "sim"))
    assert simulated == pytest.approx(expected, abs=1e-6)
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--scenario", str(scenario),
        "--run-dir", str(tmp_path / "live"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # a wall millisecond of scheduling is 4 scenario ms here; batches are 800 ms apart
    assert first_sends(tmp_path / "live") == pytest.approx(expected, abs=0.12)
