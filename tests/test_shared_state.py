"""The replicas' shared state on a real redis-server, driven by a virtual clock.

The shared token limiter and breaker must decide as the in-memory ones do (they are the same rules, kept in
Lua), share their counts across replicas atomically, and fail open when Redis stops answering.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.clock import VirtualClock
from harness.gateway.breaker import CircuitBreaker, Transition
from harness.gateway.redis_server import RedisServer
from harness.gateway.shared_state import TOKEN_ADMISSION, SharedState, SharedTokenLimiter
from harness.gateway.token_limit import TokenLimiter
from harness.records import SHARED_STATE_LOST
from harness.scenario.gateway import CircuitBreakerRule, TokenLimit
from tests.redis_helpers import redis_server_or_skip

START = 1_767_225_600.0 + 3_000  # 2026-01-01 00:50 UTC: an hourly quota period ends within the test


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server_or_skip() as url:
        yield url


def shared(url: str, clock: VirtualClock, prefix: str, events: list[tuple[str, str, int]] | None = None) -> SharedState:
    listener = None if events is None else lambda state, reason, n: events.append((state, reason, n))
    return SharedState(url, prefix, clock, listener)


def test_the_shared_limiter_decides_as_the_in_memory_one(redis_url: str) -> None:
    policy = TokenLimit.model_validate(
        {"tokens-per-minute": 5_000, "token-quota": 40_000, "token-quota-period": "Hourly"}
    )
    clock = VirtualClock(START)
    local = TokenLimiter(policy, clock)
    remote = SharedTokenLimiter(policy, clock, shared(redis_url, clock, f"t{uuid.uuid4().hex}:"))
    rng = random.Random(7)
    statuses: set[int] = set()
    for _ in range(400):
        clock.advance(rng.choice([0.0, 0.05, 0.5, 1.0, 3.0, 7.0]))
        key = rng.choice(["a", "b"])
        prompt = rng.randint(1, 900)
        stream = rng.random() < 0.3
        ours, theirs = local.admit(key, prompt, stream or None), remote.admit(key, prompt, stream or None)
        assert (theirs.allowed, theirs.status, theirs.retry_after) == (ours.allowed, ours.status, ours.retry_after)
        assert (theirs.remaining_tokens, theirs.remaining_quota) == (ours.remaining_tokens, ours.remaining_quota)
        statuses.add(ours.status)
        if ours.allowed:
            total = prompt + rng.randint(0, 400) if rng.random() < 0.9 else 0
            local.settle(ours, total)
            remote.settle(theirs, total)
            assert theirs.remaining_tokens == ours.remaining_tokens
            assert theirs.remaining_quota == ours.remaining_quota
    assert statuses == {200, 429, 403}  # the sequence met both limits (and crossed into a new hour)
    # /metrics: the keys this replica saw through Redis, newest first, with what Redis said was left
    shown = list(remote.remaining_by_key(10))
    assert len(remote) == 2 and sorted(key for key, _, _ in shown) == ["a", "b"]


def test_replicas_sharing_a_counter_admit_no_more_than_one_gateway(redis_url: str) -> None:
    policy = TokenLimit.model_validate({"tokens-per-minute": 10_000})
    clock = VirtualClock(START)
    prefix = f"t{uuid.uuid4().hex}:"
    replicas = [SharedTokenLimiter(policy, clock, shared(redis_url, clock, prefix)) for _ in range(3)]
    alone = [TokenLimiter(policy, clock) for _ in range(3)]
    admitted_shared = admitted_alone = 0
    for i in range(300):  # 300 requests of 500 tokens within 30 s, round-robin over 3 replicas
        clock.advance(0.1)
        ticket = replicas[i % 3].admit("app", 500, True)
        admitted_shared += 500 * ticket.allowed
        admitted_alone += 500 * alone[i % 3].admit("app", 500, True).allowed
    assert admitted_shared == 10_000
    assert admitted_alone == 30_000  # per-replica counters: each replica gives the app its whole limit


def test_refused_requests_of_unknown_callers_leave_nothing_on_redis(redis_url: str) -> None:
    import redis

    policy = TokenLimit.model_validate({"tokens-per-minute": 100, "token-quota": 1_000, "token-quota-period": "Hourly"})
    clock = VirtualClock(START)
    prefix = f"t{uuid.uuid4().hex}:"
    limiter = SharedTokenLimiter(policy, clock, shared(redis_url, clock, prefix))
    assert limiter.admit("victim", 50, True).allowed
    for caller in range(200):  # prompts over the minute's limit and over the quota: refused at no backend cost
        assert limiter.admit(f"filler-{caller}", 101 + caller * 10, True).status in (403, 429)
    keys = redis.Redis.from_url(redis_url, decode_responses=True).keys(prefix + "*")
    assert keys and all(":victim:" in key for key in keys)
    assert len(limiter) == 1 and [key for key, _, _ in limiter.remaining_by_key(10)] == ["victim"]


def test_the_harness_redis_requires_a_password_it_never_puts_on_a_command_line() -> None:
    import redis

    server = RedisServer()
    with redis_server_or_skip(server) as url:
        assert server.process is not None and server.password_file is not None
        password = server.password_file.read_text().strip()
        assert len(password) >= 32 and f":{password}@" in url and password not in server.public_url
        assert server.password_file.stat().st_mode & 0o077 == 0  # the owner's only
        stranger = redis.Redis.from_url(server.public_url, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            stranger.ping()
        stranger.close()
        assert redis.Redis.from_url(url, socket_timeout=2).ping()
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().decode()
        assert password not in command_line and "requirepass" not in command_line


def rule(count: int = 2, trip: float = 30.0) -> CircuitBreakerRule:
    return CircuitBreakerRule.model_validate(
        {
            "failureCondition": {"count": count, "interval": 10, "statusCodeRanges": [{"min": 429, "max": 429}]},
            "tripDuration": trip,
        }
    )


def test_a_trip_on_one_replica_opens_the_breaker_of_the_others(redis_url: str) -> None:
    clock = VirtualClock(START)
    prefix = f"t{uuid.uuid4().hex}:"
    seen: list[list[Transition]] = [[], [], []]
    states = [shared(redis_url, clock, prefix) for _ in range(3)]
    breakers = [s.breaker("ptu", rule(), clock, seen[i].append) for i, s in enumerate(states)]
    assert breakers[0].record(429) is False
    clock.advance(1)
    assert breakers[1].record(429) is True  # the second failure within 10 s, on another replica, trips it
    assert [t.to_state for t in seen[1]] == ["open"] and not seen[0] and not seen[2]
    assert not breakers[2].is_open()  # not read yet
    states[2].read_trips()  # what a replica does before choosing a member (or its admission does)
    assert breakers[2].is_open() and breakers[2].retry_after() == pytest.approx(30)
    limiter = SharedTokenLimiter(TokenLimit.model_validate({"tokens-per-minute": 100}), clock, states[0])
    assert limiter.admit("app", 10, True).shared and breakers[0].is_open()  # an admission reads the trips too
    clock.advance(30)
    states[2].read_trips()
    assert not any(b.is_open() for b in breakers)
    # one trip, one close, told by the replica that tripped it only
    assert [t.to_state for t in seen[1]] == ["open", "closed"] and not seen[0] and not seen[2]


def test_shared_breaker_counts_as_the_in_memory_one_by_percentage(redis_url: str) -> None:
    by_percentage = CircuitBreakerRule.model_validate(
        {
            "failureCondition": {"percentage": 50, "interval": 10, "statusCodeRanges": [{"min": 500, "max": 599}]},
            "tripDuration": 5,
        }
    )
    clock = VirtualClock(START)
    local = CircuitBreaker("a", by_percentage, clock)
    remote = shared(redis_url, clock, f"t{uuid.uuid4().hex}:").breaker("a", by_percentage, clock, None)
    rng = random.Random(3)
    for _ in range(300):
        clock.advance(rng.choice([0.1, 0.4, 2.0]))
        status = rng.choice([200, 200, 200, 500, 503])
        assert remote.record(status) == local.record(status)
        assert remote.is_open() == local.is_open()


def test_redis_gone_fails_open_to_the_replicas_own_counters() -> None:
    server = RedisServer()
    with redis_server_or_skip(server) as url:
        clock = VirtualClock(START)
        events: list[tuple[str, str, int]] = []
        state = shared(url, clock, "gone:", events)
        limiter = SharedTokenLimiter(TokenLimit.model_validate({"tokens-per-minute": 1_000}), clock, state)
        assert limiter.admit("app", 600, True).shared
        server.stop()  # Redis dies mid-run
        first = limiter.admit("app", 600, True)
        assert first.allowed and not first.shared  # this replica's own (empty) counter decides: fail open
        assert limiter.admit("app", 600, True).status == 429  # ...and it still limits on its own
        assert events[0][0] == SHARED_STATE_LOST and "Error" in events[0][1]
        assert state.fallbacks[TOKEN_ADMISSION] == 2 and state.losses == 1 and not state.up
