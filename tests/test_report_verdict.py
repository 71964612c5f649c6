"""The report's opening sentences: one per finding a scenario can name, built from the summary's numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report_metrics import write_synthetic_run

from harness.report import verdict
from harness.report.checks import evaluate_checks
from harness.report.html import write_report
from harness.scenario.checks import Checks
from harness.scenario.question import FINDINGS


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("verdict")
    write_synthetic_run(run_dir)
    write_report(run_dir)
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def test_every_finding_a_scenario_can_name_has_a_sentence() -> None:
    assert set(verdict.FINDINGS) == set(FINDINGS)


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_each_finding_is_one_sentence_with_this_runs_numbers(summary: dict[str, Any], name: str) -> None:
    sentence = verdict.FINDINGS[name](summary)
    assert (sentence[0].isupper() or sentence[0].isdigit()) and sentence.endswith(".")
    assert "None" not in sentence and "nan" not in sentence


def test_findings_quote_the_summary(summary: dict[str, Any]) -> None:
    east = summary["breaker"]["aoai-east"]
    assert f"{east['trips']} times on aoai-east" in verdict.breaker(summary)
    drain = summary["drain"]
    assert f"for {drain['used']:,.0f} used ({drain['charged_per_used']:.1f} times as many)" in verdict.drain(summary)
    legacy = summary["by_client_profile"]["openai-python-legacy"]
    did = legacy["client_did"]
    assert (
        f"Client profile openai-python-legacy: after its {sum(did.values())} throttled attempts it waited out Retry-After "
        f"{did['waited_retry_after']} times" in verdict.by_client_profile(summary)
    )
    lock = summary["lockout"]
    assert verdict.lockout(summary).startswith(f"{lock['with_tokens_free']} of {lock['request_limit_429s']}")


def test_missing_logs_are_said_not_guessed(summary: dict[str, Any]) -> None:
    bare = {**summary, "breaker": None, "drain": None, "chargeback": None, "lockout": None, "cost": None}
    assert "no gateway log" in verdict.breaker(bare)
    assert "no backend log" in verdict.drain(bare)
    assert "needs both" in verdict.chargeback(bare)
    assert "no backend log" in verdict.lockout(bare)
    assert "no cost" in verdict.cost(bare)


def test_a_scenario_without_a_question_opens_with_the_outcomes() -> None:
    synthetic = {
        "requests": {
            "attempts": 4, "failed": 0, "logical": 4, "client_failure_rate": 0.0,
            "attempt_outcomes": {"success": 3, "gateway_token_limit": 1, "gateway_quota": 0, "backend_429": 0,
                                 "breaker_open": 0, "other_error": 0},
        },
        "throughput": {"goodput_tpm": 1200.0},
        "run": {"duration_s": 60.0},
    }  # fmt: skip
    assert verdict.verdict(synthetic, None) == [
        "Of 4 attempts, 75.0 % succeeded (25.0 % got 429 from the gateway token limit); clients saw 0 of 4 finished "
        "requests fail (0.0 %); goodput 1,200 tokens per scenario minute over 60 scenario s."
    ]


def test_report_without_a_question_has_no_question_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "plain"
    write_synthetic_run(run_dir)
    scenario = (run_dir / "scenario.yaml").read_text(encoding="utf-8")
    (run_dir / "scenario.yaml").write_text(scenario.split("question:")[0], encoding="utf-8")
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "<b>Question:</b>" not in page and '<p class="verdict">Of ' in page


def replicas_summary(lost: dict[str, Any] | None) -> dict[str, Any]:
    gateway = {"replicas": 3, "shared_state": "redis", "tokens_per_minute": 10_000, "counter_key": "appid"}
    return {
        "run": {"gateway": gateway, "shared_state_lost": lost},
        "by_app": {"app": {"goodput_tpm": 24_900.0}},
    }


def test_an_overshoot_while_redis_was_lost_is_not_credited_to_sharing() -> None:
    shared = verdict.FINDINGS["token_limit"](replicas_summary(None))
    assert shared.endswith("through 3 gateway replicas sharing their counters (redis)).")
    lost = {
        "losses": 3,
        "replicas": ["0", "1", "2"],
        "fallbacks": 900,
        "lost_s": 42.4,
        "by_app": {"app": {"peak_tokens_60s": 29_100.0, "x_limit": 2.91}},
    }
    sentence = verdict.FINDINGS["token_limit"](replicas_summary(lost))
    assert "sharing their counters (redis) except for 42 s without Redis" in sentence
    assert sentence.endswith(
        "For 42 s Redis was lost and the limit was enforced per replica: app app got up to 29,100 tokens within "
        "60 s, 2.91 x the limit."
    )
    assert "For 42 s Redis was lost" in verdict.shared_state_lost(lost)


def test_a_check_fails_the_run_on_any_loss_of_redis() -> None:
    checks = Checks(max_shared_state_lost_s=0)
    (kept,) = evaluate_checks(checks, {"run": {"shared_state_lost_s": 0.0}})
    (lost,) = evaluate_checks(checks, {"run": {"shared_state_lost_s": 42.4}})
    (unknown,) = evaluate_checks(checks, {"run": {"shared_state_lost_s": None}})
    assert kept.passed and not lost.passed and not unknown.passed
