"""AOAI's input limits, checked once (harness.aoai.validation) for the mock and the gateway: at most 2,048
embeddings inputs, vectors no longer than the model makes, `best_of` where and as the completions API takes it,
and the `api-version` of the deployments route. Unit checks first, then the real openai SDK over loopback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import AzureOpenAI

from harness.aoai.validation import (
    MAX_BEST_OF,
    MAX_EMBEDDING_INPUTS,
    check_api_version,
    check_request,
)
from harness.tokens import admission_estimate, count_prompt_tokens, prompt_chars, prompt_counter

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _refusal(body: dict[str, Any], operation: str, model: str = "gpt-4o") -> tuple[int, str, str | None] | None:
    invalid = check_request(body, operation, model)
    return None if invalid is None else (invalid.status, invalid.code, invalid.param)


def test_embeddings_take_at_most_2048_inputs() -> None:
    model = "text-embedding-3-small"
    assert _refusal({"input": ["x"] * MAX_EMBEDDING_INPUTS}, "embeddings", model) is None
    assert _refusal({"input": [[1, 2]] * MAX_EMBEDDING_INPUTS}, "embeddings", model) is None
    assert _refusal({"input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "embeddings", model) == (
        400,
        "invalid_value",
        "input",
    )
    assert _refusal({"input": [[1]] * (MAX_EMBEDDING_INPUTS + 1)}, "embeddings", model) == (
        400,
        "invalid_value",
        "input",
    )
    # one input given as token ids is one input, however many tokens
    assert _refusal({"input": list(range(MAX_EMBEDDING_INPUTS + 1))}, "embeddings", model) is None


def test_embeddings_dimensions_stay_within_the_model() -> None:
    assert _refusal({"input": "x", "dimensions": 1536}, "embeddings", "text-embedding-3-small") is None
    assert _refusal({"input": "x", "dimensions": 1537}, "embeddings", "text-embedding-3-small") == (
        400,
        "invalid_value",
        "dimensions",
    )
    assert _refusal({"input": "x", "dimensions": 3072}, "embeddings", "text-embedding-3-large") is None
    assert _refusal({"input": "x", "dimensions": 2**31}, "embeddings", "text-embedding-3-large") is not None


@pytest.mark.parametrize(
    ("body", "operation", "refused"),
    [
        ({**CHAT, "best_of": 2}, "chat", (400, "unknown_parameter", "best_of")),
        ({"input": "x", "best_of": 2}, "embeddings", (400, "unknown_parameter", "best_of")),
        ({**CHAT, "best_of": None}, "chat", None),  # null is unset
        ({"prompt": "x", "best_of": 3}, "completions", None),
        ({"prompt": "x", "best_of": 3, "n": 3}, "completions", None),
        ({"prompt": "x", "best_of": 2, "n": 3}, "completions", (400, "invalid_value", "best_of")),
        ({"prompt": "x", "best_of": MAX_BEST_OF + 1}, "completions", (400, "integer_above_max_value", "best_of")),
        ({"prompt": "x", "best_of": -1}, "completions", (400, "integer_below_min_value", "best_of")),
        ({"prompt": "x", "best_of": "2"}, "completions", (400, "invalid_type", "best_of")),
        ({"prompt": "x", "best_of": 2, "stream": True}, "completions", (400, "invalid_value", "best_of")),
        ({"prompt": "x", "best_of": 1, "stream": True}, "completions", None),
    ],
    ids=repr,
)
def test_best_of_is_a_completions_parameter_bounded_by_n_and_streaming(
    body: dict[str, Any], operation: str, refused: tuple[int, str, str] | None
) -> None:
    assert _refusal(body, operation) == refused


async def test_a_long_prompt_is_counted_ahead_and_any_body_is_measured_without_error() -> None:
    long = {"input": ["the quick brown fox " * 100] * 64}  # 128,000 characters: counted in a worker thread
    count = await prompt_counter("embeddings", long, "text-embedding-3-small")
    for model in ("text-embedding-3-small", "gpt-35-turbo"):  # the one counted ahead, and another counted inline
        assert count(model) == count_prompt_tokens("embeddings", long, model) > 64 * 100
    for body in ({"messages": 5}, {"messages": [5, None]}, {"input": {"a": 1}}, {}):
        assert prompt_chars("chat", body) == 0 == prompt_chars("embeddings", body)


def test_best_of_multiplies_the_estimate_of_completions_only() -> None:
    assert admission_estimate("completions", {"prompt": "abcd", "max_tokens": 10, "best_of": 3}) == 1 + 30
    assert admission_estimate("chat", {**CHAT, "max_tokens": 10, "best_of": 10**9}) == 1 + 10


@pytest.mark.parametrize(
    ("value", "answer"),
    [
        ("2024-10-21", None),
        ("2024-02-01", None),
        ("2025-04-01-preview", None),
        ("2022-12-01", None),
        ("2099-01-01", None),  # newer than this mock: taken as a real version
        (None, (400, b'"The api-version query parameter is required."')),
        ("", (400, b'"The api-version query parameter is required."')),
        ("banana", (404, b'{"error":{"code":"404","message":"Resource not found"}}')),
        ("2024-13-01", (404, b'{"error":{"code":"404","message":"Resource not found"}}')),
        ("2024-10-21-beta", (404, b'{"error":{"code":"404","message":"Resource not found"}}')),
        ("2021-06-01", (400, b'{"error":{"code":"BadRequest","message":"API version not supported"}}')),
    ],
    ids=repr,
)
def test_api_version(value: str | None, answer: tuple[int, bytes] | None) -> None:
    invalid = check_api_version(value)
    if answer is None:
        assert invalid is None
        return
    assert invalid is not None and invalid.status == answer[0] and answer[1] in invalid.body()


# -- the real SDK over loopback ---------------------------------------------------------------------------------------

SCENARIO = """
backends:
  - name: east
    deployments:
      gpt-4o: {tpm: 10000000, latency: {ttft: 0, per_token: 0}, completion_tokens: 3}
      text-embedding-3-small: {tpm: 10000000, latency: {ttft: 0, per_token: 0}}
