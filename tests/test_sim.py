"""The simulator: deterministic, the same rules as the live components, the same run directory.

Every run here is a real `simulate` of a scenario file: no sockets, no sleeps, a fraction of a second each.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.records import read_records
from harness.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
BREAKER = str(ROOT / "scenarios" / "breaker-trip-duration.yaml")


def comparable(path: Path) -> list[dict[str, str]]:
    """Records without the run id and the wall-clock column (ids carry the run id as a prefix)."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        run_id = row.pop("run_id")
        row.pop("t_wall")
        for key in ("logical_id", "request_id"):
            row[key] = row[key].removeprefix(f"{run_id}:")
    return rows


def write_scenario(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_same_scenario_and_seed_give_identical_records(tmp_path: Path) -> None:
    first = simulate(BREAKER, ["run.duration=120"], tmp_path / "a")
    second = simulate(BREAKER, ["run.duration=120"], tmp_path / "b")
    other_seed = simulate(BREAKER, ["run.duration=120", "run.seed=11"], tmp_path / "c")
    a, b = comparable(first / "records.csv"), comparable(second / "records.csv")
    assert len(a) > 200
    assert a == b
    assert comparable(other_seed / "records.csv") != a


def test_an_hour_simulated_and_reported_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "hour"
    code = main(["simulate", "--scenario", BREAKER, "--set", "run.duration=3600", "--run-dir", str(run_dir)])
    assert code == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["engine"] == "sim"
    assert info["scenario_seconds"] == 3600
    assert (run_dir / "report.html").stat().st_size > 10_000
    records = read_records(run_dir / "records.csv")
    assert max(r["t_scenario"] for r in records) - min(r["t_scenario"] for r in records) > 3500
    assert "run directory:" in capsys.readouterr().out
    # `harness report` reads it unchanged
    assert main(["report", str(run_dir), "--out", str(tmp_path / "again")]) == 0


def test_the_breaker_trips_for_trip_duration_and_the_secondary_serves_meanwhile(tmp_path: Path) -> None:
    """One 429 from the PTU primary trips it for exactly tripDuration; meanwhile the secondary serves."""
    run_dir = simulate(BREAKER, ["run.duration=180"], tmp_path / "run")
    transitions = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    breaker = [t for t in transitions if t["kind"] == "breaker"]
    opened = [t for t in breaker if t["to"] == "open"]
    closed = [t for t in breaker if t["to"] == "closed"]
    assert opened and closed
    assert all(t["until"] - t["t"] == pytest.approx(30.0) for t in opened)
    assert closed[0]["t"] == pytest.approx(opened[0]["until"])
    throttled = [r for r in read_records(run_dir / "records.csv") if r["status"] == 429]
    assert throttled and {r["backend"] for r in throttled} == {"primary"}
    # a PTU 429 carries retry-after-ms (time until utilization falls below 100 %), no AOAI quota policy id
    assert all(r["retry_after_ms"] is not None and r["policy_id"] is None for r in throttled)
    # while the primary is tripped, the secondary serves everything (records keep microseconds: 1 ms margin)
    for t in opened:
        inside = [
            r
            for r in read_records(run_dir / "records.csv")
            if t["t"] + 1e-3 < r["t_scenario"] < t["until"] - 1e-3 and r["backend"]
        ]
        assert inside and {r["backend"] for r in inside} == {"secondary"}


def test_client_profiles_honour_retry_after_as_the_sdk_does(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
run: {duration: 60, seed: 3}
backends:
  - name: small
    deployments: {gpt-4o: {tpm: 1000}}
workload:
  users: 3
  apps: [{id: app, client_profile: openai-python}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 20, max_tokens: 10}]
""",
    )
    records = read_records(simulate(scenario, [], tmp_path / "run") / "records.csv")
    retried = [r for r in records if r["decision"] == "retry"]
    assert retried
    # a 1K TPM deployment allows one request per 10 s: the SDK waits out retry-after-ms as sent
    assert all(r["retry_wait_source"] == "retry-after-ms" for r in retried)
    assert all(r["retry_wait_s"] == pytest.approx(r["retry_after_ms"] / 1000) for r in retried)
    assert max(r["attempt"] for r in records) == 3  # max_retries 2
    successes = sorted(r["t_scenario"] for r in records if r["status"] == 200)
    assert all(b - a >= 10.0 - 1e-6 for a, b in itertools.pairwise(successes))


def test_trace_replay_sends_every_row_once_at_its_offset(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "offset_s,app,operation,prompt_tokens,max_tokens,stream\n"
        + "".join(f"{i * 1.5},a,chat,{20 + i},{10 + i},{'true' if i % 2 else 'false'}\n" for i in range(12)),
        encoding="utf-8",
    )
    scenario = write_scenario(
        tmp_path,
        f"""
run: {{duration: 60}}
workload:
  apps: [{{id: a, client_profile: none}}]
  trace: {{file: {trace.name}, users: 4}}
""",
    )
    records = read_records(simulate(scenario, [], tmp_path / "run") / "records.csv")
    assert len(records) == 12
    start = min(r["t_scenario"] for r in records)
    by_offset = sorted(records, key=lambda r: r["t_scenario"])
    assert [round(r["t_scenario"] - start, 6) for r in by_offset] == [i * 1.5 for i in range(12)]
    assert [r["max_tokens"] for r in by_offset] == [10 + i for i in range(12)]
    assert [r["stream"] for r in by_offset] == [bool(i % 2) for i in range(12)]


def test_stages_change_the_number_of_users(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
run: {duration: 120}
workload:
  think_time: 1
  apps: [{id: a, client_profile: none}]
  stages: [{duration: 60, users: 2}, {duration: 60, users: 8}]
""",
    )
    records = read_records(simulate(scenario, [], tmp_path / "run") / "records.csv")
    start = min(r["t_scenario"] for r in records)
    first = {r["user"] for r in records if r["t_scenario"] - start < 59}
    second = {r["user"] for r in records if r["t_scenario"] - start > 70}
    assert len(first) == 2 and len(second) == 8


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    real = write_scenario(tmp_path, "backends: [{name: real, url: 'https://example.invalid'}]\n")
    with pytest.raises(HarnessError, match=r"backends\[0\]\.url: a real endpoint cannot be simulated"):
        simulate(real, [], tmp_path / "real")
    simulate(BREAKER, ["run.duration=10"], tmp_path / "once")
    with pytest.raises(HarnessError, match="already holds a run"):
        simulate(BREAKER, ["run.duration=10"], tmp_path / "once")


