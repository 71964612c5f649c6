"""In-process: token limit per counter key, quota, estimate-prompt-tokens, streaming counts, token metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from gateway_helpers import INSTANT, Stack, sse_events
from prometheus_client.parser import text_string_to_metric_families

BACKEND = (
    f"backends: [{{name: east, region: eastus, deployments: {{gpt-4o: {{tpm: 10000000, latency: {INSTANT}}}}}}}]\n"
)
HEADERS = (
    "remaining-tokens-header-name: x-remaining, remaining-quota-tokens-header-name: x-quota-left, "
    "tokens-consumed-header-name: x-consumed"
)


def _usage_total(response_json: dict[str, object]) -> int:
    usage = response_json["usage"]
    assert isinstance(usage, dict)
    return int(usage["total_tokens"])


async def test_token_limit_per_app_id_with_headers(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND + f"gateway: {{token_limit: {{counter-key: appid, tokens-per-minute: 200, {HEADERS}}}}}")
    spent = 0
    responses = []
    for _ in range(20):
        response = await stack.chat(app_id="app-a", max_tokens=20)
        responses.append(response)
        if response.status_code != 200:
            break
        spent += _usage_total(response.json())
        assert response.headers["x-consumed"] == str(_usage_total(response.json()))
        assert response.headers["x-remaining"] == str(200 - spent)
    refused = responses[-1]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "429"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-remaining"] == str(max(0, 200 - spent))
    assert "x-backend" not in refused.headers  # refused by the gateway, before any backend
    assert stack.requests()[-1]["outcome"] == "token_limit" and stack.requests()[-1]["counter_key"] == "app-a"
    other = await stack.chat(app_id="app-b", max_tokens=20)
    assert other.status_code == 200  # another app id has its own minute
    stack.clock.advance(60)
    assert (await stack.chat(app_id="app-a", max_tokens=20)).status_code == 200


async def test_custom_retry_after_header_name(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 30, retry-after-header-name: x-wait}}")
    await stack.chat(app_id="a", max_tokens=20)
    refused = await stack.chat(app_id="a", max_tokens=20)
    assert refused.status_code == 429 and "x-wait" in refused.headers and "retry-after" not in refused.headers


async def test_quota_exhausted_answers_403_until_the_period_ends(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        BACKEND + "gateway: {token_limit: {token-quota: 100, token-quota-period: Hourly, "
        "remaining-quota-tokens-header-name: x-quota-left}}"
    )
    stack.clock.advance(600)  # ten minutes into the hour
    statuses = []
    for _ in range(10):
        response = await stack.chat(app_id="a", max_tokens=20)
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
    assert statuses[-1] == 403 and set(statuses[:-1]) == {200}
    assert response.headers["retry-after"] == "3000"
    assert int(response.headers["x-quota-left"]) < 100
    assert stack.requests()[-1]["outcome"] == "quota"
    stack.clock.advance(3000)
    assert (await stack.chat(app_id="a", max_tokens=20)).status_code == 200


async def test_estimate_prompt_tokens_false_lets_a_burst_overshoot_then_blocks(
    make_stack: Callable[[str], Stack],
) -> None:
    # A second of latency keeps the burst's requests in flight together (each waits on the shared virtual clock).
    slow = "backends: [{name: east, deployments: {gpt-4o: {tpm: 10000000, latency: {ttft: 1, per_token: 0}}}}]\n"
    stack = make_stack(
        slow + "gateway: {token_limit: {tokens-per-minute: 100, estimate-prompt-tokens: false, "
        "remaining-tokens-header-name: x-remaining}}"
    )
    burst = await asyncio.gather(*(stack.chat(app_id="a", max_tokens=40) for _ in range(8)))
    assert [r.status_code for r in burst] == [200] * 8
    consumed = sum(_usage_total(r.json()) for r in burst)
    assert consumed > 100  # the burst went past the limit: nothing was charged until usage came back
    blocked = await stack.chat(app_id="a", max_tokens=40)
    assert blocked.status_code == 429 and blocked.headers["x-remaining"] == "0"
    wait = int(blocked.headers["retry-after"])
    assert 50 <= wait <= 60
    stack.clock.advance(wait - 5)
    assert (await stack.chat(app_id="a", max_tokens=40)).status_code == 429  # still blocked until it ages out
    stack.clock.advance(5)
    assert (await stack.chat(app_id="a", max_tokens=40)).status_code == 200


async def test_estimate_prompt_tokens_true_refuses_the_burst_that_would_overshoot(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 100}}")
    long_prompt = "word " * 40  # about 50 prompt tokens: two fit, the third does not
    burst = await asyncio.gather(*(stack.chat(app_id="a", content=long_prompt, max_tokens=1) for _ in range(3)))
    assert sorted(r.status_code for r in burst) == [200, 200, 429]


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streams_are_counted_from_the_usage_chunk_or_the_deltas(
    make_stack: Callable[[str], Stack], include_usage: bool
) -> None:
    stack = make_stack(BACKEND + f"gateway: {{token_limit: {{tokens-per-minute: 100000, {HEADERS}}}}}")
    response = await stack.chat(app_id="a", stream=True, include_usage=include_usage, max_tokens=50)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.content.endswith(b"data: [DONE]\n\n")
    (backend_row,) = stack.backend_log.rows
    (row,) = stack.requests()
    assert row["completion_tokens"] == backend_row["completion_tokens"] > 0
    assert row["tokens_counted_by"] == ("stream_usage" if include_usage else "counted_deltas")
    assert row["prompt_tokens"] == backend_row["prompt_tokens"]
    # Headers leave before the completion exists: tokens-consumed can only say the prompt.
    assert response.headers["x-consumed"] == str(backend_row["prompt_tokens"])
    limiter = stack.gateway.limiter
    assert limiter is not None
    ((key, left, _),) = limiter.remaining_by_key(1)
    assert key == "a" and left == limiter.policy.tokens_per_minute - backend_row["total_tokens"]
    if include_usage:
        assert sse_events(response.content)[-1]["usage"]["completion_tokens"] == backend_row["completion_tokens"]


async def test_apim_compat_undercounts_streamed_completions(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        BACKEND + f"gateway: {{apim_compat: true, token_limit: {{tokens-per-minute: 100000, {HEADERS}}}, "
        "metrics: {dimensions: [streaming]}}"
    )
    streamed = await stack.chat(app_id="a", stream=True, include_usage=True, max_tokens=50)
    plain = await stack.chat(app_id="a", max_tokens=50)
    stream_backend, plain_backend = stack.backend_log.rows
    stream_row, plain_row = stack.requests()
    assert streamed.status_code == 200 and stream_backend["completion_tokens"] > 0
    assert (stream_row["completion_tokens"], stream_row["tokens_counted_by"]) == (0, "apim_compat")
    assert stream_row["total_tokens"] == stream_backend["prompt_tokens"]
    assert plain_row["completion_tokens"] == plain_backend["completion_tokens"]  # non-streamed: counted right
    assert plain.headers["x-consumed"] == str(plain_backend["total_tokens"])
    metric = _metric_values(stack)
    assert metric[("gateway_completion_tokens_total", (("streaming", "true"),))] == 0
    assert metric[("gateway_completion_tokens_total", (("streaming", "false"),))] == plain_backend["completion_tokens"]


def _metric_values(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(stack.gateway.metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics_endpoint_and_log_rows_split_tokens_by_backend_and_app(
    make_stack: Callable[[str], Stack],
) -> None:
    two = (
        f"backends: [{{name: east, region: eastus, deployments: {{gpt-4o: {{latency: {INSTANT}}}}}}}, "
        f"{{name: west, region: westus, deployments: {{gpt-4o: {{latency: {INSTANT}}}}}}}]\n"
    )
    stack = make_stack(two + "gateway: {metrics: {dimensions: [model, app_id, backend, region, client_ip]}}")
    for app in ("a", "a", "b", "b"):
        assert (await stack.chat(app_id=app)).status_code == 200
    scraped = await stack.client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    totals: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "gateway_total_tokens_total":
                assert sample.labels["model"] == "gpt-4o" and sample.labels["client_ip"] == "10.1.2.3"
                totals[(sample.labels["app_id"], sample.labels["backend"])] = sample.value
    expected: dict[tuple[str, str], float] = {}
    for row in stack.requests():
        key = (row["app_id"], row["backend"])
        expected[key] = expected.get(key, 0) + row["total_tokens"]
    assert totals == expected and {backend for _, backend in totals} == {"east", "west"}
    metric_rows = [r for r in stack.rows if r["kind"] == "metric" and r["name"] == "total_tokens"]
    assert sum(r["value"] for r in metric_rows) == sum(totals.values())
    assert {r["dimensions"]["region"] for r in metric_rows} == {"eastus", "westus"}


async def test_streams_are_always_estimated_at_admission(make_stack: Callable[[str], Stack]) -> None:
    # With estimate-prompt-tokens false a plain request is admitted blind, but a stream's prompt is still
    # counted up front (as APIM does): a prompt larger than the whole minute is refused before any backend.
    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 50, estimate-prompt-tokens: false}}")
    long_prompt = "word " * 100
    assert (await stack.chat(app_id="a", content=long_prompt, max_tokens=1, stream=True)).status_code == 429
    assert stack.backend_log.rows == []
    assert (await stack.chat(app_id="b", content=long_prompt, max_tokens=1)).status_code == 200


async def test_refusals_carry_their_typed_kind_and_clients_read_only_that(make_stack: Callable[[str], Stack]) -> None:
    """A client that does not know this policy's header names still tells a token-limit 429 from a backend's
    by the typed refusal header; the message text plays no part."""
    from harness.client import GatewayHeaderNames, classify

    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 30}}")
    ok = await stack.chat(app_id="a", max_tokens=20)
    assert ok.status_code == 200 and "x-gateway-refusal" not in ok.headers  # relayed, not refused
    refused = await stack.chat(app_id="a", max_tokens=20)
    assert refused.status_code == 429 and refused.headers["x-gateway-refusal"] == "token_limit"
    strangers = GatewayHeaderNames(remaining_tokens="x-unknown", remaining_quota="x-unknown-too")
    headers = {k.lower(): v for k, v in refused.headers.items()}
    assert classify(429, headers, names=strangers) == "gateway_token_limit"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_special_token_in_the_prompt_is_plain_text(make_stack: Callable[[str], Stack], stream: bool) -> None:
    """AOAI reads `<|endoftext|>` in a prompt as text: the mock and the gateway (estimating the prompt, as for
    every stream) answer 200 and count it, with and without a usage chunk."""
    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 100000, estimate-prompt-tokens: true}}")
    content = "Summarise this: <|endoftext|> and <|fim_prefix|> are text here."
    for include_usage in (True, False):
        answer = await stack.chat(app_id="a", content=content, stream=stream, include_usage=include_usage)
        assert answer.status_code == 200
        row = stack.requests()[-1]
        assert row["outcome"] == "ok" and row["prompt_tokens"] > 10 and row["total_tokens"] > row["prompt_tokens"]
    assert all(r["status"] == 200 for r in stack.backend_log.rows)
