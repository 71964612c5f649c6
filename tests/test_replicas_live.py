"""`harness serve` with `gateway.replicas`: one gateway process per port, each with its own counters (APIM's
units), or sharing them on a real redis-server with `gateway.shared_state: redis`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from harness.records import read_records

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))
API = "?api-version=2024-10-21"
SCENARIO = """
backends: [{name: east, deployments: {gpt-4o: {tpm: 1000000, latency: {ttft: 0, per_token: 0}}}}]
gateway:
  replicas: 3
  token_limit: {counter-key: ip, tokens-per-minute: 200}
"""


def chat(url: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 3}
    return httpx.post(f"{url}/openai/deployments/gpt-4o/chat/completions{API}", json=body, timeout=10)


def admitted_until_refused(url: str) -> int:
    for sent in range(1, 50):
        if chat(url).status_code == 429:
            return sent - 1
    raise AssertionError(f"{url} never refused")


def test_each_replica_listens_on_its_own_port_and_counts_on_its_own(serve_stack) -> None:
    stack = serve_stack(SCENARIO, only=None)
    gateways = [line for line in stack.ready if line["role"] == "gateway"]
    assert [(g["name"], g["replica"]) for g in gateways] == [("gateway-0", 0), ("gateway-1", 1), ("gateway-2", 2)]
    assert len({g["url"] for g in gateways}) == 3
    for i, gateway in enumerate(gateways):
        assert chat(gateway["url"]).headers["x-gateway-replica"] == str(i)
    # the caller used up replica 0's window; replicas 1 and 2 still admit it: per-gateway counters
    first = admitted_until_refused(gateways[0]["url"])
    assert first >= 1
    assert admitted_until_refused(gateways[1]["url"]) == first
    assert chat(gateways[2]["url"]).status_code == 200
    assert stack.stop() == 0
    rows = [row for row in stack.log_rows("gateway.jsonl") if row.get("kind") == "request"]
    assert {row["replica"] for row in rows} == {"0", "1", "2"}


def locust_command(run_dir: Path, *overrides: str, seconds: int = 6) -> list[str]:
    """A headless Locust run of the shipped gateway-replicas scenario against its embedded stack."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    sets = [arg for value in ("run.time_scale=30", *overrides) for arg in ("--set", value)]
    return [
        LOCUST, "-f", str(ROOT / "locustfiles" / "gateway.py"), "--headless", "-u", "6", "-r", "6", "-t", f"{seconds}s",
        "--scenario", str(ROOT / "scenarios" / "gateway-replicas.yaml"), *sets, "--run-dir", str(run_dir),
        "--only-summary",
    ]  # fmt: skip


def locust_run(run_dir: Path, *overrides: str) -> list[dict]:
    """The records of a finished `locust_command` run."""
    result = subprocess.run(locust_command(run_dir, *overrides), capture_output=True, text=True, timeout=90)
    assert result.returncode in (0, 3), result.stderr[-2000:]  # 3: a check failed, not a crash
    return read_records(run_dir / "records.csv")


def tokens_per_minute(run_dir: Path, records: list[dict]) -> float:
    minutes = json.loads((run_dir / "run.json").read_text())["scenario_seconds"] / 60
    return sum(r["usage_total"] for r in records if r["status"] == 200) / minutes


def test_locust_users_spread_round_robin_over_the_replicas(tmp_path: Path) -> None:
    records = locust_run(tmp_path / "rr")
    by_user: dict[str, set[str]] = {}
    for r in records:
        by_user.setdefault(r["user"], set()).add(r["replica"])
    shares = Counter(r["replica"] for r in records)
    assert set(shares) == {"0", "1", "2"}
    assert all(replicas == {"0", "1", "2"} for replicas in by_user.values())  # every user over every replica
    assert min(shares.values()) > 0.25 * len(records)
    # per-gateway counters: the app gets about 3 times its 10,000 tokens per minute through, as simulated
    assert tokens_per_minute(tmp_path / "rr", records) == pytest.approx(30_000, rel=0.15)
    opening = json.loads((tmp_path / "rr" / "summary.json").read_text())["verdict"][0]
    assert "through 3 gateway replicas, each counting on its own" in opening


def test_three_replicas_sharing_state_on_redis_hold_the_app_within_ten_percent_of_its_limit(tmp_path: Path) -> None:
    records = locust_run(tmp_path / "redis", "gateway.shared_state=redis")
    rate = tokens_per_minute(tmp_path / "redis", records)
    assert rate == pytest.approx(10_000, rel=0.10)
    opening = json.loads((tmp_path / "redis" / "summary.json").read_text())["verdict"][0]
    assert f"App app got {rate:,.0f} tokens per scenario minute through" in opening
    assert "(10,000 tokens per minute per appid, through 3 gateway replicas sharing their counters (redis))" in opening
    assert {r["replica"] for r in records} == {"0", "1", "2"}  # spread over three processes all the same
    assert Counter(r["error_kind"] for r in records)["gateway_token_limit"] > 0


def test_sticky_spread_keeps_each_locust_user_on_one_replica(tmp_path: Path) -> None:
    records = locust_run(tmp_path / "sticky", "gateway.spread=sticky")
    by_user: dict[str, set[str]] = {}
    for r in records:
        by_user.setdefault(r["user"], set()).add(r["replica"])
    assert len(by_user) == 6 and all(len(replicas) == 1 for replicas in by_user.values())
    assert set().union(*by_user.values()) == {"0", "1", "2"}


def test_a_replica_that_dies_stops_the_stack_with_one_line(serve_stack) -> None:
    stack = serve_stack(SCENARIO, only=None)
    replica = next(line for line in stack.ready if line.get("replica") == 1)
    os.kill(replica["pid"], signal.SIGKILL)
    assert stack.proc.wait(timeout=30) == 2
    lines = stack.stderr.strip().splitlines()
    assert lines[-1] == "harness serve: error: gateway replica 1 exited with code -9"
    others = [line["pid"] for line in stack.ready if line.get("replica") in (0, 2)]
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in others) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in others)  # the other replicas stopped with it
