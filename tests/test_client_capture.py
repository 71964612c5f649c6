"""Header capture, failure classification and SSE reading."""

from __future__ import annotations

import json

from harness.client import GatewayHeaderNames, SSEParser, StreamStats, capture, classify


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


def test_sse_parser_handles_events_split_anywhere() -> None:
    raw = b'data: {"x": 1}\n\n: keep-alive\n\ndata: {"x": 2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(raw)):
        parser = SSEParser()
        events: list[str] = []
        for i in range(0, len(raw), size):
            events += parser.feed(raw[i : i + size])
        events += parser.close()
        assert events == ['{"x": 1}', '{"x": 2}', "[DONE]"]


def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> str:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    return json.dumps({"choices": choices, "usage": usage})


def test_stream_stats_time_to_first_token_inter_token_and_usage() -> None:
    stats = StreamStats(started=10.0)
    stats.on_event(json.dumps({"choices": [], "prompt_filter_results": []}), 10.1)
    stats.on_event(json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), 10.2)
    stats.on_event(chunk("Hello"), 10.5)
    stats.on_event(chunk(" there"), 10.6)
    stats.on_event(chunk("!"), 10.9)
    stats.on_event(chunk(None, {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}), 10.95)
    assert not stats.done
    stats.on_event("[DONE]", 11.0)
    assert stats.done
    assert stats.ttft == 0.5
    assert abs((stats.mean_inter_token or 0) - 0.2) < 1e-9
    assert stats.text == "Hello there!"
    assert stats.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stream_without_done_is_visible() -> None:
    stats = StreamStats(started=0.0)
    stats.on_event(chunk("a"), 1.0)
    assert not stats.done and stats.usage is None
