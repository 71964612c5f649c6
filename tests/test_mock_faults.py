"""Fault profiles, each off by default: error rates, added latency, outage, day-long Retry-After, queueing."""

from __future__ import annotations

import pytest
from mock_helpers import ZERO_LATENCY, mock_app

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
