"""Token limit state: TPM window (429), calendar quota (403), estimate true/false, per key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.clock import VirtualClock
from harness.gateway.token_limit import TokenLimiter
from harness.limits import CalendarWindow, calendar_window
from harness.scenario.gateway import TokenLimit


def _limiter(clock: VirtualClock, **fields: object) -> TokenLimiter:
    return TokenLimiter(TokenLimit.model_validate(fields), clock)


def test_estimate_true_charges_the_prompt_then_corrects_to_usage() -> None:
    clock = VirtualClock(0)
    limiter = _limiter(clock, **{"tokens-per-minute": 1000})
    ticket = limiter.admit("a", prompt_tokens=100)
    assert ticket.allowed and ticket.charged == 100 and ticket.remaining_tokens == 900
    settled = limiter.settle(ticket, total_tokens=160)
    assert settled.remaining_tokens == 840
    small = limiter.settle(limiter.admit("a", prompt_tokens=100), total_tokens=40)
    assert small.remaining_tokens == 800


def test_estimate_true_refuses_a_prompt_that_does_not_fit_with_retry_after() -> None:
    clock = VirtualClock(0)
    limiter = _limiter(clock, **{"tokens-per-minute": 100})
    limiter.settle(limiter.admit("a", 50), 80)
    clock.advance(10)
    refused = limiter.admit("a", 30)
    assert (refused.allowed, refused.status) == (False, 429)
    assert refused.retry_after == pytest.approx(50)  # the 80 tokens age out 60 s after they were spent
    assert limiter.admit("b", 30).allowed  # another key has its own window
    clock.advance(50)
    assert limiter.admit("a", 30).allowed


def test_estimate_false_lets_a_burst_overshoot_then_blocks_until_reset() -> None:
    clock = VirtualClock(0)
    limiter = _limiter(clock, **{"tokens-per-minute": 100, "estimate-prompt-tokens": False})
    burst = [limiter.admit("a", prompt_tokens=10_000) for _ in range(5)]  # the prompt is not looked at
    assert all(t.allowed and t.charged == 0 for t in burst)
    for ticket in burst:
        limiter.settle(ticket, total_tokens=60)  # 300 tokens against a 100 TPM limit
    clock.advance(30)
    blocked = limiter.admit("a", 1)
    assert blocked.status == 429 and blocked.retry_after == pytest.approx(30)
    clock.advance(30)
    assert limiter.admit("a", 1).allowed


def test_quota_is_a_utc_calendar_window_and_answers_403() -> None:
    start = datetime(2026, 3, 31, 23, 0, tzinfo=UTC).timestamp()
    clock = VirtualClock(start)
    limiter = _limiter(clock, **{"token-quota": 100, "token-quota-period": "Daily", "tokens-per-minute": 10_000})
    limiter.settle(limiter.admit("a", 10), 100)
    refused = limiter.admit("a", 10)
    assert (refused.status, refused.retry_after, refused.remaining_quota) == (403, 3600, 0)
    clock.advance(3600)  # midnight UTC: a new day, a new quota
    assert limiter.admit("a", 10).allowed


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("Hourly", datetime(2026, 5, 6, 7, 8, 9), datetime(2026, 5, 6, 7), datetime(2026, 5, 6, 8)),
        ("Daily", datetime(2026, 5, 6, 7, 8, 9), datetime(2026, 5, 6), datetime(2026, 5, 7)),
        ("Weekly", datetime(2026, 5, 6, 7, 8, 9), datetime(2026, 5, 4), datetime(2026, 5, 11)),
        ("Monthly", datetime(2026, 12, 6, 7), datetime(2026, 12, 1), datetime(2027, 1, 1)),
        ("Yearly", datetime(2026, 5, 6, 7), datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ],
)
def test_calendar_windows_truncate_in_utc(period: str, at: datetime, start: datetime, end: datetime) -> None:
    utc = [d.replace(tzinfo=UTC).timestamp() for d in (at, start, end)]
    assert calendar_window(period, utc[0]) == (utc[1], utc[2])


def test_calendar_window_refund_and_charge_past_the_limit() -> None:
    clock = VirtualClock(0)
    window = CalendarWindow(10, "Hourly", clock)
    window.charge(15)
    assert window.remaining() == 0 and not window.peek(1).allowed
    window.refund(10)
    assert window.remaining() == 5


def test_a_prompt_larger_than_the_limit_waits_a_full_window_not_zero() -> None:
    limiter = _limiter(VirtualClock(0), **{"tokens-per-minute": 10})
    refused = limiter.admit("a", 50)
    assert refused.status == 429 and refused.retry_after == 60


def test_keys_beyond_the_cap_forget_the_least_recently_seen_one() -> None:
    clock = VirtualClock()
    limiter = _limiter(clock, **{"tokens-per-minute": 100, "max-counter-keys": 3})
    for key in ("a", "b", "c"):
        assert limiter.admit(key, prompt_tokens=100).allowed
    assert not limiter.admit("a", prompt_tokens=1).allowed  # "a" is full, and now the most recently seen
    limiter.admit("d", prompt_tokens=1)  # a fourth key: "b", the least recently seen, is forgotten
    assert len(limiter) == 3 and limiter.evicted == 1
    assert [key for key, _, _ in limiter.remaining_by_key(10)] == ["d", "a", "c"]
    assert not limiter.admit("a", prompt_tokens=1).allowed  # kept: still at its limit
    assert limiter.admit("b", prompt_tokens=100).allowed  # forgotten: its window starts afresh
    assert limiter.evicted == 2


def test_a_ticket_settles_against_its_own_windows_even_after_its_key_was_forgotten() -> None:
    clock = VirtualClock()
    limiter = _limiter(clock, **{"tokens-per-minute": 100, "max-counter-keys": 1})
    ticket = limiter.admit("a", prompt_tokens=10)
    limiter.admit("b", prompt_tokens=10)  # forgets "a" while its request is in flight
    limiter.settle(ticket, total_tokens=60)
    assert ticket.remaining_tokens == 40
    assert [key for key, _, _ in limiter.remaining_by_key(10)] == ["b"]  # settling did not bring "a" back
