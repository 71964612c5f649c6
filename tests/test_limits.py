"""Window counters and the leaky bucket, on a virtual clock."""

import math

import pytest

from harness.clock import VirtualClock
from harness.limits import LeakyBucket, SlidingWindow


def test_sliding_window_rejects_over_limit_and_frees_as_entries_age_out() -> None:
    clock = VirtualClock()
    window = SlidingWindow(limit=100, seconds=60, clock=clock)
    assert window.acquire(60).remaining == 40
    clock.advance(20)
    assert window.acquire(40).allowed
    rejected = window.acquire(10)
    assert not rejected.allowed and rejected.remaining == 0
    # the first 60 units leave the window at t=60, i.e. 40 s from now
    assert rejected.retry_after == pytest.approx(40.0)
    clock.advance(39.9)
    assert not window.acquire(10).allowed
    clock.advance(0.1)
    assert window.acquire(10).allowed
    assert window.remaining() == 100 - 40 - 10


def test_retry_after_is_the_time_until_the_request_fits() -> None:
    clock = VirtualClock()
    window = SlidingWindow(limit=100, seconds=60, clock=clock)
    for _ in range(4):  # 25 units at t = 0, 10, 20, 30
        window.acquire(25)
        clock.advance(10)
    # at t=40 the window is full; 60 units need the first three spendings to age out (t=80)
    decision = window.peek(60)
    assert not decision.allowed and decision.retry_after == pytest.approx(40.0)
    assert window.peek(20).retry_after == pytest.approx(20.0)


def test_a_request_larger_than_the_limit_never_fits() -> None:
    window = SlidingWindow(limit=10, seconds=10, clock=VirtualClock())
    assert math.isinf(window.acquire(11).retry_after)


def test_charge_spends_even_when_over_limit_and_refund_gives_back() -> None:
    clock = VirtualClock()
    window = SlidingWindow(limit=2, seconds=10, clock=clock)
    window.charge(1)
    window.charge(1)
    window.charge(1)
    assert window.used == 3 and window.remaining() == 0
    window.refund(2)
    assert window.used == 1


def test_window_memory_stays_bounded_at_high_rates() -> None:
    clock = VirtualClock()
    window = SlidingWindow(limit=10**9, seconds=60, clock=clock, resolution=600)
    for _ in range(100_000):
        window.acquire(1)
        clock.advance(0.001)
    live_buckets = (len(window._buckets) - window._head) // 3
    assert live_buckets <= 601
    # expired buckets are dropped in batches: the array never holds more than twice the live ones (plus a batch)
    assert len(window._buckets) <= 3 * (2 * 601 + 64)


def test_leaky_bucket_drains_and_admits_bursts_up_to_full() -> None:
    clock = VirtualClock()
    bucket = LeakyBucket(capacity=1000, rate=10, clock=clock)
    assert bucket.acquire(900).allowed
    assert bucket.acquire(300).allowed  # admitted while <= 100 %, may overshoot
    assert bucket.utilization() == pytest.approx(120.0)
    over = bucket.acquire(1)
    assert not over.allowed and over.retry_after == pytest.approx(20.0)  # 200 units above full at 10/s
    clock.advance(20)
    assert bucket.utilization() == pytest.approx(100.0)
    assert bucket.acquire(1).allowed
    bucket.adjust(-501)
    assert bucket.utilization() == pytest.approx(50.0)
    clock.advance(1000)
    assert bucket.level == 0.0
