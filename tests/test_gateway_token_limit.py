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


def test_beyond_the_cap_only_a_key_whose_window_has_emptied_is_forgotten() -> None:
    clock = VirtualClock()
    limiter = _limiter(clock, **{"tokens-per-minute": 100, "max-counter-keys": 3})
    for key in ("a", "b", "c"):
        assert limiter.admit(key, prompt_tokens=100).allowed
    assert limiter.admit("d", prompt_tokens=1).allowed  # every key is live: "d" is held past the cap, counted
    assert len(limiter) == 4 and limiter.evicted == 0 and limiter.held_past_cap == 1
    assert not limiter.admit("a", prompt_tokens=1).allowed  # nobody's budget was reset
    clock.advance(60)  # the windows of a, b and c have emptied ("d" still holds its token)
    assert limiter.admit("e", prompt_tokens=1).allowed  # b and c, seen least recently, are forgotten
    assert limiter.evicted == 2 and len(limiter) == 3
    assert [key for key, _, _ in limiter.remaining_by_key(10)] == ["e", "a", "d"]


def test_a_forgotten_key_comes_back_with_the_quota_it_had_used() -> None:
    clock = VirtualClock(0)
    limiter = _limiter(
        clock, **{"tokens-per-minute": 100, "token-quota": 250, "token-quota-period": "Daily", "max-counter-keys": 1}
    )
    for _ in range(2):
        limiter.settle(limiter.admit("a", prompt_tokens=10), total_tokens=100)
        clock.advance(60)
    assert limiter.admit("b", prompt_tokens=10).allowed  # "a" is forgotten: its 200 quota tokens are kept
    assert limiter.evicted == 1 and limiter.spilled == 1
    clock.advance(60)
    back = limiter.admit("a", prompt_tokens=60)
    assert (back.status, back.remaining_quota) == (403, 50)
    clock.advance(86_400)  # a new day: the spill is emptied with the period
    assert limiter.spilled == 0 and limiter.admit("a", prompt_tokens=60).allowed


def test_a_refused_request_of_an_unknown_key_leaves_no_state() -> None:
    clock = VirtualClock(0)
    limiter = _limiter(clock, **{"tokens-per-minute": 100, "token-quota": 50, "max-counter-keys": 2})
    assert limiter.admit("victim", prompt_tokens=10).allowed
    for caller in range(1_000):  # prompts over the quota and over the minute: refused at no backend cost
        assert limiter.admit(f"filler-{caller}", prompt_tokens=60 + caller % 100).status in (403, 429)
    assert len(limiter) == 1 and limiter.evicted == 0 and limiter.spilled == 0


def test_a_ticket_settles_on_its_key_even_after_the_key_was_forgotten() -> None:
    clock = VirtualClock()
    limiter = _limiter(
        clock, **{"tokens-per-minute": 100, "token-quota": 1000, "max-counter-keys": 1, "estimate-prompt-tokens": False}
    )
    ticket = limiter.admit("a", prompt_tokens=10)  # charges nothing yet: the window stays empty
    assert limiter.admit("b", prompt_tokens=10).allowed  # forgets "a" while its request is in flight
    limiter.settle(ticket, total_tokens=60)  # the usage lands on "a" as it is now, not on forgotten windows
    assert (ticket.remaining_tokens, ticket.remaining_quota) == (40, 940)
    assert [key for key, _, _ in limiter.remaining_by_key(10)] == ["a"]  # held again; "b" (empty) forgotten


def test_a_victim_never_gets_more_than_its_limit_while_ten_thousand_callers_churn_a_cap_of_a_thousand() -> None:
    from bench.bench_counter_keys import CHURN, churn

    figures = churn(**CHURN)
    assert figures.fillers_seen == 10_000 and figures.evicted > 0  # the cap was under pressure
    assert 0 < figures.max_minute_tokens <= figures.tokens_per_minute
    assert 0 < figures.max_quota_tokens <= figures.quota
