"""The `gateway` scenario section: APIM field names, ISO 8601 durations, defaults, one-line errors with paths."""

from __future__ import annotations

import pytest

from harness.errors import ScenarioError
from harness.scenario import load_scenario_text

TWO_BACKENDS = "backends: [{name: east}, {name: west}]\n"


def test_defaults_put_every_backend_in_the_pool_without_breaker_or_limit() -> None:
    scenario = load_scenario_text(TWO_BACKENDS)
    gateway = scenario.gateway
    members = gateway.pool_members(b.name for b in scenario.backends)
    assert [(m.backend, m.priority, m.weight) for m in members] == [("east", 1, 1), ("west", 1, 1)]
    assert gateway.circuit_breaker is None and gateway.token_limit is None
    assert gateway.retry.enabled is False and gateway.apim_compat is False
    assert gateway.all_tripped_response == 503


def test_apim_names_and_iso_durations_are_read() -> None:
    scenario = load_scenario_text(
        TWO_BACKENDS
        + """
gateway:
  pool: {members: [{backend: east, priority: 1}, {backend: west, priority: 2, weight: 3}], selection: latency}
  circuit_breaker:
    failureCondition: {percentage: 50, interval: PT2M, statusCodeRanges: [{min: 500, max: 599}], errorReasons: [x]}
    tripDuration: PT30S
    acceptRetryAfter: true
  token_limit:
    counter-key: header:x-team
    tokens-per-minute: 1000
    token-quota: 50000
    token-quota-period: Daily
    estimate-prompt-tokens: false
    retry-after-header-name: x-wait
    remaining-tokens-header-name: x-left
    remaining-quota-tokens-header-name: x-quota-left
    tokens-consumed-header-name: x-used
  metrics: {dimensions: [model, backend, header:x-team]}
  timeout: PT10S
"""
    )
    g = scenario.gateway
    assert g.pool.selection == "latency" and g.pool.members[1].weight == 3
    assert g.circuit_breaker is not None
    assert g.circuit_breaker.failureCondition.interval == 120.0
    assert g.circuit_breaker.failureCondition.percentage == 50 and g.circuit_breaker.failureCondition.count is None
    assert g.circuit_breaker.tripDuration == 30.0 and g.circuit_breaker.acceptRetryAfter
    tl = g.token_limit
    assert tl is not None
    assert (tl.counter_key, tl.tokens_per_minute, tl.token_quota, tl.token_quota_period) == (
        "header:x-team",
        1000,
        50000,
        "Daily",
    )
    assert not tl.estimate_prompt_tokens
    assert (tl.retry_after_header_name, tl.remaining_tokens_header_name) == ("x-wait", "x-left")
    assert (tl.remaining_quota_tokens_header_name, tl.tokens_consumed_header_name) == ("x-quota-left", "x-used")
    assert g.timeout == 10.0


def test_breaker_defaults_to_count_one_on_429() -> None:
    g = load_scenario_text("gateway: {circuit_breaker: {}}").gateway
    assert g.circuit_breaker is not None
    condition = g.circuit_breaker.failureCondition
    assert condition.count == 1 and condition.matches(429) and not condition.matches(500)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TWO_BACKENDS + "gateway: {pool: {members: [{backend: east}, {backend: west}, {backend: north}]}}",
            "gateway.pool.members[2].backend: no backend named 'north' (known: east, west)",
        ),
        (
            TWO_BACKENDS + "gateway: {pool: {members: [{backend: east}, {backend: east, priority: 2}]}}",
            "gateway.pool.members[1].backend: 'east' is also members[0]",
        ),
        (
            "gateway: {pool: {members: [{backend: aoai-0, priority: 0}]}}",
            "gateway.pool.members[0].priority: must be >= 1",
        ),
        (
            "gateway: {pool: {members: [" + ", ".join(["{backend: aoai-0}"] * 31) + "]}}",
            "gateway.pool.members: allows at most 30 item(s)",
        ),
        (
            "gateway: {circuit_breaker: {failureCondition: {count: 2, percentage: 10}}}",
            "gateway.circuit_breaker.failureCondition.percentage: set either count or percentage, not both",
        ),
        (
            "gateway: {circuit_breaker: {tripDuration: soon}}",
            "gateway.circuit_breaker.tripDuration: 'soon' is not a duration (use ISO 8601 such as PT1M, or seconds)",
        ),
        (
            "gateway: {circuit_breaker: {failureCondition: {statusCodeRanges: [{min: 500, max: 499}]}}}",
            "gateway.circuit_breaker.failureCondition.statusCodeRanges[0].max: must be >= min (500)",
        ),
        (
            "gateway: {token_limit: {counter-key: cookie}}",
            "gateway.token_limit.counter-key: 'cookie' is not a counter key (appid, subscription, ip, header:<name>, "
            "constant:<text>, or several joined by +)",
        ),
        (
            "gateway: {token_limit: {}}",
            "gateway.token_limit.tokens-per-minute: set tokens-per-minute, token-quota or both",
        ),
        (
            "gateway: {token_limit: {tokens-per-minute: 5, token-quota-period: Fortnightly}}",
            "gateway.token_limit.token-quota-period: must be one of 'Hourly', 'Daily', 'Weekly', 'Monthly' or 'Yearly'",
        ),
        (
            "gateway: {token_limit: {tokens-per-minute: 5, tokens-per-hour: 9}}",
            "gateway.token_limit.tokens-per-hour: unknown field",
        ),
        (
            "gateway: {metrics: {dimensions: [model, app_id, client_ip, backend, region, streaming, deployment, "
            "operation, status, subscription, header:x-a]}}",
            "gateway.metrics.dimensions: allows at most 10 item(s)",
        ),
        ("gateway: {all_tripped_response: 500}", "gateway.all_tripped_response: must be one of 503 or 429"),
        ("gateway: {retry: {max_attempts: 0}}", "gateway.retry.max_attempts: must be >= 1"),
        (
            "gateway: {auth: {subscriptions: [{id: a, key: ''}]}}",
            "gateway.auth.subscriptions[0].key: must not be empty",
        ),
        (
            "gateway: {auth: {subscriptions: [{id: a, key: k}, {id: b, key: k}]}}",
            "gateway.auth.subscriptions[1].key: is the key of another subscription",
        ),
        (
            "gateway: {auth: {jwt: {issuers: [x]}}}",
            "gateway.auth.jwt.jwks-file: set exactly one of jwks-file, jwks-url or signing-secret",
        ),
        (
            "gateway: {token_limit: {tokens-per-minute: 10, counter-key: 'header:Api-Key'}}",
            "gateway.token_limit.counter-key: 'header:Api-Key' carries a secret: use subscription (the subscription's id) or appid instead",
        ),
    ],
)
def test_invalid_gateway_sections_fail_in_one_line_naming_the_path(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
