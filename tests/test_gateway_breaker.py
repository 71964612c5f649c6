"""Circuit breaker: count and percentage within interval, tripDuration or Retry-After, listener sees all."""

from __future__ import annotations

import pytest

from harness.clock import VirtualClock
from harness.gateway.breaker import BACKEND_CONNECTION_FAILURE, CircuitBreaker, Transition
from harness.scenario.gateway import CircuitBreakerRule


def _rule(**fields: object) -> CircuitBreakerRule:
    return CircuitBreakerRule.model_validate(fields)


def _breaker(clock: VirtualClock, **fields: object) -> tuple[CircuitBreaker, list[Transition]]:
    seen: list[Transition] = []
    return CircuitBreaker("aoai-0", _rule(**fields), clock, seen.append), seen


def test_count_trips_only_within_the_interval() -> None:
    clock = VirtualClock(1_000)
    breaker, seen = _breaker(clock, failureCondition={"count": 3, "interval": "PT1M"}, tripDuration="PT1M")
    breaker.record(429)
    breaker.record(429)
    clock.advance(61)  # the first two age out
    breaker.record(429)
    breaker.record(200)
    assert not breaker.is_open()
    breaker.record(429)
    assert breaker.record(429) is True
    assert breaker.is_open() and seen[-1].to_state == "open" and seen[-1].until == pytest.approx(1_061 + 60)


def test_stays_open_for_trip_duration_then_closes_and_logs_both_transitions() -> None:
    clock = VirtualClock(0)
    breaker, seen = _breaker(clock, tripDuration="PT30S")
    breaker.record(429)
    clock.advance(29.9)
    assert breaker.is_open() and breaker.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    assert not breaker.is_open()
    assert [(t.from_state, t.to_state) for t in seen] == [("closed", "open"), ("open", "closed")]
    assert seen[1].t == pytest.approx(30.0)


def test_percentage_trips_on_the_share_of_failing_requests() -> None:
    clock = VirtualClock(0)
    breaker, _ = _breaker(clock, failureCondition={"percentage": 50, "interval": 10})
    for _ in range(3):
        breaker.record(200)
    breaker.record(429)
    breaker.record(429)
    assert not breaker.is_open()  # 2 of 5 = 40 %
    assert breaker.record(429) is True  # 3 of 6 = 50 %


def test_percentage_forgets_requests_older_than_the_interval() -> None:
    clock = VirtualClock(0)
    breaker, _ = _breaker(clock, failureCondition={"percentage": 50, "interval": 10})
    for _ in range(10):
        breaker.record(200)
    clock.advance(11)
    breaker.record(200)
    assert breaker.record(429) is True  # 1 of 2 within the last 10 s


@pytest.mark.parametrize("retry_after", [15.0, 86_400.0])
def test_accept_retry_after_trips_for_the_backends_retry_after(retry_after: float) -> None:
    clock = VirtualClock(0)
    breaker, seen = _breaker(clock, tripDuration="PT1M", acceptRetryAfter=True)
    breaker.record(429, retry_after=retry_after)
    clock.advance(retry_after - 1)
    assert breaker.is_open()
    clock.advance(1)
    assert not breaker.is_open()
    assert seen[0].until == pytest.approx(retry_after)


def test_max_trip_duration_caps_a_day_long_retry_after() -> None:
    clock = VirtualClock(0)
    breaker, seen = _breaker(clock, tripDuration="PT1M", acceptRetryAfter=True, maxTripDuration="PT5M")
    breaker.record(429, retry_after=86_400)
    assert breaker.retry_after() == pytest.approx(300)
    clock.advance(299.9)
    assert breaker.is_open()
    clock.advance(0.1)
    assert not breaker.is_open()
    assert seen[0].until == pytest.approx(300) and "maxTripDuration" in seen[0].reason
    # a Retry-After below the cap is kept as it is
    breaker.record(429, retry_after=20)
    assert seen[-1].until == pytest.approx(320)


def test_max_trip_duration_is_off_by_default_and_also_caps_trip_duration() -> None:
    assert _rule().maxTripDuration is None
    clock = VirtualClock(0)
    breaker, seen = _breaker(clock, tripDuration="PT10M", maxTripDuration=120)
    breaker.record(429)
    assert seen[0].until == pytest.approx(120)


def test_retry_after_is_ignored_unless_accepted() -> None:
    clock = VirtualClock(0)
    breaker, _ = _breaker(clock, tripDuration="PT1M")
    breaker.record(429, retry_after=86_400)
    clock.advance(60)
    assert not breaker.is_open()


def test_status_ranges_error_reasons_and_transport_failures_count() -> None:
    clock = VirtualClock(0)
    rule = {"failureCondition": {"count": 1, "statusCodeRanges": [{"min": 500, "max": 599}], "errorReasons": ["x"]}}
    breaker, _ = _breaker(clock, **rule)
    assert not breaker.is_failure(429) and breaker.is_failure(503)
    assert breaker.is_failure(None, "x") and breaker.is_failure(None, BACKEND_CONNECTION_FAILURE)
    assert not breaker.is_failure(200, "other")
    breaker.record(None, BACKEND_CONNECTION_FAILURE)
    assert breaker.is_open()


def test_failures_while_open_do_not_extend_the_trip() -> None:
    clock = VirtualClock(0)
    breaker, seen = _breaker(clock, tripDuration=10)
    breaker.record(429)
    clock.advance(5)
    assert breaker.record(429) is False
    clock.advance(5)
    assert not breaker.is_open() and len(seen) == 2


async def test_accept_retry_after_trips_for_the_retry_after_header_not_retry_after_ms() -> None:
    """APIM documents acceptRetryAfter with Retry-After (seconds): a 429 with `Retry-After: 1` and
    `retry-after-ms: 40` trips the member for 1 s, not 40 ms."""
    import httpx

    from harness.clock import VirtualClock
    from harness.gateway.app import build_gateway_app
    from harness.scenario import load_scenario_text

    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"retry-after": "1", "retry-after-ms": "40"}, json={"error": {"code": "429"}}
        )

    scenario = load_scenario_text(
        "backends: [{name: east}]\n"
        "gateway: {circuit_breaker: {failureCondition: {count: 1}, tripDuration: PT1M, acceptRetryAfter: true}}\n"
    )
    clock = VirtualClock(1_000.0)
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(throttled))
    app = build_gateway_app(scenario, clock, {"east": "http://east"}, None, upstream, keep_log_rows=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        answer = await client.post("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", json=body)
    assert answer.status_code == 429
    trips = [r for r in app.state.gateway.log.rows if r["kind"] == "breaker" and r["to"] == "open"]
    assert len(trips) == 1 and trips[0]["until"] - trips[0]["t"] == pytest.approx(1.0)
    await upstream.aclose()
