"""The mock's HTTP surface, in process on a virtual clock: routes, auth, headers, 429s, bodies, log rows."""

from __future__ import annotations

import base64
import json
import math
import struct

import pytest
from mock_helpers import API, ZERO_LATENCY, mock_app

from harness.mock.log import BACKEND_LOG_FIELDS
from harness.tokens import count_prompt_tokens, count_text_tokens

FAST = {"gpt-4o": {"tpm": 50_000, "latency": ZERO_LATENCY}}


async def test_success_headers_start_at_49_of_50_requests_and_echo_the_client_id() -> None:
    async with mock_app(region="Sweden Central", deployments=FAST) as m:
        r = await m.chat(max_tokens=10, headers={"x-ms-client-request-id": "client-1"})
    assert r.status_code == 200
    h = r.headers
    assert h["x-ratelimit-limit-requests"] == "50"
    assert h["x-ratelimit-remaining-requests"] == "49"
    assert h["x-ratelimit-limit-tokens"] == "50000"
    assert h["x-ms-region"] == "Sweden Central"
    assert h["x-ms-client-request-id"] == "client-1"
    assert h["apim-request-id"] == h["x-request-id"] and len(h["apim-request-id"]) == 36
    assert h["azureml-model-session"]
    assert m.log.rows[0]["request_id"] == h["apim-request-id"]
    assert m.log.rows[0]["client_request_id"] == "client-1"


async def test_max_tokens_100_drains_100_plus_prompt_from_remaining_tokens_while_usage_stays_small() -> None:
    deployments = {"gpt-4o": {"tpm": 50_000, "latency": ZERO_LATENCY, "completion_tokens": 12}}
    async with mock_app(deployments=deployments) as m:
        r = await m.chat(max_tokens=100, messages=[{"role": "user", "content": "Say hi"}])
    usage = r.json()["usage"]
    assert int(r.headers["x-ratelimit-remaining-tokens"]) == 50_000 - (100 + 2)  # "Say hi" = 6 chars -> 2
    assert usage["completion_tokens"] == 12 and usage["total_tokens"] < 30
    assert m.log.rows[0]["estimate_charged"] == 102


async def test_usage_is_true_for_the_text_generated() -> None:
    deployments = {"gpt-4o": {"latency": ZERO_LATENCY, "completion_tokens": {"kind": "uniform", "low": 5, "high": 80}}}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about rate limits."}]
    async with mock_app(deployments=deployments) as m:
        for _ in range(5):
            body = (await m.chat(messages=messages)).json()
            text = body["choices"][0]["message"]["content"]
            assert body["usage"]["completion_tokens"] == count_text_tokens(text, "gpt-4o")
            assert body["usage"]["prompt_tokens"] == count_prompt_tokens("chat", {"messages": messages}, "gpt-4o")
            assert body["choices"][0]["finish_reason"] == "stop"


async def test_completion_is_capped_by_max_tokens_and_says_length() -> None:
    async with mock_app(deployments={"gpt-4o": {"latency": ZERO_LATENCY, "completion_tokens": 500}}) as m:
        body = (await m.chat(max_tokens=7)).json()
    assert body["usage"]["completion_tokens"] == 7
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-2024-08-06"
    assert body["prompt_filter_results"][0]["prompt_index"] == 0


async def test_token_429_headers_and_body_exactly() -> None:
    deployments = {"gpt-4o": {"tpm": 1_000, "rpm_per_1k_tpm": 600, "latency": ZERO_LATENCY}}
    async with mock_app(deployments=deployments) as m:
        assert (await m.chat(max_tokens=900)).status_code == 200
        m.clock.advance(15.5)
        r = await m.chat(max_tokens=200)
    assert r.status_code == 429
    h = r.headers
    # the 900 + 3 tokens leave 60 s after they came, 44.5 s from now
    assert h["retry-after-ms"] == "44500"
    assert h["retry-after"] == "45"
    assert h["policy-id"] == "DeploymentRatelimit-Token"
    assert h["x-ratelimit-reset-tokens"] == "45"
    assert h["x-ratelimit-reset-requests"] == "10"  # the refused request itself counts
    assert h["x-ratelimit-remaining-tokens"] == str(1_000 - 903)
    assert h["x-ms-region"] and h["apim-request-id"]
    error = r.json()["error"]
    assert error["code"] == "429"
    assert "retry after 45 seconds" in error["message"]
    assert set(r.json()) == {"error"}
    row = m.log.rows[-1]
    assert (row["status"], row["decision"], row["retry_after"]) == (429, "rate_limited_tokens", pytest.approx(44.5))


async def test_request_429_names_the_requests_policy_and_recovers_after_10_seconds() -> None:
    async with mock_app(deployments={"gpt-4o": {"tpm": 1_000, "latency": ZERO_LATENCY}}) as m:
        assert (await m.chat(max_tokens=5)).status_code == 200
        m.clock.advance(4)
        r = await m.chat(max_tokens=5)
        assert r.status_code == 429
        assert r.headers["policy-id"] == "DeploymentRatelimit-Requests"
        # the refusal counts too and holds the only place: the earliest admission is when it ages out
        assert r.headers["retry-after-ms"] == "10000"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        m.clock.advance(10)  # both the success and the refusal have aged out
        ok = await m.chat(max_tokens=5)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert [row["decision"] for row in m.log.rows] == ["ok", "rate_limited_requests", "ok"]


