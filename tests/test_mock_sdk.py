"""The real openai SDK against `harness serve --only mock` over loopback."""

from __future__ import annotations

import openai
import pytest
from openai import AzureOpenAI

from harness.tokens import count_prompt_tokens, count_text_tokens

pytestmark = pytest.mark.e2e

SCENARIO = """
run: {seed: 7}
backends:
  - name: east
    region: East US 2
    api_key: test-key
    deployments:
      gpt-4o: {tpm: 50000, latency: {ttft: 0, per_token: 0}, completion_tokens: {kind: uniform, low: 5, high: 40}}
      tight: {model: gpt-4o, tpm: 1000, latency: {ttft: 0, per_token: 0}, completion_tokens: 5}
  - name: east-ptu
    region: East US 2
    api_key: test-key
    deployments:
      ptu: {model: gpt-4o, ptu: 1, ptu_tokens_per_minute: 3000, latency: {ttft: 0, per_token: 0}, completion_tokens: 3000}
  - name: day-long
    faults: {long_retry_after: {probability: 1.0}}
    deployments:
      gpt-4o: {tpm: 1000, latency: {ttft: 0, per_token: 0}, completion_tokens: 5}
"""

MESSAGES = [{"role": "user", "content": "How do rate limits work?"}]


def client(url: str, max_retries: int = 2, key: str = "test-key") -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=url, api_key=key, api_version="2024-10-21", max_retries=max_retries)


def test_sdk_reads_headers_streams_with_usage_and_retries_a_429(serve_stack) -> None:
    stack = serve_stack(SCENARIO)
    east = client(stack.url("east"))

    raw = east.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    completion = raw.parse()
    assert raw.headers["x-ratelimit-remaining-requests"] == "49"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 50_000 - (100 + 6)  # 24 chars -> 6
    assert raw.headers["x-ms-region"] == "East US 2"
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_text_tokens(
        completion.choices[0].message.content or "", "gpt-4o"
    )

    # streaming: the usage chunk's numbers match a tiktoken count of the streamed text
    stream = east.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=60, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    assert usage_chunks[0].usage.completion_tokens == count_text_tokens(text, "gpt-4o") > 0
    assert usage_chunks[0].usage.prompt_tokens == count_prompt_tokens("chat", {"messages": MESSAGES}, "gpt-4o")

    # a wrong key is refused with 401
    with pytest.raises(openai.AuthenticationError):
        client(stack.url("east"), key="wrong").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    # an unknown deployment is a 404
    with pytest.raises(openai.NotFoundError):
        east.chat.completions.create(model="gpt-5", messages=MESSAGES)

    # PTU (capacity 3,000, draining 50/s): the first request's actual cost (prompt + 3,000 completion tokens)
    # leaves utilization just over 100 %; the next gets a 429 with retry-after-ms of about 0.3 s, which the
    # SDK honours, then succeeds
    ptu = client(stack.url("east-ptu"))
    ptu.chat.completions.create(model="ptu", messages=MESSAGES)
    retried = ptu.chat.completions.with_raw_response.create(model="ptu", messages=MESSAGES)
    assert retried.retries_taken >= 1
    assert "azure-openai-deployment-utilization" in retried.headers

    # day-long Retry-After: this SDK version does not retry above its cap, so one attempt only
    long_client = client(stack.url("day-long"), key="any")
    long_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as refused:
        long_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert refused.value.response.headers["retry-after"] == "86400"

    assert stack.stop() == 0
    rows = stack.log_rows()
    ptu_rows = [r for r in rows if r["backend"] == "east-ptu"]
    statuses = [r["status"] for r in ptu_rows]
    assert statuses[0] == 200 and statuses[-1] == 200
    assert statuses[1:-1] == [429] * retried.retries_taken  # every attempt the SDK made is in the backend log
    assert {r["decision"] for r in ptu_rows if r["status"] == 429} == {"ptu_over_capacity"}
    assert [r["status"] for r in rows if r["backend"] == "day-long"] == [200, 429]
    east_rows = [r for r in rows if r["backend"] == "east"]
    assert [r["status"] for r in east_rows] == [200, 200, 401, 404]
    assert east_rows[1]["stream"] is True