def test_gateway_retry_hides_backend_429s_from_clients_but_not_from_the_summary(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
run: {duration: 120, seed: 1}
backends:
  - name: primary
    deployments: {gpt-4o: {tpm: 5000}}
  - name: secondary
    deployments: {gpt-4o: {tpm: 200000}}
gateway:
  pool:
    members: [{backend: primary, priority: 1}, {backend: secondary, priority: 2}]
  retry: {enabled: true, max_attempts: 2}
workload:
  users: 6
  think_time: 1
  apps: [{id: app, client_profile: none}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 200, max_tokens: 100}]
""",
    )
    run_dir = simulate(scenario, [], tmp_path / "run")
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["requests"]["rate_429"] == 0
    primary = summary["backends"]["primary"]
    assert primary["rate_429"] > 0.3 and primary["answered"] > 0
    assert summary["backends"]["secondary"]["rate_429"] == 0
    rows = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    hops = [r for r in rows if r["kind"] == "request" and r["attempts"] == ["primary", "secondary"]]
    assert hops and all(r["backend"] == "secondary" and r["status"] == 200 for r in hops)


def test_repeated_stages_start_over_until_the_run_ends(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
run: {duration: 240}
workload:
  think_time: 1
  apps: [{id: a, client_profile: none}]
  stages: [{duration: 60, users: 6}, {duration: 60, users: 1}]
  repeat_stages: true
""",
    )
    records = read_records(simulate(scenario, [], tmp_path / "run") / "records.csv")
    start = min(r["t_scenario"] for r in records)

    def busy(minute: int) -> int:
        return len({r["user"] for r in records if minute * 60 + 5 < r["t_scenario"] - start < minute * 60 + 55})

    assert [busy(m) for m in range(4)] == [6, 1, 6, 1]


def test_network_latency_lets_more_429s_through_per_trip(tmp_path: Path) -> None:
    """While a 429 is on its way back, the gateway keeps sending to the resource: the farther the resource,
    the more 429s each breaker trip costs (with none, exactly the one that trips it). The burst's users start
    one at a time here (spawn_rate 1.5): a whole batch arriving in the same instant would all be 429s."""

    def throttled_per_trip(latency: str, seed: int) -> float:
        overrides = ["run.duration=600", "workload.stages[0].spawn_rate=1.5", f"backends[0].network_latency={latency}"]
        run_dir = simulate(BREAKER, [*overrides, f"run.seed={seed}"], tmp_path / f"{latency}-{seed}")
        summary = json.loads((run_dir / "run.json").read_text())["summary"]
        backend = summary["backends"]["primary"]
        return backend["answered"] * backend["rate_429"] / summary["breaker"]["primary"]["trips"]

    seeds = (5, 6, 7)
    assert [throttled_per_trip("0", s) for s in seeds] == [1.0, 1.0, 1.0]
    far = [throttled_per_trip("0.1", s) for s in seeds]
    assert min(far) > 1.0 and sum(far) / len(far) > 1.3


LOCKOUT = """
# the azure-openai-benchmark tool's --retry exponential, 20 clients, against a 10K TPM deployment (10 requests
# per 10 s) with small requests: the request window binds, the token window has room
run: {duration: 60, seed: 1}
backends:
  - name: aoai
    deployments:
      gpt-4o: {tpm: 10000, completion_tokens: {kind: constant, value: 20}}
workload:
  users: 20
  spawn_rate: 20
  think_time: 0
  apps: [{id: bench, client_profile: azure-openai-benchmark}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 50, max_tokens: 50}]
"""


