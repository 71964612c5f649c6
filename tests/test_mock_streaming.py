"""Streaming: SSE format chunk by chunk, usage chunk, and timing that follows the latency model."""

from __future__ import annotations

import itertools

import pytest
from mock_helpers import API, backend, call_asgi, sse_events

from harness.clock import VirtualClock
from harness.mock.app import build_mock_app
from harness.mock.log import MemoryLog
from harness.tokens import count_text_tokens

CHAT = f"/openai/deployments/gpt-4o/chat/completions{API}"
HELLO = [{"role": "user", "content": "Hello"}]


def app_on(clock: VirtualClock, **deployment: object) -> tuple[object, MemoryLog]:
    log = MemoryLog()
    spec = {"latency": {"ttft": 0.5, "per_token": 0.025}, "completion_tokens": 20, **deployment}
    return build_mock_app(backend(deployments={"gpt-4o": spec}), clock, log, seed=3), log


async def test_stream_format_with_include_usage() -> None:
    clock = VirtualClock(0.0)
    app, log = app_on(clock)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}}
    r = await call_asgi(app, clock, CHAT, body)
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-ratelimit-remaining-requests"] == "49"
    events = sse_events(r.body)
    first, role, *tokens, finish, usage_chunk, done = events
    assert first["choices"] == [] and first["prompt_filter_results"][0]["content_filter_results"]
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" and e["usage"] is None for e in [role, *tokens, finish])
    assert len(tokens) == 20
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}
    assert usage_chunk["choices"] == []
    text = "".join(e["choices"][0]["delta"]["content"] for e in tokens)
    assert usage_chunk["usage"]["completion_tokens"] == count_text_tokens(text, "gpt-4o") == 20
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 20
    assert done == "[DONE]"
    assert len({e["id"] for e in [role, *tokens, finish, usage_chunk]}) == 1
    row = log.rows[0]
    assert row["stream"] is True and row["completion_tokens"] == 20 and row["ttft_s"] == pytest.approx(0.5)


async def test_a_stream_left_early_logs_and_charges_only_the_tokens_sent() -> None:
    clock = VirtualClock(0.0)
    # tokens 1 ms apart: the client's leaving is noticed between two tokens, and the PTU drains < 1 token
    app, log = app_on(clock, ptu=1, latency={"ttft": 0, "per_token": 0.001})
    deployment = app.state.mock.core.deployments["gpt-4o"]  # type: ignore[attr-defined]
    r = await call_asgi(app, clock, CHAT, {"messages": HELLO, "stream": True, "max_tokens": 50}, leave_after_chunks=5)
    assert len(r.chunks) == 5  # planned: 20 tokens
    row = log.rows[0]
    assert row["completion_tokens"] == 5 and row["total_tokens"] == row["prompt_tokens"] + 5
    # the PTU's admission charge (prompt + max_tokens) was corrected to what was actually generated
    assert deployment.quota.bucket.level == pytest.approx(row["prompt_tokens"] + 5, abs=1)


async def test_without_include_usage_there_is_no_usage_chunk() -> None:
    clock = VirtualClock(0.0)
    app, _ = app_on(clock)
    r = await call_asgi(app, clock, CHAT, {"messages": HELLO, "stream": True, "max_tokens": 5})
    events = sse_events(r.body)
    assert events[-1] == "[DONE]"
    assert all(e["usage"] is None for e in events[1:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"


async def test_stream_follows_the_latency_model_chunk_by_chunk() -> None:
    clock = VirtualClock(100.0)
    app, log = app_on(clock)
    r = await call_asgi(app, clock, CHAT, {"messages": HELLO, "stream": True})
    times = [t - 100.0 for t, _ in r.chunks]
    assert len(times) == 20  # one write per token, the opening and closing chunks ride with the first and last
    assert times[0] == pytest.approx(0.5)  # TTFT
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.025] * 19)
    assert clock.now() - 100.0 == pytest.approx(0.5 + 19 * 0.025)
    assert log.rows[0]["duration_s"] == pytest.approx(0.5 + 19 * 0.025)


async def test_non_streaming_answer_waits_the_whole_generation() -> None:
    clock = VirtualClock(0.0)
    app, _ = app_on(clock)
    r = await call_asgi(app, clock, CHAT, {"messages": HELLO})
    assert len(r.chunks) == 1 and r.chunks[0][0] == pytest.approx(0.5 + 19 * 0.025)


async def test_ptu_defaults_to_faster_latency_than_payg() -> None:
    clock = VirtualClock(0.0)
    payg, _ = app_on(clock, latency=None)
    ptu, _ = app_on(clock, latency=None, ptu=10)
    durations = {}
    for name, app in (("payg", payg), ("ptu", ptu)):
        start = clock.now()
        for _ in range(10):
            await call_asgi(app, clock, CHAT, {"messages": HELLO})
        durations[name] = clock.now() - start
    assert durations["ptu"] < 0.7 * durations["payg"]


async def test_zero_latency_never_sleeps() -> None:
    class NoSleepClock(VirtualClock):
        async def asleep(self, seconds: float) -> None:
            raise AssertionError("a zero latency must not sleep")

    clock = NoSleepClock(0.0)
    app, _ = app_on(clock, latency={"ttft": 0, "per_token": 0})
    assert (await call_asgi(app, clock, CHAT, {"messages": HELLO, "stream": True})).status == 200
    assert (await call_asgi(app, clock, CHAT, {"messages": HELLO})).status == 200


async def test_completions_stream_format() -> None:
    clock = VirtualClock(0.0)
    app, _ = app_on(clock)
    body = {"prompt": "Once", "stream": True, "max_tokens": 3, "stream_options": {"include_usage": True}}
    r = await call_asgi(app, clock, f"/openai/deployments/gpt-4o/completions{API}", body)
    first, *tokens, finish, usage_chunk, done = sse_events(r.body)
    assert first["choices"] == [] and done == "[DONE]"
    assert [e["object"] for e in tokens] == ["text_completion"] * 3
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["usage"]["completion_tokens"] == count_text_tokens(
        "".join(e["choices"][0]["text"] for e in tokens), "gpt-4o"
    )
