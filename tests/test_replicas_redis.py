"""Replicas sharing state on a real redis-server: breaker trips seen by every replica, and Redis dying mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from harness.aoai.refusals import BREAKER_OPEN, REFUSAL_HEADER
from harness.records import SHARED_STATE_LOST, read_records
from tests.redis_helpers import redis_server_or_skip
from tests.test_replicas_live import chat, locust_command

pytestmark = pytest.mark.e2e

# one backend that answers 429 once its 60 tokens per minute are spent; a breaker that trips on one 429
BREAKER = """
backends: [{name: east, deployments: {gpt-4o: {tpm: 60, latency: {ttft: 0, per_token: 0}}}}]
gateway:
  replicas: 3
  shared_state: %s
  circuit_breaker:
    failureCondition: {count: 1, interval: 60, statusCodeRanges: [{min: 429, max: 429}]}
    tripDuration: 600
"""


def trip_on(url: str) -> None:
    for _ in range(20):
        if chat(url).status_code == 429:
            return
    raise AssertionError(f"{url}: the backend never answered 429")


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_breaker_tripped_on_one_replica_is_open_on_the_others_at_their_next_request(serve_stack) -> None:
    with redis_server_or_skip():  # skips, saying how to install it, without redis-server on the PATH
        pass
    stack = serve_stack(BREAKER % "redis", only=None)
    gateways = [line["url"] for line in stack.ready if line["role"] == "gateway"]
    trip_on(gateways[0])
    for url in gateways[1:]:  # their very next request is refused by the open breaker, not sent to the backend
        answer = chat(url)
        assert answer.status_code == 503 and answer.headers[REFUSAL_HEADER] == BREAKER_OPEN
        assert "x-backend" not in answer.headers
    # Redis dies: each replica goes on with its own breakers, which keep the trip they read, and counts it
    redis = next(line for line in stack.ready if line["role"] == "redis")
    os.kill(redis["pid"], signal.SIGKILL)
    answer = chat(gateways[2])
    assert answer.status_code == 503 and answer.headers[REFUSAL_HEADER] == BREAKER_OPEN
    assert metric(gateways[2], "gateway_shared_state_up") == 0
    assert metric(gateways[2], "gateway_shared_state_fallbacks_total") >= 1
    assert stack.stop() == 0
    rows = stack.log_rows("gateway.jsonl")
    assert [r["to"] for r in rows if r["kind"] == "breaker"] == ["open"]  # one trip, logged once
    assert any(r["kind"] == "shared_state" and r["shared_state"] == SHARED_STATE_LOST for r in rows)


def test_without_shared_state_each_replica_learns_of_a_tripped_backend_on_its_own(serve_stack) -> None:
    stack = serve_stack(BREAKER % "none", only=None)
    gateways = [line["url"] for line in stack.ready if line["role"] == "gateway"]
    trip_on(gateways[0])
    answer = chat(gateways[1])  # replica 1's breaker is closed: the request goes to the throttling backend
    assert answer.status_code == 429 and answer.headers.get("x-backend") == "east"
    assert all(line["role"] != "redis" for line in stack.ready)


def descendants(pid: int) -> dict[int, str]:
    """Processes below `pid`: their pid and command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = commands.get(child, "")
                frontier.append(child)
    return found


def test_redis_killed_mid_run_the_run_completes_and_the_report_says_so(tmp_path: Path) -> None:
    with redis_server_or_skip():
        pass
    run_dir = tmp_path / "run"
    locust = subprocess.Popen(
        locust_command(run_dir, "gateway.shared_state=redis", "checks.max_shared_state_lost_s=0", seconds=8),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        redis_pid = None
        while redis_pid is None and time.monotonic() < deadline:
            redis_pid = next((p for p, cmd in descendants(locust.pid).items() if "redis-server" in cmd), None)
            time.sleep(0.2)
        assert redis_pid is not None, "the embedded stack started no redis-server"
        time.sleep(3)  # load is running through the replicas
        os.kill(redis_pid, signal.SIGKILL)
        _, stderr = locust.communicate(timeout=90)
    finally:
        if locust.poll() is None:
            locust.kill()
    assert locust.returncode == 3, stderr[-2000:]  # the check on Redis's loss failed the run
    records = read_records(run_dir / "records.csv")
    assert records and all(r["status"] in (200, 429) for r in records)  # no 5xx: the gateway failed open
    summary = json.loads((run_dir / "summary.json").read_text())
    lost = summary["run"]["shared_state_lost"]
    assert lost["losses"] >= 1 and lost["fallbacks"] > 0
    assert 0 < lost["lost_s"] == summary["run"]["shared_state_lost_s"]
    app = lost["by_app"]["app"]
    assert app["x_limit"] == app["peak_tokens_60s"] / 10_000 > 0
    # the token-limit finding says the limit held per replica for those seconds, and by how much the app got over
    opening = summary["verdict"][0]
    assert f"except for {lost['lost_s']:,.0f} s without Redis" in opening
    assert f"the limit was enforced per replica: app app got up to {app['peak_tokens_60s']:,.0f} tokens" in opening
    info = json.loads((run_dir / "run.json").read_text())
    assert any(c.startswith("check max_shared_state_lost_s: FAILED") for c in info["checks"])
    assert "Shared state lost" in (run_dir / "report.html").read_text()


def test_an_existing_redis_is_used_under_keys_of_the_run(serve_stack) -> None:
    with redis_server_or_skip() as url:
        scenario = f"""
backends: [{{name: east, deployments: {{gpt-4o: {{tpm: 1000000, latency: {{ttft: 0, per_token: 0}}}}}}}}]
gateway: {{replicas: 2, shared_state: redis, redis_url: "{url}", token_limit: {{tokens-per-minute: 100000}}}}
"""
        stack = serve_stack(scenario, only=None)
        assert all(line["role"] != "redis" for line in stack.ready)  # none started: the given one is used
        assert chat(stack.ready[-1]["url"]).status_code == 200
        keys = redis.Redis.from_url(url, decode_responses=True).keys("harness:*")
        assert keys and len({key.split(":")[1] for key in keys}) == 1  # one run, one prefix
        assert stack.stop() == 0


def test_a_redis_url_that_does_not_answer_is_one_line_at_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    scenario = tmp_path / "s.yaml"
    scenario.write_text(BREAKER % "redis" + "  redis_url: redis://127.0.0.1:1/0\n")
    ready = tmp_path / "ready"
    code = main(["serve", "--scenario", str(scenario), "--ready-file", str(ready)])
    error = capsys.readouterr().err
    assert code == 2 and not ready.exists()
    assert error.count("\n") == 1 and "gateway.redis_url: redis://127.0.0.1:1/0 does not answer" in error
