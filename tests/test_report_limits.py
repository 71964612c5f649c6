"""A single run's report compares the run with the limits its own scenario sets: its sweep's constraints and
its checks, one sentence after the question's findings."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest

from harness.report import verdict
from harness.report.console import format_console_summary
from harness.report.html import write_report
from harness.report.units import percent
from harness.scenario import Question, load_scenario_text
from harness.sim import simulate

BREAKER = "scenarios/breaker-trip-duration.yaml"


@pytest.fixture(scope="module")
def breaker_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run_dir = simulate(BREAKER, ["run.duration=240"], tmp_path_factory.mktemp("limits") / "run")
    write_report(run_dir)
    return run_dir, json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def test_breaker_trip_duration_says_how_its_run_stands_against_its_own_1_percent(
    breaker_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, summary = breaker_run
    rate = summary["requests"]["rate_429"]
    sentence = summary["verdict"][-1]
    assert sentence.startswith("Against the scenario's own limits with gateway.circuit_breaker.tripDuration=PT30S: ")
    side = "within" if rate <= 0.01 else "beyond"
    shown = percent(rate, 2 if percent(rate) == "1.0 %" else 1)
    assert f"requests.rate_429 was {shown}, {side} the sweep's limit <= 1.0 %." in sentence
    assert html.escape(sentence) in (run_dir / "report.html").read_text(encoding="utf-8")
    assert "the sweep's limit <= 1.0 %" in " ".join(format_console_summary(summary).split())  # wrapped lines joined


CHECKED = """
checks: {max_failure_rate: 0.05, min_goodput_tpm: 1000}
sweep:
  parameters: {run.seed: [1, 2]}
  constraints: ["requests.rate_429<=0.01", "backends.ptu.token_share>=0.2"]
"""


def summary_with(rate_429: float, failure: float | None, goodput: float, share: float | None) -> dict[str, Any]:
    backends = {} if share is None else {"ptu": {"token_share": share}}
    return {
        "requests": {"rate_429": rate_429, "client_failure_rate": failure},
        "throughput": {"goodput_tpm": goodput},
        "backends": backends,
    }


def test_each_constraint_and_check_is_held_or_broken_with_the_runs_number() -> None:
    scenario = load_scenario_text(CHECKED)
    held = verdict.limits(summary_with(0.004, 0.0, 2500.0, 0.35), scenario, {"run": {"seed": 2}})
    assert held == (
        "Against the scenario's own limits with run.seed=2: requests.rate_429 was 0.4 %, within the sweep's limit "
        "<= 1.0 %; backends.ptu.token_share was 35.0 %, within the sweep's limit >= 20.0 %; "
        "requests.client_failure_rate was 0.0 %, within check max_failure_rate <= 5.0 %; "
        "throughput.goodput_tpm was 2,500, within check min_goodput_tpm >= 1,000."
    )
    broken = verdict.limits(summary_with(0.02, 0.08, 400.0, None), scenario, {})
    assert broken is not None and broken.startswith("Against the scenario's own limits: ")
    assert "requests.rate_429 was 2.0 %, beyond the sweep's limit <= 1.0 %" in broken
    assert "backends.ptu.token_share was not measured, so the sweep's limit >= 20.0 % is not met" in broken
    assert "requests.client_failure_rate was 8.0 %, beyond check max_failure_rate <= 5.0 %" in broken
    assert "throughput.goodput_tpm was 400, beyond check min_goodput_tpm >= 1,000" in broken


def test_a_scenario_without_limits_gets_no_such_sentence() -> None:
    scenario = load_scenario_text("")
    summary = summary_with(0.5, 0.5, 1.0, None)
    assert verdict.limits(summary, scenario, {}) is None
    question = Question(ask="What does it cost?", answered_by=["cost"])
    assert verdict.verdict({**summary, "cost": None}, question, scenario, {}) == [verdict.cost({"cost": None})]
    with_limits = verdict.verdict({**summary, "cost": None}, question, load_scenario_text(CHECKED), {})
    assert len(with_limits) == 2 and with_limits[1].startswith("Against the scenario's own limits")
