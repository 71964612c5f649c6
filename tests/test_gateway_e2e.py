"""End to end over real sockets: `harness serve` (mock pool + gateway) with the openai SDK as the client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from openai import AuthenticationError, AzureOpenAI
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

LATENCY = "{ttft: 0.05, per_token: 0.02}"
SCENARIO = f"""
backends:
  - {{name: east, region: eastus, deployments: {{gpt-4o: {{latency: {LATENCY}}}}}}}
  - {{name: west, region: westus, deployments: {{gpt-4o: {{latency: {LATENCY}}}}}}}
gateway:
  token_limit:
    tokens-per-minute: 100000
    remaining-tokens-header-name: x-remaining-tokens
    tokens-consumed-header-name: x-tokens-consumed
  metrics: {{dimensions: [model, app_id, backend, streaming]}}
"""
SIGNING_KEY = "a-signing-key-the-gateway-never-verifies"


def _client(url: str, app_id: str) -> AzureOpenAI:
    token = jwt.encode({"appid": app_id}, SIGNING_KEY, algorithm="HS256")
    return AzureOpenAI(azure_endpoint=url, azure_ad_token=token, api_version="2024-10-21", max_retries=0, timeout=20)


def test_openai_sdk_through_gateway_to_mock_pool(serve_stack: Callable[..., Any]) -> None:
    stack = serve_stack(SCENARIO, only=None)
    roles = [(line["role"], line["name"]) for line in stack.ready]
    assert roles == [("mock", "east"), ("mock", "west"), ("gateway", "gateway")]
    gateway = stack.server("gateway")
    assert gateway["backends"] == ["east", "west"] and gateway["url"].startswith("http://127.0.0.1:")
    client = _client(gateway["url"], "app-e2e")

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello through the gateway"}], max_tokens=10
    )
    completion = raw.parse()
    assert completion.usage is not None and completion.choices[0].message.content
    assert raw.headers["x-backend"] in ("east", "west")
    assert raw.headers["x-ms-region"] == {"east": "eastus", "west": "westus"}[raw.headers["x-backend"]]
    assert raw.headers["x-tokens-consumed"] == str(completion.usage.total_tokens)
    assert int(raw.headers["x-remaining-tokens"]) == 100_000 - completion.usage.total_tokens
    assert raw.headers["x-gateway-request-id"] and raw.headers["apim-request-id"]

    arrivals: list[float] = []
    pieces: list[str] = []
    usage = None
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Stream it"}],
        max_tokens=25,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and usage.completion_tokens == len(pieces) > 5
    # Chunks arrive as the backend paces them (20 ms a token), not all at once after a buffered stream.
    assert arrivals[-1] - arrivals[0] >= 0.5 * 0.02 * len(pieces)

    scraped = httpx.get(gateway["url"] + "/metrics", timeout=10)
    completion_by: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "gateway_completion_tokens_total":
                assert sample.labels["app_id"] == "app-e2e" and sample.labels["model"] == "gpt-4o"
                completion_by[(sample.labels["backend"], sample.labels["streaming"])] = sample.value
    assert sum(v for (_, s), v in completion_by.items() if s == "true") == usage.completion_tokens
    assert sum(v for (_, s), v in completion_by.items() if s == "false") == completion.usage.completion_tokens

    assert stack.stop() == 0
    requests = [r for r in stack.log_rows("gateway.jsonl") if r["kind"] == "request"]
    backend_rows = {r["gateway_request_id"]: r for r in stack.log_rows("backend.jsonl")}
    assert len(requests) == 2
    for row in requests:
        backend_row = backend_rows[row["gateway_request_id"]]
        assert row["backend_request_id"] == backend_row["request_id"]
        assert row["total_tokens"] == backend_row["total_tokens"]
        assert row["app_id"] == "app-e2e" and row["outcome"] == "ok"
    assert [r["tokens_counted_by"] for r in requests] == ["usage", "stream_usage"]
    assert any(r["kind"] == "metric" for r in stack.log_rows("gateway.jsonl"))


def test_gateway_alone_fronts_backends_named_by_url(serve_stack: Callable[..., Any]) -> None:
    pool = serve_stack("backends: [{name: east, region: eastus}]", only="mock")
    url = pool.url("east")
    gateway = serve_stack(
        f"backends: [{{name: east, url: '{url}'}}]\ngateway: {{auth: {{subscriptions: [{{id: s1, key: k1}}]}}}}",
        only="gateway",
    )
    assert [line["role"] for line in gateway.ready] == ["gateway"]
    client = AzureOpenAI(
        azure_endpoint=gateway.url("gateway"), api_key="k1", api_version="2024-10-21", max_retries=0, timeout=20
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert raw.http_response.status_code == 200 and raw.headers["x-backend"] == "east"
    assert raw.headers["x-ms-region"] == "eastus"
    wrong = AzureOpenAI(
        azure_endpoint=gateway.url("gateway"), api_key="k2", api_version="2024-10-21", max_retries=0, timeout=20
    )
    with pytest.raises(AuthenticationError) as caught:
        wrong.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert caught.value.status_code == 401
