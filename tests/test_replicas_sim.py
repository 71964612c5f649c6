"""Gateway replicas in the simulator: per-gateway counters and breakers (APIM) against shared state.

Every run is a real `simulate` of the shipped `gateway-replicas` scenario (or a breaker scenario) with
overrides: no sockets, no sleeps, about a second each.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.records import read_records
from harness.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = str(ROOT / "scenarios" / "gateway-replicas.yaml")
BREAKER = str(ROOT / "scenarios" / "breaker-trip-duration.yaml")
LIMIT = 10_000  # the scenario's tokens-per-minute per appid
MINUTES = 5


def tokens_per_minute(tmp_path: Path, *overrides: str) -> tuple[float, list[dict]]:
    """Tokens the app got through per minute over a 5-minute run, and its records."""
    run_dir = simulate(REPLICAS, [f"run.duration={MINUTES * 60}", *overrides], tmp_path / "_".join(overrides))
    records = read_records(run_dir / "records.csv")
    served = sum(r["usage_total"] for r in records if r["status"] == 200)
    return served / MINUTES, records


def test_one_replica_holds_the_app_to_its_limit(tmp_path: Path) -> None:
    rate, records = tokens_per_minute(tmp_path, "gateway.replicas=1")
    assert rate == pytest.approx(LIMIT, rel=0.10)
    assert {r["replica"] for r in records} == {None}  # one gateway: no replica header
    assert Counter(r["error_kind"] for r in records)["gateway_token_limit"] > 0


def test_three_replicas_with_per_gateway_counters_let_the_app_through_at_three_times_its_limit(
    tmp_path: Path,
) -> None:
    rate, records = tokens_per_minute(tmp_path, "gateway.shared_state=none")
    assert rate == pytest.approx(3 * LIMIT, rel=0.15)
    # round-robin: every replica answered about a third of the attempts
    shares = Counter(r["replica"] for r in records)
    assert set(shares) == {"0", "1", "2"}
    assert max(shares.values()) - min(shares.values()) <= 1


def test_three_replicas_sharing_state_hold_the_app_within_ten_percent_of_its_limit(tmp_path: Path) -> None:
    rate, records = tokens_per_minute(tmp_path, "gateway.shared_state=redis")
    assert rate == pytest.approx(LIMIT, rel=0.10)
    assert {r["replica"] for r in records} == {"0", "1", "2"}


def test_sticky_spread_sends_each_user_to_one_replica_and_logs_name_it(tmp_path: Path) -> None:
    _, records = tokens_per_minute(tmp_path, "gateway.spread=sticky")
    by_user: dict[str, set[str]] = {}
    for r in records:
        by_user.setdefault(r["user"], set()).add(r["replica"])
    assert len(by_user) == 12 and all(len(replicas) == 1 for replicas in by_user.values())
    assert {next(iter(s)) for s in by_user.values()} == {"0", "1", "2"}
    log_dir = tmp_path / "gateway.spread=sticky"
    rows = [json.loads(line) for line in (log_dir / "gateway.jsonl").read_text().splitlines()]
    logged = {row["gateway_request_id"]: row["replica"] for row in rows if row["kind"] == "request"}
    assert all(logged[r["gateway_request_id"]] == r["replica"] for r in records if r["gateway_request_id"])


def breaker_openings(tmp_path: Path, *overrides: str) -> list[dict]:
    run_dir = simulate(BREAKER, ["run.duration=120", "gateway.replicas=3", *overrides], tmp_path / "_".join(overrides))
    rows = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    return [row for row in rows if row["kind"] == "breaker" and row["to"] == "open"]


def test_per_gateway_breakers_trip_on_each_replica_and_a_shared_one_trips_once(tmp_path: Path) -> None:
    apart = breaker_openings(tmp_path, "gateway.shared_state=none")
    shared = breaker_openings(tmp_path, "gateway.shared_state=redis")
    # each replica learns of the throttled primary on its own 429
    assert {row["replica"] for row in apart} == {"0", "1", "2"}
    # shared: one breaker per member, its transitions not tied to a replica, and fewer trips than replicas apart
    assert shared and {row["replica"] for row in shared} == {None}
    assert len(shared) < len(apart)


def test_bad_replica_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"gateway\.replicas"):
        simulate(REPLICAS, ["gateway.replicas=0"], tmp_path / "a")
    with pytest.raises(HarnessError, match=r"redis_url.*shared_state"):
        simulate(REPLICAS, ["gateway.redis_url=redis://127.0.0.1:6379"], tmp_path / "b")