"""


@pytest.mark.e2e
@pytest.mark.parametrize("target", ["east", "gateway"])
def test_the_sdk_meets_the_limits_at_the_mock_and_the_gateway(serve_stack: Any, target: str) -> None:
    stack = serve_stack(SCENARIO, only=None)
    url = stack.url(target)
    with contextlib.ExitStack() as opened:

        def client(api_version: str) -> AzureOpenAI:
            sdk = AzureOpenAI(azure_endpoint=url, api_key="k", api_version=api_version, max_retries=0, timeout=30)
            return opened.enter_context(sdk)

        _meet_the_limits(client)


def _meet_the_limits(client: Callable[[str], AzureOpenAI]) -> None:
    # the version the harness sends, a GA and a preview one the SDK is commonly given: all answered
    for version in ("2024-10-21", "2024-06-01", "2025-01-01-preview"):
        answer = client(version).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert answer.usage is not None and answer.usage.completion_tokens == 3
    with pytest.raises(openai.NotFoundError) as not_found:
        client("banana").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.body == {"code": "404", "message": "Resource not found"}
    with pytest.raises(openai.BadRequestError) as old:
        client("2021-06-01").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert old.value.body == {"code": "BadRequest", "message": "API version not supported"}

    sdk = client("2024-10-21")
    embedded = sdk.embeddings.create(model="text-embedding-3-small", input=["a b"] * MAX_EMBEDDING_INPUTS)
    assert len(embedded.data) == MAX_EMBEDDING_INPUTS and len(embedded.data[-1].embedding) == 1536
    with pytest.raises(openai.BadRequestError) as too_many:
        sdk.embeddings.create(model="text-embedding-3-small", input=["a b"] * (MAX_EMBEDDING_INPUTS + 1))
    assert too_many.value.code == "invalid_value" and too_many.value.param == "input"
    with pytest.raises(openai.BadRequestError) as best_of:
        sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_body={"best_of": 5}
        )
    assert best_of.value.code == "unknown_parameter"