async def test_ptu_success_carries_utilization_and_429_over_100_percent() -> None:
    spec = {"ptu": 1, "ptu_tokens_per_minute": 6_000, "latency": ZERO_LATENCY, "completion_tokens": 4_000}
    async with mock_app(deployments={"gpt-4o": spec}) as m:
        first = await m.chat()  # admitted with prompt (3) + the default max_tokens (600) ...
        assert first.headers["azure-openai-deployment-utilization"] == f"{100 * 603 / 6_000:.1f}%"
        assert "x-ratelimit-remaining-tokens" not in first.headers
        # ... and corrected to the actual cost when done: prompt + 4,000 completion tokens
        actual = (
            count_prompt_tokens("chat", {"messages": [{"role": "user", "content": "Hello there"}]}, "gpt-4o") + 4_000
        )
        second = await m.chat()  # admitted at about 67 %
        assert second.status_code == 200
        assert second.headers["azure-openai-deployment-utilization"] == f"{100 * (actual + 603) / 6_000:.1f}%"
        third = await m.chat()  # the second's correction took the level to 2 x actual, over 100 %
        assert third.status_code == 429
        # tokens over capacity, draining 100 per second: the time until below 100 %
        wait_ms = math.ceil((2 * actual - 6_000) / 100 * 1000)
        assert third.headers["retry-after-ms"] == str(wait_ms)
        assert third.headers["retry-after"] == str(math.ceil(wait_ms / 1000))
        assert m.log.rows[-1]["decision"] == "ptu_over_capacity"
        m.clock.advance(wait_ms / 1000 + 0.01)
        assert (await m.chat()).status_code == 200


async def test_missing_api_version_is_a_400() -> None:
    async with mock_app() as m:
        r = await m.client.post("/openai/deployments/gpt-4o/chat/completions", json={"messages": []})
    assert r.status_code == 400
    assert "api-version" in r.json()["error"]["message"]
    assert m.log.rows[0]["decision"] == "bad_request"


