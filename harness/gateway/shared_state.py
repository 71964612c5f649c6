"""`gateway.shared_state: redis`: the replicas' token-limit counters, quotas and breaker trips kept on Redis.

Each decision is one Lua script (`harness.gateway.shared_lua`), so concurrent replicas cannot admit more than
one gateway would: an app gets its limit, not `replicas` times it. Breaker trips are shared too: the replica
whose outcome trips a member writes when it closes, and every replica reads the pool's trips before choosing
a member, so no replica sends a request to a member tripped elsewhere.

A request costs two round trips: its admission (which reads the pool's trips too) and its settlement, plus one
per failed attempt (a success changes nothing a count-based breaker keeps), or one MGET of the trips instead
of the admission when the gateway has no token limit. The client is synchronous on purpose: the token limiter
and the breakers are the synchronous cores the simulator also drives, and a loopback round trip (~50 µs for a
PING, 100-250 µs for a script) costs less than a turn of the event loop would.

Redis keeps no cap on callers, so it never forgets a budget early: a caller's minute window expires a minute
after its last spending and its quota at the end of the period, and a request refused for an unknown caller
writes nothing (the admission script reads the quota without creating it). This replica's view of what Redis
said each key has left, for /metrics, is bounded by `max-counter-keys` and is display only.

**When Redis fails** the gateway fails open, as LiteLLM and Envoy's global rate limit do: a decision Redis
cannot make is made by this replica's own counters (APIM's behaviour), the call is not tried again for
`RETRY_AFTER_WALL_S`, each such decision is counted in /metrics (`gateway_shared_state_fallbacks_total`)
and the loss and the return of Redis are rows of the gateway log, which the report reads. A timeout bounds
a hung server's cost to `TIMEOUT_WALL_S` once per retry period.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.clock import Clock
from harness.gateway.breaker import BreakerListener, CircuitBreaker, Transition
from harness.gateway.shared_lua import BREAKER_RECORD, TOKEN_ADMIT, TOKEN_SETTLE
from harness.gateway.token_limit import MINUTE, Ticket, TokenLimiter, refused
from harness.limits import calendar_window
from harness.records import SHARED_STATE_LOST, SHARED_STATE_RESTORED
from harness.scenario.gateway import CircuitBreakerRule, TokenLimit

TIMEOUT_WALL_S = 0.25  # a Redis call that takes longer fails open
RETRY_AFTER_WALL_S = 1.0  # after a failure, this long on the replica's own counters before Redis is tried again
RESOLUTION = 600  # buckets per window, as harness.limits.SlidingWindow

# operations, as /metrics and the log name them
TOKEN_ADMISSION = "token_admission"
TOKEN_SETTLEMENT = "token_settlement"
BREAKER_OUTCOME = "breaker_outcome"
BREAKER_READ = "breaker_read"

# told when Redis is lost or answers again: (SHARED_STATE_LOST or SHARED_STATE_RESTORED, why, fallbacks so far)
StateListener = Callable[[str, str, int], None]


class SharedState:
    """A Redis connection that fails open: `call` returns None when Redis cannot answer (counted by operation)."""

    def __init__(self, url: str, prefix: str, clock: Clock, listener: StateListener | None = None) -> None:
        self.prefix = prefix  # one run's keys: replicas of a run share them, other runs on the server do not
        self.clock = clock
        self.listener = listener
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_WALL_S,
            socket_connect_timeout=TIMEOUT_WALL_S,
            retry=Retry(NoBackoff(), 0),  # a failed call fails open at once; the next try is after RETRY_AFTER
            decode_responses=True,
        )
        self._admit = self.client.register_script(TOKEN_ADMIT)
        self._settle = self.client.register_script(TOKEN_SETTLE)
        self._breaker = self.client.register_script(BREAKER_RECORD)
        self.breakers: dict[str, SharedCircuitBreaker] = {}  # the pool's, whose trips each admission reads
        self.up = True
        self.fallbacks: Counter[str] = Counter()
        self.losses = 0
        self._retry_at = 0.0  # monotonic wall time before which Redis is not asked

    def breaker(
        self, backend: str, rule: CircuitBreakerRule, clock: Clock, listener: BreakerListener | None
    ) -> SharedCircuitBreaker:
        """A breaker of `backend` shared through this state (the `make` of build_breakers)."""
        breaker = self.breakers[backend] = SharedCircuitBreaker(backend, rule, clock, listener, self)
        return breaker

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def wall_ms(self, scenario_seconds: float) -> int:
        """Milliseconds of wall time a key must live to cover `scenario_seconds` (Redis expires in wall time)."""
        return max(1000, math.ceil(scenario_seconds / self.clock.scale * 1000) + 1000)

    def call(self, operation: str, run: Callable[[], Any]) -> Any:
        """`run()` against Redis, or None (counted as a fallback of `operation`) when Redis cannot answer."""
        if not self.up and time.monotonic() < self._retry_at:
            self.fallbacks[operation] += 1
            return None
        try:
            answer = run()
        except (redis.RedisError, OSError) as exc:
            self.fallbacks[operation] += 1
            self._retry_at = time.monotonic() + RETRY_AFTER_WALL_S
            if self.up:
                self.up = False
                self.losses += 1
                self._tell(SHARED_STATE_LOST, f"{type(exc).__name__}: {exc}")
            return None
        if not self.up:
            self.up = True
            self._tell(SHARED_STATE_RESTORED, "answering again")
        return answer

    def _tell(self, state: str, reason: str) -> None:
        if self.listener is not None:
            self.listener(state, reason, sum(self.fallbacks.values()))

    def close(self) -> None:
        self.client.close()

    # -- the scripts ------------------------------------------------------------------------------------------

    def admit_tokens(self, key: str, policy: TokenLimit, need: int, charge: int) -> list[str] | None:
        """The admission's status, waits and counts; the pool's trips it read are adopted by the breakers."""
        now = self.clock.now()
        keys, limits = self._token_args(key, policy, now)
        keys += [self._until_key(backend) for backend in self.breakers]
        args = [now, need, charge, *limits]
        answer: list[str] | None = self.call(TOKEN_ADMISSION, lambda: self._admit(keys=keys, args=args))
        if answer is None:
            return None
        self._adopt([float(until) if until else None for until in answer[5:]])
        return answer[:5]

    def read_trips(self) -> None:
        """Open the breakers of members another replica tripped, in one MGET."""
        if not self.breakers:
            return
        keys = [self._until_key(backend) for backend in self.breakers]
        values = self.call(BREAKER_READ, lambda: self.client.mget(keys))
        if values is not None:
            self._adopt([float(until) if until is not None else None for until in values])

    def _adopt(self, until: list[float | None]) -> None:
        for breaker, ends in zip(self.breakers.values(), until, strict=True):
            breaker.adopt(ends)

    def _until_key(self, backend: str) -> str:
        return self.key("breaker", backend, "until")

    def settle_tokens(self, key: str, policy: TokenLimit, delta: int) -> list[str] | None:
        now = self.clock.now()
        keys, limits = self._token_args(key, policy, now)
        args = [now, delta, *limits]
        return self.call(TOKEN_SETTLEMENT, lambda: self._settle(keys=keys, args=args))

    def _token_args(self, key: str, policy: TokenLimit, now: float) -> tuple[list[str], list[float]]:
        tpm = policy.tokens_per_minute or 0
        quota = policy.token_quota or 0
        quota_end = calendar_window(policy.token_quota_period, now)[1] if quota else 0.0
        keys = [
            self.key("tokens", key, "minute"),
            self.key("tokens", key, "minute-used"),
            self.key("tokens", key, "quota"),
        ]
        limits = [
            tpm,
            MINUTE,
            MINUTE / RESOLUTION,
            self.wall_ms(MINUTE),
            quota,
            quota_end,
            self.wall_ms(quota_end - now) if quota else 0,
        ]
        return keys, limits

    def record_outcome(self, backend: str, rule: CircuitBreakerRule, failed: bool, duration: float) -> list[str] | None:
        now = self.clock.now()
        condition = rule.failureCondition
        interval = condition.interval
        parts = ("failures", "failures-used", "requests", "requests-used")
        keys = [self.key("breaker", backend, part) for part in parts] + [self._until_key(backend)]
        percentage = condition.percentage if condition.percentage is not None else -1
        args = [
            now,
            int(failed),
            condition.count or 1,
            percentage,
            interval,
            interval / RESOLUTION,
            self.wall_ms(interval),
            duration,
            self.wall_ms(duration),
        ]
        return self.call(BREAKER_OUTCOME, lambda: self._breaker(keys=keys, args=args))


class SharedTokenLimiter(TokenLimiter):
    """The token limit with its counters on Redis; this replica's own counters while Redis cannot answer."""

    def __init__(self, policy: TokenLimit, clock: Clock, shared: SharedState) -> None:
        super().__init__(policy, clock)
        self.shared = shared
        # the last remaining tokens/quota Redis gave per key, for /metrics (bounded like the counters)
        self._last: OrderedDict[str, tuple[int | None, int | None]] = OrderedDict()

    def admit(self, key: str, prompt_tokens: int, estimate: bool | None = None) -> Ticket:
        charge = self.admission_charge(prompt_tokens, estimate)
        answer = self.shared.admit_tokens(key, self.policy, max(1, charge), charge)
        if answer is None:
            return super().admit(key, prompt_tokens, estimate)
        status, retry_after, reset_after, used, quota_used = answer
        remaining = self._remaining_of(float(used), float(quota_used))
        if status != "200":
            retry = float(retry_after)
            # a refusal is remembered for nobody: it must not push an admitted key out of what /metrics shows
            return refused(key, int(status), retry if retry >= 0 else math.inf, float(reset_after), **remaining)
        self._remember(key, remaining)
        return Ticket(key, True, charged=charge, shared=True, **remaining)

    def settle(self, ticket: Ticket, total_tokens: int) -> Ticket:
        if not ticket.shared:
            return super().settle(ticket, total_tokens)
        delta = total_tokens - ticket.charged
        answer = self.shared.settle_tokens(ticket.key, self.policy, delta) if delta else None
        ticket.charged = total_tokens
        if answer is not None:
            remaining = self._remember(ticket.key, self._remaining_of(float(answer[0]), float(answer[1])))
            ticket.remaining_tokens = remaining["remaining_tokens"]
            ticket.remaining_quota = remaining["remaining_quota"]
        elif delta and not self.shared.up:
            # Redis went away after admission: the correction lands on this replica's own counters
            super().settle(Ticket(ticket.key, True, charged=total_tokens - delta), total_tokens)
        return ticket

    def _remaining_of(self, used: float, quota_used: float) -> dict[str, Any]:
        policy = self.policy
        tokens = max(0, policy.tokens_per_minute - round(used)) if policy.tokens_per_minute else None
        quota = max(0, math.floor(policy.token_quota - round(quota_used))) if policy.token_quota else None
        return {"remaining_tokens": tokens, "remaining_quota": quota}

    def _remember(self, key: str, remaining: dict[str, Any]) -> dict[str, Any]:
        """Keep what Redis said `key` has left, for /metrics: display only, so forgetting the oldest loses nothing."""
        last = self._last
        last[key] = (remaining["remaining_tokens"], remaining["remaining_quota"])
        last.move_to_end(key)
        if len(last) > self.max_keys:
            last.popitem(last=False)
        return remaining

    def __len__(self) -> int:
        # the keys this replica has seen, counted on Redis or (while it was away) here
        return len(self._last.keys() | self._keys.keys())

    def remaining_by_key(self, most_recent: int) -> Iterator[tuple[str, int | None, int | None]]:
        for i, (key, (tokens, quota)) in enumerate(reversed(self._last.items())):
            if i >= most_recent:
                return
            yield key, tokens, quota


