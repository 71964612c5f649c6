"""Token metrics: Prometheus counters by dimension, and the same numbers as log rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway_helpers import gateway_stack
from prometheus_client.parser import text_string_to_metric_families

from harness.clock import VirtualClock
from harness.compact_json import to_text
from harness.gateway.log import GatewayLog
from harness.gateway.metrics import TokenMetrics


def _samples(metrics: TokenMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counters_split_by_dimensions_including_the_backend_and_a_header() -> None:
    metrics = TokenMetrics(["app_id", "backend", "header:x-team"], VirtualClock(5))
    metrics.record({"app_id": "a", "backend": "east", "header:x-team": "blue"}, prompt=10, completion=5)
    metrics.record({"app_id": "a", "backend": "east", "header:x-team": "blue"}, prompt=1, completion=2)
    metrics.record({"app_id": "a", "backend": "west", "header:x-team": "blue"}, prompt=7, completion=0)
    samples = _samples(metrics)
    east = (("app_id", "a"), ("backend", "east"), ("header_x_team", "blue"))
    west = (("app_id", "a"), ("backend", "west"), ("header_x_team", "blue"))
    assert samples[("gateway_prompt_tokens_total", east)] == 11
    assert samples[("gateway_completion_tokens_total", east)] == 7
    assert samples[("gateway_total_tokens_total", east)] == 18
    assert samples[("gateway_total_tokens_total", west)] == 7
    rows = metrics.drain()
    assert len(rows) == 6  # three metrics for each of two sets of dimension values
    assert rows[2] == {
        "kind": "metric",
        "t": 5.0,
        "t_wall": 5.0,
        "name": "total_tokens",
        "value": 18,
        "requests": 2,
        "dimensions": {"app_id": "a", "backend": "east", "header:x-team": "blue"},
    }
    assert metrics.drain() == []  # each drain reports only what came since the last one
    metrics.record({"app_id": "a", "backend": "west", "header:x-team": "blue"}, prompt=1, completion=1)
    assert [r["value"] for r in metrics.drain()] == [1, 1, 2]
    assert _samples(metrics)[("gateway_total_tokens_total", west)] == 9


def test_each_gateway_has_its_own_registry() -> None:
    one = TokenMetrics(["model"], VirtualClock())
    two = TokenMetrics(["model"], VirtualClock())
    one.record({"model": "m"}, 3, 4)
    assert b"gateway_prompt_tokens_total" not in two.exposition().split(b"# TYPE")[-1] or not _samples(two)


def test_series_beyond_the_cap_move_to_other_keeping_totals_exact_and_counters_monotonic() -> None:
    metrics = TokenMetrics(["app_id", "backend"], VirtualClock(), max_series=100)
    for i in range(50_000):
        metrics.record({"app_id": f"app-{i}", "backend": f"b{i % 2}"}, prompt=1, completion=1)
    before = _samples(metrics)
    metrics.record({"app_id": "app-49900", "backend": "b0"}, prompt=5, completion=0)  # now the most recent
    metrics.record({"app_id": "app-new", "backend": "b1"}, prompt=1, completion=0)  # app-49901 moves to other
    samples = _samples(metrics)
    apps = {dict(labels)["app_id"] for name, labels in samples if name == "gateway_prompt_tokens_total"}
    assert len(apps) == 101 and "other" in apps and "app-49900" in apps and "app-new" in apps
    assert "app-49901" not in apps
    assert samples[("gateway_prompt_tokens_total", (("app_id", "app-49900"), ("backend", "b0")))] == 6
    # `other` keeps the non-caller dimensions, and holds every token of the callers moved there
    other_b1 = ("gateway_prompt_tokens_total", (("app_id", "other"), ("backend", "b1")))
    assert samples[other_b1] == before[other_b1] + 1  # app-49901's token joined it
    prompt_total = sum(v for (name, _), v in samples.items() if name == "gateway_prompt_tokens_total")
    assert prompt_total == 50_000 + 5 + 1  # nothing is lost from the totals
    # no series ever falls: a scrape's counters are >= the previous scrape's for every label set still shown
    assert all(samples.get(key, value) >= value for key, value in before.items())
    assert samples[("gateway_metric_series_evicted_total", ())] == 50_001 - 100
    assert len(metrics.exposition()) < 101 * 3 * 100 + 2_000  # ~100 bytes a line, three metrics a series
    # the log still gets every request's tokens
    assert sum(r["value"] for r in metrics.drain() if r["name"] == "total_tokens") == 2 * 50_000 + 5 + 1


def test_without_a_caller_dimension_a_set_moved_out_and_back_is_one_sample_that_only_grows() -> None:
    metrics = TokenMetrics(["model", "backend"], VirtualClock(), max_series=1)
    a, b = {"model": "m", "backend": "a"}, {"model": "m", "backend": "b"}
    seen = []
    for values in (a, b, a, b, a):
        metrics.record(values, prompt=2, completion=1)
        seen.append(_samples(metrics)[("gateway_total_tokens_total", (("backend", "a"), ("model", "m")))])
    assert seen == [3, 3, 6, 6, 9]


THROTTLING = """
backends:
  - name: east
    deployments: {gpt-4o: {tpm: 1000, latency: {ttft: 0, per_token: 0}}}
gateway:
  circuit_breaker: {failureCondition: {count: 1, interval: PT1M}, tripDuration: PT1M}
  token_limit:
    counter-key: header:x-caller
    tokens-per-minute: 100
    token-quota: 300
    token-quota-period: Hourly
