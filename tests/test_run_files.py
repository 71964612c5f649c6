"""One owner for the run directory: every writer (servers and simulator) writes the declared fields, in order."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gateway_helpers import Stack

from harness.records import BACKEND_LOG, BACKEND_LOG_COLUMNS, GATEWAY_LOG, GATEWAY_LOG_COLUMNS, gateway_request_row
from harness.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
BACKEND_FIELDS = [c.name for c in BACKEND_LOG_COLUMNS]
REQUEST_FIELDS = list(gateway_request_row())
BREAKER_FIELDS = ["kind", "t", "t_wall", "backend", "from", "to", "reason", "until", "replica"]


def test_the_simulator_writes_the_declared_rows(tmp_path: Path) -> None:
    run_dir = simulate(str(ROOT / "scenarios" / "breaker-trip-duration.yaml"), ["run.duration=120"], tmp_path / "r")
    backend = [json.loads(line) for line in (run_dir / BACKEND_LOG).read_text().splitlines()]
    gateway = [json.loads(line) for line in (run_dir / GATEWAY_LOG).read_text().splitlines()]
    assert backend and all(list(row) == BACKEND_FIELDS for row in backend)
    requests = [row for row in gateway if row["kind"] == "request"]
    breakers = [row for row in gateway if row["kind"] == "breaker"]
    assert requests and all(list(row) == REQUEST_FIELDS for row in requests)
    assert breakers and all(list(row) == BREAKER_FIELDS for row in breakers)


async def test_the_servers_write_the_declared_rows(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        "backends: [{name: east, deployments: {gpt-4o: {tpm: 1000, latency: {ttft: 0, per_token: 0}}}}]\n"
        "gateway: {circuit_breaker: {failureCondition: {count: 1}, tripDuration: PT10S}}\n"
    )
    for _ in range(3):
        await stack.chat()
    assert all(list(row) == BACKEND_FIELDS for row in stack.backend_log.rows)
    assert [list(row) for row in stack.requests()] == [REQUEST_FIELDS] * 3
    assert [list(row) for row in stack.breaker_rows()] == [BREAKER_FIELDS]


def test_every_declared_field_has_a_known_kind_and_a_description() -> None:
    for column in (*BACKEND_LOG_COLUMNS, *GATEWAY_LOG_COLUMNS):
        assert column.kind in ("str", "int", "float", "bool", "list") and column.description
    with pytest.raises(TypeError, match="not a field of this log: colour"):
        gateway_request_row(colour="blue")
