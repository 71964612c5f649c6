"""Fault profiles, each off by default: error rates, added latency, outage, day-long Retry-After, queueing,
429s that tell no wait, streams cut mid-way."""

from __future__ import annotations

import random

import pytest
from mock_helpers import API, ZERO_LATENCY, backend, mock_app
from quirky_backend import LoopbackServers

from harness.aoai.sse import STREAM_CUT
from harness.clock import VirtualClock
from harness.mock.app import build_mock_app
from harness.mock.faults import Faults
from harness.mock.log import MemoryLog
from harness.mock.streaming import StreamCutFault
from harness.records.outcomes import BackendDecision
from harness.scenario import FaultProfile

TIGHT = {"gpt-4o": {"tpm": 1_000, "latency": ZERO_LATENCY}}  # one request per 10 s


async def test_no_faults_by_default() -> None:
    async with mock_app(deployments={"gpt-4o": {"tpm": 1_000_000, "latency": ZERO_LATENCY}}) as m:
        statuses = {(await m.chat(max_tokens=5)).status_code for _ in range(200)}
        assert statuses == {200}
        assert m.clock.now() == 1_000.0


async def test_error_rates_by_status_with_aoai_shaped_bodies() -> None:
    faults = {"error_rates": {500: 0.2, 503: 0.3}}
    async with mock_app(deployments={"gpt-4o": {"tpm": 10_000_000, "latency": ZERO_LATENCY}}, faults=faults) as m:
        responses = [await m.chat(max_tokens=5) for _ in range(1_000)]
    counts = {s: sum(r.status_code == s for r in responses) for s in (200, 500, 503)}
    assert sum(counts.values()) == 1_000
    assert 150 <= counts[500] <= 250 and 250 <= counts[503] <= 350
    error = next(r for r in responses if r.status_code == 503)
    assert error.json()["error"]["code"] == "ServiceUnavailable"
    assert error.headers["x-ms-region"] and error.headers["apim-request-id"]
    assert {row["decision"] for row in m.log.rows if row["status"] != 200} == {"fault"}


async def test_injected_errors_still_count_against_the_request_window() -> None:
    async with mock_app(deployments=TIGHT, faults={"error_rates": {500: 1.0}}) as m:
        assert (await m.chat(max_tokens=5)).status_code == 500
        assert (await m.chat(max_tokens=5)).status_code == 429


async def test_added_latency_delays_every_answer() -> None:
    faults = {"added_latency": 2.5}
    async with mock_app(deployments={"gpt-4o": {"latency": ZERO_LATENCY}}, faults=faults) as m:
        await m.chat(max_tokens=5)
        assert m.clock.now() == pytest.approx(1_002.5)
        assert m.log.rows[0]["duration_s"] == pytest.approx(2.5)


async def test_outage_window_relative_to_server_start() -> None:
    faults = {"outage": {"start": "PT1M", "duration": 30, "status": 503}}
    async with mock_app(deployments={"gpt-4o": {"tpm": 1_000_000, "latency": ZERO_LATENCY}}, faults=faults) as m:
        assert (await m.chat(max_tokens=5)).status_code == 200
        m.clock.advance(60)
        down = await m.chat(max_tokens=5)
        m.clock.advance(29.9)
        still_down = await m.chat(max_tokens=5)
        m.clock.advance(0.1)
        back = await m.chat(max_tokens=5)
    assert (down.status_code, still_down.status_code, back.status_code) == (503, 503, 200)
    assert down.json()["error"]["code"] == "ServiceUnavailable"
    assert [row["decision"] for row in m.log.rows] == ["ok", "outage", "outage", "ok"]
    # an outage answers before admission: the one 0.1 s ago used no quota (1,000 per 10 s, only `back` counted)
    assert back.headers["x-ratelimit-remaining-requests"] == "999"


async def test_day_long_retry_after_on_rate_limit_429s() -> None:
    faults = {"long_retry_after": {"probability": 1.0}}
    async with mock_app(deployments=TIGHT, faults=faults) as m:
        await m.chat(max_tokens=5)
        r = await m.chat(max_tokens=5)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "86400"
    assert r.headers["retry-after-ms"] == "86400000"
    assert "retry after 86400 seconds" in r.json()["error"]["message"]
    assert m.log.rows[-1]["retry_after"] == 86_400


