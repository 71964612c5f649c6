"""The `openai-python` profile against the installed openai SDK itself, so the profile cannot drift.

Two checks: the SDK's own `_should_retry` / `_calculate_retry_timeout` on a grid of responses, and the real
SDK client over loopback HTTP against a server answering 429 with Retry-After 5, 90 and 86400 (its sleeps
are captured instead of slept).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx2
import openai
import pytest
from openai import _base_client
from retry_driver import run_with_retries

from harness.client import ResponseInfo, profile_for
from harness.clock import VirtualClock


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


GRID = [
    (429, {"retry-after": "5"}),
    (429, {"retry-after": "90"}),
    (429, {"retry-after": "120"}),
    (429, {"retry-after": "120.5"}),
    (429, {"retry-after": "86400"}),
    (429, {"retry-after-ms": "1500"}),
    (429, {"retry-after-ms": "999999999", "retry-after": "1"}),
    (429, {"retry-after-ms": "abc", "retry-after": "3"}),
    (429, {"retry-after": "0"}),
    (429, {"retry-after": "-1"}),
    (429, {"retry-after": "1e999"}),
    (429, {"retry-after": "inf"}),
    (429, {}),
    (503, {}),
    (500, {"x-should-retry": "false"}),
    (400, {"x-should-retry": "true"}),
    (400, {}),
    (404, {}),
    (408, {}),
    (409, {}),
]


@pytest.fixture
def sdk_client() -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=2)
    yield client
    client.close()


@pytest.mark.parametrize(("status", "headers"), GRID)
@pytest.mark.parametrize("retries_taken", [0, 1])
def test_profile_matches_sdk_rules(
    sdk_client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, status: int, headers: dict[str, str], retries_taken: int
) -> None:
    monkeypatch.setattr(_base_client, "random", lambda: 0.37)
    response = httpx2.Response(status, headers=headers, request=httpx2.Request("POST", "http://127.0.0.1:9/v1/x"))
    sdk_retries = sdk_client._should_retry(response)
    options = _base_client.FinalRequestOptions(method="post", url="/x")
    sdk_wait = sdk_client._calculate_retry_timeout(2 - retries_taken, options, response.headers)

    profile = profile_for("openai-python", FixedRandom(0.37))  # type: ignore[arg-type]
    decision = profile.decide(retries_taken + 1, ResponseInfo(status, {k.lower(): v for k, v in headers.items()}))
    assert decision.retry == sdk_retries
    if decision.retry:
        assert decision.wait_s == pytest.approx(sdk_wait)


def test_sdk_constants_are_the_profiles() -> None:
    from openai import _constants

    from harness.client import profiles

    assert _constants.MAX_RETRY_AFTER_DELAY == profiles.CURRENT_MAX_RETRY_AFTER
    assert _constants.INITIAL_RETRY_DELAY == profiles.INITIAL_RETRY_DELAY
    assert _constants.MAX_RETRY_DELAY == profiles.MAX_RETRY_DELAY
    assert _constants.DEFAULT_MAX_RETRIES == profiles.DEFAULT_MAX_RETRIES


class _Throttler(BaseHTTPRequestHandler):
    retry_after = "5"
    retry_counts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).retry_counts.append(self.headers.get("x-stainless-retry-count", ""))
        body = b'{"error": {"code": "429", "message": "rate limited"}}'
        self.send_response(429)
        self.send_header("retry-after", type(self).retry_after)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("retry_after", ["5", "90", "86400"])
def test_real_sdk_over_http_matches_the_profile(monkeypatch: pytest.MonkeyPatch, retry_after: str) -> None:
    _Throttler.retry_after = retry_after
    _Throttler.retry_counts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sdk_sleeps: list[float] = []
    monkeypatch.setattr(_base_client.time, "sleep", sdk_sleeps.append)
    try:
        client = openai.OpenAI(api_key="k", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    sdk_attempts = len(_Throttler.retry_counts)

    clock = VirtualClock()
    waits: list[float] = []
    outcome = run_with_retries(
        lambda n: (ResponseInfo(429, {"retry-after": retry_after}), None),
        profile_for("openai-python"),
        clock,
        on_attempt=lambda n, info, detail, decision: decision.retry and waits.append(decision.wait_s),
    )
    assert outcome.attempts == sdk_attempts
    assert waits == sdk_sleeps
    assert _Throttler.retry_counts == [str(n) for n in range(sdk_attempts)]
