"""Client retry profiles on a virtual clock: attempts and waits per SDK version for Retry-After 5, 90, 86400."""

from __future__ import annotations

import random

import pytest
from retry_driver import run_with_retries

from harness.client import ResponseInfo, decision_label, profile_for
from harness.client.profiles import CustomRetry, parse_retry_after
from harness.clock import VirtualClock


class ThrottlingServer:
    """Answers every attempt with a 429 carrying `Retry-After: seconds`; remembers when each attempt came."""

    def __init__(self, clock: VirtualClock, retry_after: str, ok_after: int | None = None) -> None:
        self.clock = clock
        self.retry_after = retry_after
        self.ok_after = ok_after
        self.arrivals: list[float] = []

    def __call__(self, attempt: int) -> tuple[ResponseInfo, int]:
        self.arrivals.append(self.clock.now())
        if self.ok_after is not None and attempt > self.ok_after:
            return ResponseInfo(200, {}), attempt
        return ResponseInfo(429, {"retry-after": self.retry_after}), attempt


def replay(profile_name: str, retry_after: str, seed: int = 1) -> tuple[int, list[float], list[str]]:
    clock = VirtualClock(start=1_000.0)
    server = ThrottlingServer(clock, retry_after)
    sources: list[str] = []
    outcome = run_with_retries(
        server,
        profile_for(profile_name, random.Random(seed)),
        clock,
        on_attempt=lambda n, info, detail, decision: sources.append(decision.source),
    )
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert outcome.attempts == len(server.arrivals)
    return outcome.attempts, gaps, sources


def test_openai_python_honours_5_seconds_twice() -> None:
    attempts, gaps, sources = replay("openai-python", "5")
    assert attempts == 3
    assert gaps == [5.0, 5.0]
    assert sources == ["retry-after", "retry-after", ""]


def test_openai_python_honours_90_seconds_under_its_120_second_cap() -> None:
    attempts, gaps, _ = replay("openai-python", "90")
    assert (attempts, gaps) == (3, [90.0, 90.0])


def test_openai_python_does_not_retry_a_one_day_retry_after() -> None:
    attempts, gaps, sources = replay("openai-python", "86400")
    assert (attempts, gaps, sources) == (1, [], [""])


def test_legacy_honours_5_seconds() -> None:
    attempts, gaps, _ = replay("openai-python-legacy", "5")
    assert (attempts, gaps) == (3, [5.0, 5.0])


@pytest.mark.parametrize("retry_after", ["90", "86400"])
def test_legacy_falls_back_to_its_own_backoff_above_60_seconds_and_still_retries(retry_after: str) -> None:
    attempts, gaps, sources = replay("openai-python-legacy", retry_after, seed=7)
    rng = random.Random(7)
    expected = [0.5 * (1 - 0.25 * rng.random()), 1.0 * (1 - 0.25 * rng.random())]
    assert attempts == 3
    assert gaps == pytest.approx(expected)
    assert 0.375 <= gaps[0] <= 0.5 and 0.75 <= gaps[1] <= 1.0
    assert sources[:2] == ["backoff", "backoff"]


@pytest.mark.parametrize("retry_after", ["5", "90", "86400"])
def test_none_profile_sends_once(retry_after: str) -> None:
    assert replay("none", retry_after)[:2] == (1, [])


def test_backoff_doubles_and_caps_at_8_seconds() -> None:
    profile = CustomRetry(max_retries=6, jitter=0.0, rng=random.Random(0))
    waits = [profile.decide(n, ResponseInfo(500)).wait_s for n in range(1, 7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert profile_for("openai-python").decide(1, ResponseInfo(status)).retry


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_not_retried(status: int) -> None:
    decision = profile_for("openai-python").decide(1, ResponseInfo(status))
    assert not decision.retry
    assert decision_label(ResponseInfo(status), decision) == "fail"


def test_x_should_retry_overrides_the_status() -> None:
    profile = profile_for("openai-python")
    assert profile.decide(1, ResponseInfo(400, {"x-should-retry": "true"})).retry
    assert not profile.decide(1, ResponseInfo(503, {"x-should-retry": "false"})).retry


def test_the_cap_is_checked_before_x_should_retry_in_current_sdk() -> None:
    forced = ResponseInfo(429, {"x-should-retry": "true", "retry-after": "121"})
    assert not profile_for("openai-python").decide(1, forced).retry
    assert profile_for("openai-python-legacy").decide(1, forced).retry


def test_timeouts_and_connection_errors_are_retried_with_backoff() -> None:
    for error in ("timeout", "connection"):
        decision = profile_for("openai-python").decide(1, ResponseInfo(0, {}, error=error))
        assert decision.retry and decision.source == "backoff"


def test_retry_after_ms_wins_over_retry_after() -> None:
    decision = profile_for("openai-python").decide(1, ResponseInfo(429, {"retry-after-ms": "2500", "retry-after": "9"}))
    assert (decision.wait_s, decision.source) == (2.5, "retry-after-ms")


def test_zero_or_negative_retry_after_falls_back_to_backoff() -> None:
    for value in ("0", "-3"):
        decision = profile_for("openai-python").decide(1, ResponseInfo(429, {"retry-after": value}))
        assert decision.source == "backoff"


def test_http_date_retry_after_is_relative_to_scenario_now() -> None:
    date = "Wed, 21 Oct 2015 07:28:30 GMT"  # 1445412510 on the epoch scale
    assert parse_retry_after({"retry-after": date}, now=1445412500.0, overflow_sentinel=None) == (10.0, "retry-after")


def test_retries_exhausted_is_a_give_up() -> None:
    profile = profile_for("openai-python")
    last = ResponseInfo(429, {"retry-after": "1"})
    decision = profile.decide(3, last)
    assert not decision.retry and decision_label(last, decision) == "give_up"
    above_cap = ResponseInfo(429, {"retry-after": "86400"})
    assert decision_label(above_cap, profile.decide(1, above_cap)) == "give_up"


def test_custom_profile_settings_apply() -> None:
    profile = profile_for("custom", random.Random(0), max_retries=5, honour_cap=10.0, give_up_above_cap=False)
    attempts, gaps = 0, []
    clock = VirtualClock()
    server = ThrottlingServer(clock, "30")
    outcome = run_with_retries(server, profile, clock)
    attempts = outcome.attempts
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert attempts == 6
    assert all(g < 10 for g in gaps)  # 30 s is above the 10 s cap: own backoff instead


def test_success_after_retries_stops() -> None:
    clock = VirtualClock()
    server = ThrottlingServer(clock, "2", ok_after=1)
    outcome = run_with_retries(server, profile_for("openai-python"), clock)
    assert outcome.attempts == 2 and outcome.response.status == 200 and outcome.waited_s == 2.0


def test_azure_openai_benchmark_profile_stops_after_a_minute_of_waiting() -> None:
    clock = VirtualClock()
    server = ThrottlingServer(clock, "5")
    server.retry_after = "5"

    def send(attempt: int) -> tuple[ResponseInfo, int]:
        server.arrivals.append(clock.now())
        return ResponseInfo(429, {"retry-after-ms": "20000"}), attempt

    outcome = run_with_retries(send, profile_for("azure-openai-benchmark"), clock)
    assert outcome.attempts == 4  # waits 20 + 20 + 20 = 60 s, a fourth wait would pass 60 s
    assert outcome.waited_s == 60.0
    assert not profile_for("azure-openai-benchmark").decide(1, ResponseInfo(500)).retry


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown client profile 'openai-go'"):
        profile_for("openai-go")