def test_fast_retries_lock_a_deployment_out_while_rejected_requests_count(tmp_path: Path) -> None:
    """AOAI counts rejected requests toward the request window (the default): 20 clients retrying as soon as
    they are told keep it full, and nothing gets in after the first burst while thousands of tokens are free.
    Not counting them, the deployment serves its 10 requests per 10 s. The report says which it was."""
    scenario = write_scenario(tmp_path, LOCKOUT)
    setting = "backends[0].deployments.gpt-4o.count_rejected_requests"

    def run(counted: bool) -> tuple[dict, list[dict]]:
        run_dir = simulate(scenario, [f"{setting}={str(counted).lower()}"], tmp_path / str(counted))
        summary = json.loads((run_dir / "run.json").read_text())["summary"]
        return summary, read_records(run_dir / "records.csv")

    counted, counted_records = run(True)
    free, _ = run(False)
    start = min(r["t_scenario"] for r in counted_records)
    ok_times = [r["t_scenario"] - start for r in counted_records if r["status"] == 200]
    assert len(ok_times) == 10 and max(ok_times) < 1.0  # the first burst, then locked out
    lockout = counted["lockout"]
    assert lockout["request_limit_429s"] >= 150
    assert lockout["with_tokens_free"] == lockout["request_limit_429s"]
    assert lockout["mean_tokens_free"] > 8_000  # of 10,000
    assert free["requests"]["attempt_outcomes"]["success"] >= 50  # ~10 per 10 s over the minute
    assert free["lockout"]["admitted"] >= 5 * lockout["admitted"]


def test_injected_429s_carry_aoais_headers_and_no_token_charge_in_the_simulator(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
run: {duration: 60, seed: 2}
backends:
  - name: aoai
    deployments: {gpt-4o: {tpm: 100000}}
    faults: {error_rates: {429: 0.3}}
workload:
  users: 4
  think_time: 0.5
  apps: [{id: app, client_profile: none}]
  mixes: [{deployment: gpt-4o, prompt_tokens: 50, max_tokens: 100}]
""",
    )
    run_dir = simulate(scenario, [], tmp_path / "run")
    throttled = [r for r in read_records(run_dir / "records.csv") if r["status"] == 429]
    assert len(throttled) > 20
    assert all(r["retry_after_s"] == 1 and r["retry_after_ms"] == 1000 for r in throttled)
    assert {r["policy_id"] for r in throttled} == {"DeploymentRatelimit-Requests"}
    assert all(r["ratelimit_remaining_tokens"] is not None for r in throttled)
    rows = [json.loads(line) for line in (run_dir / "backend.jsonl").read_text().splitlines()]
    faults = [r for r in rows if r["status"] == 429]
    assert {r["decision"] for r in faults} == {"fault"} and all(r["estimate_charged"] == 0 for r in faults)
    # within the first token window, the tokens used are the admitted requests' only
    start = min(r["t"] for r in rows)
    first_window = [r for r in faults if r["t"] < start + 55]
    assert first_window

    def arrival(r: dict[str, Any]) -> tuple[float, int]:  # users that start together arrive in the same instant
        return r["t"], int(r["request_id"].rsplit("-", 1)[1])

    for row in first_window:
        charged_before = sum(r["estimate_charged"] for r in rows if arrival(r) < arrival(row))
        assert row["remaining_tokens"] == 100_000 - charged_before


@pytest.mark.parametrize(("cap", "longest_trip"), [(None, 86_400.0), ("PT5M", 300.0)])
def test_max_trip_duration_brings_a_member_back_despite_a_day_long_retry_after(
    tmp_path: Path, cap: str | None, longest_trip: float
) -> None:
    """The simulator uses the gateway's breaker: a day-long Retry-After removes the member for a day, or for
    maxTripDuration when set, after which it serves again."""
    scenario = write_scenario(
        tmp_path,
        f"""
run: {{duration: 900, seed: 3}}
backends:
  - name: primary
    deployments: {{gpt-4o: {{tpm: 2000}}}}
    faults: {{long_retry_after: {{probability: 1.0}}}}
  - name: secondary
    deployments: {{gpt-4o: {{tpm: 1000000}}}}
gateway:
  pool:
    members: [{{backend: primary, priority: 1}}, {{backend: secondary, priority: 2}}]
  circuit_breaker: {{tripDuration: PT1M, acceptRetryAfter: true, maxTripDuration: {cap or "null"}}}
workload:
  users: 4
  think_time: 1
  apps: [{{id: app, client_profile: none}}]
  mixes: [{{deployment: gpt-4o, prompt_tokens: 50, max_tokens: 100}}]
""",
    )
    run_dir = simulate(scenario, [], tmp_path / "run")
    rows = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    opened = [r for r in rows if r["kind"] == "breaker" and r["to"] == "open"]
    assert opened and max(r["until"] - r["t"] for r in opened) == pytest.approx(longest_trip)
    served_by_primary_after_trip = [
        r for r in rows if r["kind"] == "request" and r["backend"] == "primary" and r["t"] > opened[0]["until"]
    ]
    assert (len(opened) > 1 and served_by_primary_after_trip) if cap else len(opened) == 1