async def test_day_long_retry_after_only_on_its_share() -> None:
    faults = {"long_retry_after": {"probability": 0.25}}
    async with mock_app(deployments=TIGHT, faults=faults) as m:
        await m.chat(max_tokens=5)
        waits = [(await m.chat(max_tokens=5)).headers["retry-after"] for _ in range(400)]
    long_share = waits.count("86400") / len(waits)
    assert 0.17 <= long_share <= 0.33
    assert all(w in ("86400", "10") for w in waits)


async def test_queueing_waits_until_the_request_fits_then_answers_normally() -> None:
    faults = {"queueing": {"probability": 1.0, "max_wait": 15}}
    async with mock_app(deployments=TIGHT, faults=faults) as m:
        assert (await m.chat(max_tokens=5)).status_code == 200
        m.clock.advance(3)
        queued = await m.chat(max_tokens=5)
    assert queued.status_code == 200
    assert m.clock.now() == pytest.approx(1_010.0, abs=0.05)  # answered when the first request aged out
    row = m.log.rows[-1]
    assert row["decision"] == "queued_then_ok"
    assert row["queued_s"] == pytest.approx(7.0, abs=0.05)


async def test_queueing_gives_up_with_a_429_beyond_max_wait() -> None:
    faults = {"queueing": {"probability": 1.0, "max_wait": 5}}
    async with mock_app(deployments=TIGHT, faults=faults) as m:
        await m.chat(max_tokens=5)
        r = await m.chat(max_tokens=5)  # would need 10 s
    assert r.status_code == 429
    assert m.log.rows[-1]["decision"] == "rate_limited_requests"


async def test_without_queueing_a_would_be_429_is_answered_at_once() -> None:
    async with mock_app(deployments=TIGHT) as m:
        await m.chat(max_tokens=5)
        r = await m.chat(max_tokens=5)
    assert r.status_code == 429 and m.clock.now() == 1_000.0


async def test_an_injected_429_looks_like_aoais_own_and_uses_no_tokens() -> None:
    deployments = {"gpt-4o": {"tpm": 50_000, "latency": ZERO_LATENCY}}
    async with mock_app(deployments=deployments, faults={"error_rates": {429: 1.0}}) as m:
        responses = [await m.chat(max_tokens=100) for _ in range(5)]
    for n, r in enumerate(responses, start=1):
        assert r.status_code == 429
        assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("1", "1000")
        assert r.headers["policy-id"] == "DeploymentRatelimit-Requests"
        assert r.headers["x-ratelimit-limit-tokens"] == "50000"
        assert r.headers["x-ratelimit-remaining-tokens"] == "50000"  # the admission charge was given back
        assert r.headers["x-ratelimit-remaining-requests"] == str(50 - n)  # failed requests count (AOAI)
        assert "x-ratelimit-reset-requests" in r.headers and "x-ratelimit-reset-tokens" in r.headers
        assert r.json()["error"]["code"] == "429"
        assert "retry after 1 seconds" in r.json()["error"]["message"]
    row = m.log.rows[-1]
    assert (row["status"], row["decision"], row["retry_after"]) == (429, "fault", 1.0)
    assert (row["estimate_charged"], row["remaining_tokens"]) == (0, 50_000)


async def test_an_injected_429_takes_its_wait_and_policy_from_the_fault_profile() -> None:
    faults = {
        "error_rates": {429: 1.0},
        "injected_429": {"retry_after": "PT5S", "policy_id": "DeploymentRatelimit-Token"},
    }
    deployments = {"gpt-4o": {"latency": ZERO_LATENCY, "count_rejected_requests": False}}
    async with mock_app(deployments=deployments, faults=faults) as m:
        r = await m.chat(max_tokens=5)
        again = await m.chat(max_tokens=5)
    assert (r.headers["retry-after"], r.headers["policy-id"]) == ("5", "DeploymentRatelimit-Token")
    assert "token rate" in r.json()["error"]["message"]
    # rejected requests not counted: the injected 429 gave its place in the request window back too
    assert again.headers["x-ratelimit-remaining-requests"] == "50"


async def test_an_injected_429_advertises_when_the_windows_admit_the_request_if_that_is_later() -> None:
    async with mock_app(deployments=TIGHT, faults={"error_rates": {429: 1.0}}) as m:
        r = await m.chat(max_tokens=5)  # counted: it holds the only place of the 10 s window
    assert r.status_code == 429 and r.headers["retry-after"] == "10"