"""


def _scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_throttling_by_source_and_show_breakers_and_remaining_quota() -> None:
    stack = gateway_stack(THROTTLING)
    try:
        answers = [
            await stack.chat(headers={"x-caller": "a"}),  # served: 1,000 TPM allow one request per 10 s
            await stack.chat(headers={"x-caller": "b"}),  # the backend's 429 trips east's breaker for a minute
            await stack.chat(headers={"x-caller": "c"}),  # every member tripped: 503
            await stack.chat(headers={"x-caller": "d"}, content="word " * 150),  # > 100 tokens a minute: 429
            await stack.chat(headers={"x-caller": "e"}, content="word " * 400),  # > 300 quota tokens: 403
        ]
        assert [a.status_code for a in answers] == [200, 429, 503, 429, 403]
        served_remaining = int(answers[0].headers["x-ratelimit-remaining-tokens"])
        samples = _scraped((await stack.client.get("/metrics")).text)
        throttled = {labels: value for (name, labels), value in samples.items() if name == "gateway_throttled_total"}
        assert throttled == {
            (("backend", "east"), ("source", "backend_429")): 1,
            (("backend", ""), ("source", "breaker_open")): 1,
            (("backend", ""), ("source", "token_limit")): 1,
            (("backend", ""), ("source", "quota")): 1,
        }
        assert samples[("gateway_requests_total", (("outcome", "ok"),))] == 1
        east = (("backend", "east"),)
        assert samples[("gateway_breaker_open", east)] == 1
        assert samples[("gateway_breaker_open_seconds_remaining", east)] == 60
        assert samples[("gateway_breaker_closes_at_timestamp_seconds", east)] == stack.clock.wall() + 60
        assert samples[("gateway_breaker_trips_total", east)] == 1
        deployment = (("backend", "east"), ("deployment", "gpt-4o"))
        assert samples[("gateway_backend_remaining_tokens", deployment)] == served_remaining
        assert samples[("gateway_backend_remaining_requests", deployment)] == 0
        remaining = {
            dict(labels)["counter_key"]: value
            for (name, labels), value in samples.items()
            if name == "gateway_rate_limit_key_remaining_tokens"
        }
        a_used = stack.requests()[0]["total_tokens"]
        assert remaining["a"] == 100 - a_used
        assert set(remaining) == set("abc")  # d and e were refused by the token limit: they left no state
        assert samples[("gateway_rate_limit_keys", ())] == 3

        stack.clock.advance(61)
        samples = _scraped((await stack.client.get("/metrics")).text)
        assert samples[("gateway_breaker_open", east)] == 0
        assert samples[("gateway_breaker_closes_at_timestamp_seconds", east)] == 0
    finally:
        await stack.aclose()


def test_metric_lines_are_the_json_of_the_metric_rows() -> None:
    one, two = (TokenMetrics(["model", "app_id", "header:x-team"], VirtualClock(5.123456789)) for _ in range(2))
    for metrics in (one, two):
        metrics.record({"model": "gpt-4o", "app_id": 'quote" \u00e9\n'}, prompt=10, completion=5)
        metrics.record({"model": "gpt-4o", "app_id": "b"}, prompt=3, completion=0)
        metrics.record({"model": "gpt-4o", "app_id": "b"}, prompt=0, completion=4)
    lines = list(one.drain_lines())
    rows = two.drain()
    assert lines == [to_text(row) for row in rows]  # what the log writes of a row, byte for byte
    assert [json.loads(line) for line in lines] == rows
    assert len(lines) == 6 and list(one.drain_lines()) == []


async def test_the_log_writes_drained_rows_in_slices_in_order(tmp_path: Path) -> None:
    metrics = TokenMetrics(["app_id"], VirtualClock(1))
    log = GatewayLog(tmp_path / "gateway.jsonl")
    log.add_source(metrics.drain, metrics.drain_lines)
    for i in range(1_000):  # many slices of rows, metric and request
        metrics.record({"app_id": f"app-{i}"}, prompt=i, completion=1)
        log.write({"kind": "request", "i": i})
    await log._flush_in_slices()
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "gateway.jsonl").read_text().splitlines()]
    assert [r["i"] for r in rows if r["kind"] == "request"] == list(range(1_000))
    prompts = [r for r in rows if r["kind"] == "metric" and r["name"] == "prompt_tokens"]
    assert [r["value"] for r in prompts] == list(range(1_000))
    assert metrics.drain() == []


LATENCY = """
backends:
  - name: east
    deployments: {gpt-4o: {tpm: 10000000, latency: {ttft: 2.0, per_token: 0}}}
gateway:
  token_limit: {counter-key: header:x-caller, tokens-per-minute: 100}
"""


async def test_latency_histograms_split_gateway_added_from_backend_time() -> None:
    stack = gateway_stack(LATENCY)
    try:
        served = await stack.chat(headers={"x-caller": "a"})  # the backend takes 2 scenario s
        refused = await stack.chat(headers={"x-caller": "b"}, content="word " * 150)  # > 100 tokens: the gateway's 429
        assert (served.status_code, refused.status_code) == (200, 429)
        samples = _scraped((await stack.client.get("/metrics")).text)
    finally:
        await stack.aclose()
    deployment = (("deployment", "gpt-4o"),)
    # both answers passed through the gateway; only the served one reached a backend
    assert samples[("gateway_added_duration_seconds_count", deployment)] == 2
    assert samples[("gateway_added_duration_seconds_sum", deployment)] == 0  # no scenario time passed in the gateway
    assert samples[("gateway_backend_duration_seconds_count", deployment)] == 1
    assert samples[("gateway_backend_duration_seconds_sum", deployment)] == pytest.approx(2.0)
    backend_buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "gateway_backend_duration_seconds_bucket"
    }
    assert backend_buckets["1.0"] == 0 and backend_buckets["2.5"] == 1 and backend_buckets["+Inf"] == 1
    assert samples[("gateway_time_scale", ())] == 1
