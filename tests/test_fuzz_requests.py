"""Property-based fuzz of request bodies and headers over real HTTP on loopback, against the mock and the gateway.

Whatever a client sends, the answer comes in bounded time, is never a 5xx, and is JSON (a 200 stream is SSE).
Bounded: a fixed number of examples per target, each request with a timeout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.aoai.routes import SUFFIX_OPERATIONS

SCENARIO = """
backends:
  - name: east
    deployments:
      gpt-4o: {tpm: 100000000, latency: {ttft: 0, per_token: 0}, completion_tokens: 3}
      text-embedding-3-small: {tpm: 100000000, latency: {ttft: 0, per_token: 0}}
gateway:
  token_limit: {counter_key: appid, tokens_per_minute: 100000000}
"""
EXAMPLES_PER_TARGET = 250
TIMEOUT_S = 10.0

# -- what a client may send ---------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# values JSON cannot hold but a careless client writes anyway (Python's json module spells them as words)
ODD_NUMBERS = st.sampled_from([math.inf, -math.inf, math.nan, 10**400, -(10**400), 1e308, 5e-324, 2**31, 2**63])
PARAM_VALUES = st.one_of(SCALARS, ODD_NUMBERS, ANY_JSON)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "nobody"]), PARAM_VALUES),
        "content": st.one_of(
            st.text(max_size=40),
            st.lists(
                st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": PARAM_VALUES}),
                max_size=3,
            ),
            PARAM_VALUES,
        ),
        "tool_calls": ANY_JSON,
    },
)
MESSAGES = st.one_of(st.lists(MESSAGE, max_size=4), PARAM_VALUES)
REQUEST_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["gpt-4o", "text-embedding-3-small", "nope"]), PARAM_VALUES),
        "messages": MESSAGES,
        "prompt": st.one_of(st.text(max_size=40), PARAM_VALUES),
        "input": st.one_of(st.text(max_size=40), st.lists(st.text(max_size=10), max_size=3), PARAM_VALUES),
        "max_tokens": st.one_of(st.integers(min_value=-5, max_value=40_000), PARAM_VALUES),
        "max_completion_tokens": PARAM_VALUES,
        "temperature": st.one_of(st.floats(min_value=-1, max_value=3), PARAM_VALUES),
        "top_p": st.one_of(st.floats(min_value=-1, max_value=2), PARAM_VALUES),
        "n": st.one_of(st.integers(min_value=-1, max_value=200), PARAM_VALUES),
        "stream": st.one_of(st.booleans(), PARAM_VALUES),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": PARAM_VALUES}), PARAM_VALUES),
        "stop": PARAM_VALUES,
        "dimensions": PARAM_VALUES,
        "encoding_format": PARAM_VALUES,
        "best_of": PARAM_VALUES,
        "extra": ANY_JSON,
    },
)


def _nested(depth: int) -> bytes:
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


def _raw_variants(obj: dict[str, Any]) -> list[bytes]:
    text = json.dumps(obj)  # NaN and Infinity come out as words: the servers must refuse them, not crash
    return [text.encode(), text.encode("utf-16"), text.encode()[: max(1, len(text) // 2)]]


RAW_BODIES = st.one_of(
    REQUEST_OBJECTS.map(lambda obj: json.dumps(obj).encode()),
    REQUEST_OBJECTS.flatmap(lambda obj: st.sampled_from(_raw_variants(obj))),
    ANY_JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=200_000).map(_nested),
    st.sampled_from(
        [
            b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 400 + b"}",
            b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 5000 + b"}",
            b'{"messages": [{"role": "user", "content": "\xff\xfe invalid utf-8"}]}',
            b'{"messages": 5}',
            b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}',
            b"",
            b"null",
            b'"just a string"',
        ]
    ),
)
# header values as bytes: anything HTTP/1.1 lets through (no control bytes, no blank at either end)
HEADER_BYTES = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip(b" "))
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.one_of(
            st.sampled_from([b"application/json", b"text/plain", b"multipart/form-data", b"application/x-www-form"]),
            HEADER_BYTES,
        ),
        "authorization": st.one_of(
            st.just(b"Bearer a.b.c"), HEADER_BYTES.map(lambda b: b"Bearer " + b if b else b"Bearer x"), HEADER_BYTES
        ),
        "api-key": HEADER_BYTES,
        "ocp-apim-subscription-key": HEADER_BYTES,
        "x-ms-client-request-id": HEADER_BYTES,
        "content-encoding": st.sampled_from([b"gzip", b"br", b"identity"]),
        "x-stainless-retry-count": HEADER_BYTES,
    },
)
PATHS = st.one_of(
    st.tuples(
        st.sampled_from(list(SUFFIX_OPERATIONS)),
        st.sampled_from(["gpt-4o", "text-embedding-3-small", "nope"]),
        st.sampled_from(
            ["?api-version=2024-10-21", "", "?api-version=", "?api-version=banana", "?api-version=2021-01-01"]
        ),
    ).map(lambda p: f"/openai/deployments/{p[1]}/{p[0]}{p[2]}"),
    st.sampled_from(list(SUFFIX_OPERATIONS)).map(lambda suffix: f"/openai/v1/{suffix}"),
)


def _check_answer(client: httpx.Client, path: str, body: bytes, headers: dict[str, bytes]) -> int:
    """Send one request; check its answer and return its status."""
    with client.stream("POST", path, content=body, headers=headers) as response:
        content = response.read()  # within the client's timeout: a hang fails the example
    assert response.status_code < 500, (response.status_code, content[:300])
    if response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream"):
        assert content.rstrip().endswith(b"data: [DONE]")
        return response.status_code
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    answer = json.loads(content)
    assert isinstance(answer, dict)
    if response.status_code >= 400:
        assert isinstance(answer["error"]["message"], str) and answer["error"]["code"]
    return response.status_code


@pytest.mark.parametrize("target", ["east", "gateway"])
def test_any_request_gets_a_json_answer_below_500_in_bounded_time(serve_stack: Callable[..., Any], target: str) -> None:
    stack = serve_stack(SCENARIO, only=None)
    statuses: set[int] = set()
    with httpx.Client(base_url=stack.url(target), timeout=TIMEOUT_S) as client:

        @settings(
            max_examples=EXAMPLES_PER_TARGET,
            deadline=None,  # bounded by the client's timeout instead: a loaded machine is slow, not wrong
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(path=PATHS, body=RAW_BODIES, headers=HEADERS)
        def probe(path: str, body: bytes, headers: dict[str, bytes]) -> None:
            statuses.add(_check_answer(client, path, body, headers))

        probe()
        # still up, and still serving a good request after the fuzz
        good = client.post(
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            json={"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 3},
        )
    assert good.status_code == 200
    assert {400, 404} <= statuses  # the fuzz reached the body checks, not only the routing