async def test_an_injected_429_on_a_ptu_deployment_gives_the_utilization_back() -> None:
    spec = {"ptu": 1, "ptu_tokens_per_minute": 6_000, "latency": ZERO_LATENCY}
    async with mock_app(deployments={"gpt-4o": spec}, faults={"error_rates": {429: 1.0}}) as m:
        r = await m.chat(max_tokens=3_000)
    assert r.status_code == 429
    assert r.headers["azure-openai-deployment-utilization"] == "0.0%"
    assert r.headers["retry-after-ms"] == "1000" and "policy-id" not in r.headers
    assert "provisioned throughput" in r.json()["error"]["message"]


async def test_an_injected_429_set_to_tell_no_wait_sends_neither_retry_header() -> None:
    faults = {"error_rates": {429: 1.0}, "injected_429": {"retry_after": None}}
    async with mock_app(deployments={"gpt-4o": {"latency": ZERO_LATENCY}}, faults=faults) as m:
        r = await m.chat(max_tokens=5)
    assert r.status_code == 429
    assert "retry-after" not in r.headers and "retry-after-ms" not in r.headers
    assert r.headers["policy-id"] == "DeploymentRatelimit-Requests"  # otherwise the 429 AOAI sends
    assert r.json()["error"]["message"].endswith("Please retry later.")
    (row,) = m.log.rows
    assert (row["decision"], row["retry_after"]) == (BackendDecision.FAULT, None)


CUT = {"cut_streams": {"probability": 1.0, "after": 0.25}}
FORTY_TOKENS = {"gpt-4o": {"latency": ZERO_LATENCY, "completion_tokens": 40}}


async def test_a_cut_stream_breaks_off_after_its_share_of_the_tokens_and_logs_what_was_sent() -> None:
    async with mock_app(deployments=FORTY_TOKENS, faults=CUT) as m:
        whole = await m.chat(max_tokens=30)  # not a stream: never cut
        # in process, the server's broken body reaches the reader (on a socket, a dropped connection: below)
        with pytest.raises(StreamCutFault):
            async with m.client.stream(
                "POST",
                f"/openai/deployments/gpt-4o/chat/completions{API}",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 30, "stream": True},
            ) as response:
                assert response.status_code == 200
                await response.aread()
    assert whole.status_code == 200 and whole.json()["usage"]["completion_tokens"] == 30
    ok, cut = m.log.rows
    assert ok["decision"] == BackendDecision.OK
    assert (cut["status"], cut["decision"], cut["completion_tokens"]) == (200, BackendDecision.CUT_STREAM, 7)
    assert cut["total_tokens"] == cut["prompt_tokens"] + 7  # 30 * 0.25, rounded down: what was sent, and charged


def test_the_served_mock_drops_the_connection_of_a_cut_stream() -> None:
    """Over a real socket: the chunked body never ends, so a client reads a broken connection, not an answer
    that ended early and cleanly."""
    from harness.loadgen.transport import Transport  # the load generator's client, as the Locust user sends

    clock, log = VirtualClock(1_000.0), MemoryLog()
    app = build_mock_app(backend(deployments=FORTY_TOKENS, faults=CUT), clock, log, seed=0)
    with LoopbackServers(lifetime=30) as servers:
        transport = Transport(servers.start(app), clock, timeout_s=30)
        try:
            body = b'{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 30, "stream": true}'
            result = transport.send(
                f"/openai/deployments/gpt-4o/chat/completions{API}", body, {"content-type": "application/json"}, True
            )
        finally:
            transport.close()
    assert result.status == 200 and result.truncated and result.stream_end == STREAM_CUT
    assert result.error_detail  # the connection broke: the body did not just end
    assert result.usage is None and log.rows[0]["completion_tokens"] == 7


def test_faults_that_are_off_make_no_draw() -> None:
    rng = random.Random(0)
    faults = Faults(FaultProfile(), started_at=0.0, rng=rng)
    state = rng.getstate()
    assert faults.stream_cut_after(30) is None and faults.long_retry_after() is None
    assert rng.getstate() == state  # a scenario without them keeps its draws where they were


def test_a_cut_needs_two_tokens_and_keeps_the_first_and_never_the_last() -> None:
    faults = Faults(FaultProfile(cut_streams={"probability": 1.0, "after": 0.01}), 0.0, random.Random(0))
    assert [faults.stream_cut_after(n) for n in (1, 2, 10)] == [None, 1, 1]
    faults = Faults(FaultProfile(cut_streams={"probability": 1.0, "after": 0.99}), 0.0, random.Random(0))
    assert [faults.stream_cut_after(n) for n in (2, 10, 1000)] == [1, 9, 990]
