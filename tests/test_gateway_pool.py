"""Pool selection: priority groups fall through only when tripped; weights exact; latency-aware choice."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.clock import VirtualClock
from harness.gateway.breaker import CircuitBreaker
from harness.gateway.pool import Member, Pool
from harness.scenario.gateway import CircuitBreakerRule


def _breakers(clock: VirtualClock, *names: str) -> dict[str, CircuitBreaker]:
    rule = CircuitBreakerRule(tripDuration=60)
    return {name: CircuitBreaker(name, rule, clock) for name in names}


def test_weights_are_honoured_within_5_percent_over_10000_picks() -> None:
    pool = Pool([Member("a", 1, 5), Member("b", 1, 3), Member("c", 1, 2), Member("low", 2, 100)], "weighted")
    picks = Counter(pool.choose() for _ in range(10_000))
    assert set(picks) == {"a", "b", "c"}  # the priority-2 member never serves while group 1 is available
    for name, share in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert picks[name] / 10_000 == pytest.approx(share, rel=0.05)


def test_round_robin_ignores_weights_and_alternates() -> None:
    pool = Pool([Member("a", 1, 9), Member("b", 1, 1)], "round-robin")
    assert [pool.choose() for _ in range(6)] == ["a", "b", "a", "b", "a", "b"]


def test_lower_priority_serves_only_when_every_higher_member_is_tripped() -> None:
    clock = VirtualClock()
    breakers = _breakers(clock, "p1a", "p1b", "p2")
    pool = Pool([Member("p1a", 1), Member("p1b", 1), Member("p2", 2)], breakers=breakers)
    breakers["p1a"].record(429)
    assert {pool.choose() for _ in range(10)} == {"p1b"}  # one p1 member left: no fall-through yet
    breakers["p1b"].record(429)
    assert {pool.choose() for _ in range(10)} == {"p2"}
    clock.advance(60)
    assert {pool.choose() for _ in range(10)} == {"p1a", "p1b"}


def test_a_member_answering_429_without_a_tripped_breaker_is_not_skipped() -> None:
    clock = VirtualClock()
    rule = CircuitBreakerRule.model_validate({"failureCondition": {"count": 3}})
    breakers = {n: CircuitBreaker(n, rule, clock) for n in ("p1", "p2")}
    pool = Pool([Member("p1", 1), Member("p2", 2)], breakers=breakers)
    breakers["p1"].record(429)
    breakers["p1"].record(429)
    assert pool.choose() == "p1"


def test_all_tripped_gives_none_and_the_soonest_retry_after() -> None:
    clock = VirtualClock()
    breakers = _breakers(clock, "a", "b")
    pool = Pool([Member("a"), Member("b", 2)], breakers=breakers)
    breakers["a"].record(429)
    clock.advance(20)
    breakers["b"].record(429)
    assert pool.choose() is None
    assert pool.soonest_retry_after() == pytest.approx(40)


def test_excluded_members_let_a_retry_move_on_and_fall_through() -> None:
    pool = Pool([Member("a", 1), Member("b", 1), Member("c", 2)])
    assert pool.choose(exclude={"a"}) == "b"
    assert pool.choose(exclude={"a", "b"}) == "c"
    assert pool.choose(exclude={"a", "b", "c"}) is None


def test_latency_selection_prefers_the_fastest_member_but_keeps_probing() -> None:
    pool = Pool([Member("slow"), Member("fast"), Member("mid")], "latency", latency_probe_every=10)
    first = [pool.choose() for _ in range(3)]
    assert sorted(first) == ["fast", "mid", "slow"]  # unmeasured members are tried first
    for _ in range(5):
        pool.observe_latency("slow", 2.0)
        pool.observe_latency("fast", 0.2)
        pool.observe_latency("mid", 0.8)
    picks = Counter(pool.choose() for _ in range(100))
    assert picks["fast"] >= 85
    assert picks["slow"] > 0 and picks["mid"] > 0  # every tenth pick probes the others


def test_latency_moving_average_follows_a_member_that_slows_down() -> None:
    pool = Pool([Member("a"), Member("b")], "latency", latency_smoothing=0.5, latency_probe_every=1000)
    pool.observe_latency("a", 0.1)
    pool.observe_latency("b", 0.3)
    assert pool.choose() == "a"
    for _ in range(4):
        pool.observe_latency("a", 1.0)
    assert pool.choose() == "b"