class SharedCircuitBreaker(CircuitBreaker):
    """A breaker whose failures and trip are the replicas' together; this replica's own while Redis is away.

    Only the replica whose outcome trips the member tells its listener (one trip, one log row, as the
    simulator's shared state logs it); a trip read from Redis opens this replica's breaker silently.
    """

    def __init__(
        self,
        backend: str,
        rule: CircuitBreakerRule,
        clock: Clock,
        listener: BreakerListener | None,
        shared: SharedState,
    ) -> None:
        super().__init__(backend, rule, clock, listener)
        self.shared = shared
        self._adopted = False  # open because another replica tripped it: its close is not this replica's to tell

    def record(self, status: int | None, reason: str | None = None, retry_after: float | None = None) -> bool:
        if self.is_open():
            return False
        failed = self.is_failure(status, reason)
        if not failed and self.rule.failureCondition.percentage is None:
            return False  # a count-based breaker keeps failures only: a success changes nothing, on Redis or here
        duration, source = self.trip_duration(retry_after if failed else None)
        answer = self.shared.record_outcome(self.backend, self.rule, failed, duration)
        if answer is None:
            return super().record(status, reason, retry_after)
        state, until, failures, requests = answer
        if state == "open":
            self.adopt(float(until))
            return False
        if state != "tripped":
            return False
        _, why = self.condition_met(round(float(failures)), round(float(requests)))
        now = self.clock.now()
        self._open_until, self._adopted = float(until), False
        self._notify(self.opened(now, status, reason, why, duration, source))
        return True

    def adopt(self, until: float | None) -> None:
        """Open this replica's breaker until `until` (a trip another replica made), when it is still ahead."""
        if until is not None and until > self.clock.now() and self._open_until != until:
            self._open_until, self._adopted = until, True

    def _notify(self, transition: Transition) -> None:
        if transition.to_state == "closed" and self._adopted:
            self._adopted = False
            return
        super()._notify(transition)


class SharedStateMetrics:
    """/metrics of the shared state: whether Redis answers, and decisions made without it."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("gateway_shared_state_up", "1 while Redis answers the replicas' shared state")
        up.add_metric([], 1.0 if self.shared.up else 0.0)
        yield up
        fallbacks = CounterMetricFamily(
            "gateway_shared_state_fallbacks",
            "Decisions made on this replica's own counters because Redis could not answer, by operation",
            labels=["operation"],
        )
        for operation in (TOKEN_ADMISSION, TOKEN_SETTLEMENT, BREAKER_OUTCOME, BREAKER_READ):
            fallbacks.add_metric([operation], float(self.shared.fallbacks[operation]))
        yield fallbacks
        losses = CounterMetricFamily("gateway_shared_state_losses", "Times Redis stopped answering")
        losses.add_metric([], float(self.shared.losses))
        yield losses
