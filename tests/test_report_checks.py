"""`checks:` verdicts and the console table, both read from the report's summary (the one source of numbers)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_report_metrics import expected_summary, write_synthetic_run

from harness.report.checks import CHECKED_NUMBERS, checked_number, evaluate_checks
from harness.report.console import format_console_summary
from harness.report.load import load_run
from harness.report.summary.build import summarize
from harness.scenario.checks import Checks


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summarize()'s summary, the independent computation) of the synthetic run."""
    run_dir = tmp_path_factory.mktemp("run")
    records = write_synthetic_run(run_dir)
    return summarize(load_run(run_dir)), expected_summary(records)


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def console_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        name, sep, value = line.partition("  ")
        if sep and value.strip():
            rows[name.strip()] = value.strip()
    return rows


def test_every_check_is_mapped_and_its_description_names_its_number() -> None:
    assert set(CHECKED_NUMBERS) == set(Checks.model_fields)
    for name, path in CHECKED_NUMBERS.items():
        description = Checks.model_fields[name].description or ""
        assert f"summary.json {'.'.join(path)}" in description, name


@pytest.mark.parametrize("name", list(CHECKED_NUMBERS))
def test_each_check_passes_at_its_limit_fails_beyond_it_and_fails_unmeasured(name: str) -> None:
    path = CHECKED_NUMBERS[name]
    value, step = (40, 1) if name == "min_requests" else (0.4, 0.1)
    summary = nested(path, value)
    is_max = name.startswith("max_")
    beyond, within = (value - step, value + step) if is_max else (value + step, value - step)
    for limit, passed in ((value, True), (within, True), (beyond, False)):
        [result] = evaluate_checks(Checks(**{name: limit}), summary)
        assert (result.name, result.actual, result.passed) == (name, value, passed)
    [result] = evaluate_checks(Checks(**{name: beyond}), summary)
    assert result.describe() == f"check {name}: FAILED: actual {value:g}, limit {beyond:g} (off by {step:g})"
    for unmeasured in (nested(path, None), {}):
        [result] = evaluate_checks(Checks(**{name: within}), unmeasured)
        assert result.actual is None and not result.passed
        assert result.describe() == f"check {name}: FAILED (actual n/a, limit {within:g})"


def test_checks_read_the_numbers_summarize_computes(synthetic: Any) -> None:
    summary, expected = synthetic
    for name, path in CHECKED_NUMBERS.items():
        independent: Any = expected
        for key in path:
            independent = independent[key]
        assert independent is not None, name
        assert checked_number(summary, name) == pytest.approx(independent, rel=1e-9, abs=1e-6), name
    # min_requests counts finished requests only, and the synthetic run has unfinished ones
    assert expected["requests"]["unfinished"] > 0


def test_no_set_check_means_no_verdict_and_a_failed_one_says_by_how_much() -> None:
    summary = nested(CHECKED_NUMBERS["max_p95_latency_s"], 12.0) | {"throughput": {"goodput_tpm": 60.0}}
    results = {r.name: r for r in evaluate_checks(Checks(max_p95_latency_s=10, min_goodput_tpm=50), summary)}
    assert results["max_p95_latency_s"].describe() == "check max_p95_latency_s: FAILED: actual 12, limit 10 (off by 2)"
    assert results["min_goodput_tpm"].describe() == "check min_goodput_tpm: ok (actual 60, limit 50)"
    assert evaluate_checks(Checks(), summary) == []


def test_console_table_shows_the_summary_numbers(synthetic: Any) -> None:
    summary, expected = synthetic
    req, e2e, ttft = expected["requests"], expected["end_to_end_latency"], expected["ttft"]["stream"]
    rows = console_rows(format_console_summary(summary))
    assert rows["requests (logical)"] == (
        f"{req['logical']} ({req['attempts']} attempts, {req['unfinished']} unfinished at the end)"
    )
    assert rows["client-visible failures"] == f"{req['failed']} ({req['client_failure_rate'] * 100:.1f} %)"
    outcomes = {k: f"{n} ({n / req['attempts'] * 100:.1f} %)" for k, n in req["attempt_outcomes"].items()}
    assert rows["429/403/503 by source"] == (
        f"429 gateway token limit {outcomes['gateway_token_limit']}, 403 gateway quota {outcomes['gateway_quota']}, "
        f"429 from a backend {outcomes['backend_429']}, 503 breaker open {outcomes['breaker_open']}"
    )
    assert rows["retries per request"] == f"{expected['retries']['per_request']:.2f}"
    assert rows["goodput"] == f"{expected['throughput']['goodput_tpm']:,.0f} tokens/min (scenario time)"
    assert rows["latency p50 / p95 (end to end)"] == f"{e2e['p50']:.3f} s / {e2e['p95']:.3f} s"
    assert rows["TTFT p50 / p95 (streams)"] == f"{ttft['p50']:.3f} s / {ttft['p95']:.3f} s"
    assert rows["client profile(s)"] == "openai-python, openai-python-legacy"
    assert rows["scenario time"] == f"{expected['run']['duration_s']:.3f} s at time scale 10"
    assert rows["cut short"] == "60.0 s of planned scenario time did not run"
    assert rows["shared state"].startswith(
        "Redis stopped answering 3 time(s) (replica(s) 0, 1) for 210 s; 60 decisions"
    )


def test_console_table_without_unfinished_or_measurable_numbers(synthetic: Any) -> None:
    summary = copy.deepcopy(synthetic[0])
    summary["requests"].update(
        unfinished=0, logical=0, failed=0, client_failure_rate=None,
        attempt_outcomes=dict.fromkeys(summary["requests"]["attempt_outcomes"], 0),
    )  # fmt: skip
    summary["end_to_end_latency"].update(p50=None, p95=None)
    summary["ttft"]["stream"].update(p50=None, p95=None)
    summary["throughput"]["goodput_tpm"] = None
    rows = console_rows(format_console_summary(summary))
    assert rows["requests (logical)"] == f"0 ({summary['requests']['attempts']} attempts)"
    assert rows["client-visible failures"] == "0 (-)"
    assert rows["429/403/503 by source"] == "none"
    assert rows["latency p50 / p95 (end to end)"] == "- / -"
    assert rows["TTFT p50 / p95 (streams)"] == "- / -"
    assert rows["goodput"] == "- tokens/min (scenario time)"
