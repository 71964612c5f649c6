"""Every shipped scenario loads, says what it shows in a top comment block, and names real deployments."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))
EXPECTED = {
    "quickstart",
    "max-tokens-drain",
    "ptu-spillover",
    "token-limit-per-app",
    "breaker-trip-duration",
    "retry-after-day",
    "streaming-accounting",
    "breaker-vs-retry",
}


def test_the_promised_scenarios_ship() -> None:
    assert {p.stem for p in SCENARIOS} >= EXPECTED


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_loads_and_explains_itself(path: Path) -> None:
    scenario = load_scenario(path)
    lines = path.read_text().splitlines()
    header = [line for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]]
    assert len(header) >= 4, "a comment block saying what the scenario shows"
    assert "?" in header[0], "the first line is the question it answers"
    assert scenario.description
    # short enough for CI at a high time scale
    assert scenario.run.duration <= 600


def test_breaker_vs_retry_has_both_arms() -> None:
    path = next(p for p in SCENARIOS if p.stem == "breaker-vs-retry")
    breaker = load_scenario(path)
    retry = load_scenario(path, ["gateway.circuit_breaker=null", "gateway.retry.enabled=true"])
    assert breaker.gateway.circuit_breaker is not None and not breaker.gateway.retry.enabled
    assert retry.gateway.circuit_breaker is None and retry.gateway.retry.enabled


def test_retry_after_day_compares_the_profiles() -> None:
    path = next(p for p in SCENARIOS if p.stem == "retry-after-day")
    scenario = load_scenario(path)
    assert {a.client_profile for a in scenario.workload.apps} == {"openai-python", "openai-python-legacy", "none"}
    assert scenario.backends[0].faults.long_retry_after.seconds == 86400