async def test_invalid_json_is_a_400() -> None:
    async with mock_app() as m:
        r = await m.client.post(f"/openai/deployments/gpt-4o/chat/completions{API}", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": 5}, "messages", "invalid_type"),
        ({}, "messages", "missing_required_parameter"),
        ({"messages": []}, "messages", "empty_array"),
        ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
        ({"messages": [{"role": "boss", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"messages": HI, "max_tokens": "10"}, "max_tokens", "invalid_type"),
        ({"messages": HI, "max_tokens": 2.5}, "max_tokens", "invalid_type"),
        ({"messages": HI, "max_tokens": True}, "max_tokens", "invalid_type"),
        ({"messages": HI, "max_tokens": 10**400}, "max_tokens", "integer_above_max_value"),
        ({"messages": HI, "max_tokens": 16385}, "max_tokens", "invalid_value"),  # above gpt-4o's 16,384
        ({"messages": HI, "temperature": 2.01}, "temperature", "decimal_above_max_value"),
        ({"messages": HI, "temperature": -0.1}, "temperature", "decimal_below_min_value"),
        ({"messages": HI, "top_p": 1.5}, "top_p", "decimal_above_max_value"),
        ({"messages": HI, "n": 0}, "n", "integer_below_min_value"),
        ({"messages": HI, "stream": "yes"}, "stream", "invalid_type"),
        ({"messages": HI, "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"messages": HI, "stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
    ],
)
async def test_a_body_aoai_refuses_is_its_invalid_request_error(body: dict, param: str, code: str) -> None:
    async with mock_app(deployments=FAST) as m:
        r = await m.client.post(f"/openai/deployments/gpt-4o/chat/completions{API}", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert f"'{param}'" in error["message"] or param in error["message"]
    assert m.log.rows[-1]["decision"] == "bad_request" and m.log.rows[-1]["estimate"] is None


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8 JSON"),
        (b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "UTF-8 JSON"),  # beyond the JSON reader's stack
        (b'{"messages": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than 64"),
        (b'{"messages": [], "temperature": NaN}', "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_a_body_aoai_cannot_read_is_a_400_not_a_500(raw: bytes, words: str) -> None:
    async with mock_app(deployments=FAST) as m:
        r = await m.client.post(f"/openai/deployments/gpt-4o/chat/completions{API}", content=raw)
    assert r.status_code == 400 and words in r.json()["error"]["message"]


async def test_a_body_above_the_size_aoai_takes_is_a_413() -> None:
    async with mock_app(deployments=FAST) as m:
        r = await m.chat(messages=[{"role": "user", "content": "x" * (4 * 1024 * 1024)}])
    assert r.status_code == 413 and r.json()["error"]["code"] == "RequestEntityTooLarge"


async def test_parameters_inside_aoai_ranges_are_served() -> None:
    async with mock_app(deployments=FAST) as m:
        r = await m.chat(
            max_tokens=16384, temperature=2, top_p=0, n=1, stream=False, stop=["a"], presence_penalty=-2, user="u"
        )
        tools = await m.chat(messages=[*HI, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "1"}])
    assert r.status_code == 200 and tools.status_code == 200


async def test_unknown_deployment_is_a_404_deployment_not_found() -> None:
    async with mock_app() as m:
        r = await m.chat(deployment="gpt-5")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "DeploymentNotFound"
    assert m.log.rows[0]["decision"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", f"/openai/deployments/gpt-4o/chat/completion{API}", 404),
        ("POST", "/nothing/here", 404),
        ("GET", "/", 404),
        ("GET", f"/openai/deployments/gpt-4o/chat/completions{API}", 405),
        ("PUT", "/openai/v1/embeddings", 405),
    ],
)
async def test_unknown_routes_and_wrong_methods_answer_aoai_json_errors(method: str, path: str, status: int) -> None:
    async with mock_app() as m:
        r = await m.client.request(method, path, json={"messages": []})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == str(status) and error["message"]
    if status == 405:
        assert r.headers["allow"] == "POST"
        assert method in error["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"api-key": "s3cret"}, 200),
        ({"authorization": "Bearer s3cret"}, 200),
    ],
)
async def test_a_configured_key_is_required(headers: dict[str, str], status: int) -> None:
    async with mock_app(api_key="s3cret", deployments=FAST) as m:
        r = await m.chat(headers=headers, max_tokens=5)
    assert r.status_code == status
    if status == 401:
        assert r.json()["error"]["code"] == "401"
        assert m.log.rows[0]["decision"] == "unauthorized"


async def test_without_a_configured_key_any_key_is_accepted() -> None:
    async with mock_app(deployments=FAST) as m:
        assert (await m.chat(headers={"api-key": "anything"}, max_tokens=5)).status_code == 200


async def test_v1_route_takes_the_deployment_from_the_model_field() -> None:
    async with mock_app(deployments=FAST) as m:
        hello = [{"role": "user", "content": "Hello"}]
        ok = await m.client.post(
            "/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": hello, "max_tokens": 3}
        )
        missing = await m.client.post("/openai/v1/chat/completions", json={"model": "nope", "messages": []})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 3
    assert missing.status_code == 404


async def test_legacy_completions_route() -> None:
    async with mock_app(deployments={"gpt-4o": {"latency": ZERO_LATENCY, "completion_tokens": 9}}) as m:
        r = await m.client.post(
            f"/openai/deployments/gpt-4o/completions{API}", json={"prompt": "Once upon", "max_tokens": 20}
        )
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["usage"]["completion_tokens"] == 9 == count_text_tokens(body["choices"][0]["text"], "gpt-4o")
    assert body["usage"]["prompt_tokens"] == count_text_tokens("Once upon", "gpt-4o")


async def test_embeddings_floats_and_base64_and_estimate_is_characters_over_4() -> None:
    async with mock_app(deployments={"emb": {"model": "text-embedding-3-small", "latency": ZERO_LATENCY}}) as m:
        url = f"/openai/deployments/emb/embeddings{API}"
        floats = await m.client.post(url, json={"input": ["hello world", "abc"], "dimensions": 8})
        b64 = await m.client.post(url, json={"input": "hello world", "encoding_format": "base64"})
    body = floats.json()
    assert [d["index"] for d in body["data"]] == [0, 1] and len(body["data"][0]["embedding"]) == 8
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 2 + 1
    vector = struct.unpack("<1536f", base64.b64decode(b64.json()["data"][0]["embedding"]))
    assert len(vector) == 1536
    assert m.log.rows[0]["estimate_charged"] == 3 + 1  # ceil(11/4) + ceil(3/4), no max_tokens


async def test_log_rows_have_every_field_of_the_contract() -> None:
    async with mock_app(deployments=FAST) as m:
        await m.chat(max_tokens=5, headers={"x-gateway-request-id": "gw-1"})
    row = m.log.rows[0]
    assert tuple(row) == BACKEND_LOG_FIELDS
    assert row["gateway_request_id"] == "gw-1"
    assert row["remaining_requests"] == 49 and row["t"] == 1_000.0
    json.dumps(row)  # serialisable as a JSON line


async def test_streaming_is_charged_exactly_like_non_streaming() -> None:
    body = {"messages": [{"role": "user", "content": "Count to three"}], "max_tokens": 50}
    async with mock_app(deployments=FAST) as plain:
        await plain.chat(**body)
        plain_left = int((await plain.chat(**body)).headers["x-ratelimit-remaining-tokens"])
    async with mock_app(deployments=FAST) as streamed:
        await streamed.chat(**body, stream=True)
        stream_left = int((await streamed.chat(**body, stream=True)).headers["x-ratelimit-remaining-tokens"])
    assert stream_left == plain_left == 50_000 - 2 * (50 + 4)
