"""Header capture and failure classification."""

from __future__ import annotations

from harness.client import GatewayHeaderNames, capture, classify


def test_capture_reads_every_rate_limit_header() -> None:
    fields = capture(
        {
            "retry-after": "7",
            "retry-after-ms": "6500",
            "x-ratelimit-remaining-requests": "49",
            "x-ratelimit-remaining-tokens": "49800",
            "x-ratelimit-limit-requests": "50",
            "x-ratelimit-limit-tokens": "50000",
            "x-ratelimit-reset-requests": "6s",
            "x-ratelimit-reset-tokens": "120ms",
            "policy-id": "DeploymentRatelimit-Token",
            "x-backend": "aoai-1",
            "x-ms-region": "Sweden Central",
            "x-gateway-request-id": "g-1",
            "apim-request-id": "b-1",
            "x-gateway-remaining-tokens": "300",
            "x-gateway-tokens-consumed": "120",
        }
    )
    assert fields == {
        "retry_after_s": 7.0,
        "retry_after_ms": 6500.0,
        "ratelimit_remaining_requests": 49,
        "ratelimit_remaining_tokens": 49800,
        "ratelimit_limit_requests": 50,
        "ratelimit_limit_tokens": 50000,
        "ratelimit_reset_requests": 6.0,
        "ratelimit_reset_tokens": 0.12,
        "policy_id": "DeploymentRatelimit-Token",
        "backend": "aoai-1",
        "region": "Sweden Central",
        "gateway_request_id": "g-1",
        "backend_request_id": "b-1",
        "gateway_remaining_tokens": 300,
        "gateway_tokens_consumed": 120,
    }


def test_capture_follows_custom_gateway_header_names() -> None:
    names = GatewayHeaderNames(remaining_tokens="x-left", retry_after="x-wait")
    assert capture({"x-left": "5", "x-wait": "3"}, names) == {"gateway_remaining_tokens": 5, "retry_after_s": 3.0}


def test_classify_names_the_cause() -> None:
    assert classify(200, {}) == ""
    assert classify(429, {"policy-id": "DeploymentRatelimit-Requests", "x-gateway-request-id": "g"}) == "backend_429"
    assert classify(429, {"x-gateway-remaining-tokens": "0", "x-gateway-request-id": "g"}) == "gateway_token_limit"
    assert classify(403, {"x-gateway-remaining-quota-tokens": "0"}) == "gateway_quota"
    assert classify(503, {"x-gateway-request-id": "g"}) == "breaker_open"
    assert classify(429, {"x-gateway-request-id": "g"}) == "breaker_open"  # all-tripped rewritten to 429
    assert classify(503, {"x-backend": "aoai-0", "x-gateway-request-id": "g"}) == "server_error"
    assert classify(429, {}) == "backend_429"  # straight to AOAI
    assert classify(400, {}) == "client_error"
    # the reference gateway's typed refusal decides, whatever headers its policy names (or leaves out)
    gateway = {"x-gateway-request-id": "g"}
    assert classify(429, {**gateway, "x-gateway-refusal": "token_limit"}) == "gateway_token_limit"
    assert classify(403, {**gateway, "x-gateway-refusal": "quota"}) == "gateway_quota"
    assert classify(429, {**gateway, "x-gateway-refusal": "breaker_open"}) == "breaker_open"
    assert classify(0, {}, error="timeout") == "timeout"
