"""Prometheus metrics for watching throttling live: who refused, which breakers are open, what quota is left.

A collector registered with the gateway's registry (harness.gateway.metrics), next to the token metrics:

- `gateway_requests_total{outcome}`: every answer, by the outcome its log row names;
- `gateway_throttled_total{source, backend}`: answers that were not a success, by source: `token_limit`
  (429), `quota` (403), `backend_429` (a backend's 429 relayed), `breaker_open` (every member tripped), `other`;
- `gateway_breaker_open{backend}`, `gateway_breaker_open_seconds_remaining{backend}` (scenario seconds) and
  `gateway_breaker_closes_at_timestamp_seconds{backend}` (wall clock, 0 while closed), `gateway_breaker_trips_total`;
- `gateway_backend_remaining_tokens{deployment, backend}` / `..._requests`: the latest x-ratelimit-remaining-*
  a backend sent;
- `gateway_counter_key_remaining_tokens{counter_key}` / `..._quota_tokens`: the token limit's windows for the
  `max_series` keys seen last, `gateway_counter_keys`, `gateway_counter_keys_evicted_total`,
  `gateway_counter_keys_past_cap_total` and `gateway_counter_keys_spilled`.

Sources and outcomes are the typed kinds of harness.aoai.refusals and the log's outcomes, never message text.

    >>> from harness.clock import VirtualClock
    >>> throttling = ThrottleMetrics({}, None, VirtualClock())
    >>> throttling.answered("token_limit", None); throttling.answered("ok", "aoai-0")
    >>> dict(throttling.throttled)
    {('token_limit', ''): 1}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from harness.aoai.headers import RATELIMIT_REMAINING_REQUESTS, RATELIMIT_REMAINING_TOKENS
from harness.aoai.refusals import BREAKER_OPEN, QUOTA, TOKEN_LIMIT
from harness.clock import Clock
from harness.gateway.breaker import CircuitBreaker, Transition
from harness.gateway.forwarding import BACKEND_429, OK
from harness.gateway.token_limit import TokenLimiter

# the `source` label of gateway_throttled_total: an outcome named here, or OTHER
SOURCES = (TOKEN_LIMIT, QUOTA, BACKEND_429, BREAKER_OPEN)
OTHER = "other"


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None  # a backend's malformed header is not the gateway's failure


class ThrottleMetrics:
    """Throttling by source, breaker state, backends' and callers' remaining quota, as Prometheus families."""

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        limiter: TokenLimiter | None,
        clock: Clock,
        max_keys_shown: int = 10_000,
    ) -> None:
        self.breakers = breakers
        self.limiter = limiter
        self.clock = clock
        self.max_keys_shown = max_keys_shown
        self.outcomes: Counter[str] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()  # (source, backend)
        self.trips: Counter[str] = Counter()
        self.backend_remaining: dict[tuple[str, str], tuple[int | None, int | None]] = {}

    def answered(self, outcome: str, backend: str | None) -> None:
        """One answer to a client, by its log outcome and the member that answered (None for the gateway)."""
        self.outcomes[outcome] += 1
        if outcome != OK:
            self.throttled[(outcome if outcome in SOURCES else OTHER, backend or "")] += 1

    def backend_answered(self, deployment: str, backend: str, headers: Mapping[str, str]) -> None:
        """Keep the quota a backend's answer says is left (headers in lower case)."""
        tokens = _number(headers.get(RATELIMIT_REMAINING_TOKENS))
        requests = _number(headers.get(RATELIMIT_REMAINING_REQUESTS))
        if tokens is not None or requests is not None:
            self.backend_remaining[(deployment, backend)] = (tokens, requests)

    def transition(self, transition: Transition) -> None:
        """A breaker listener: counts trips."""
        if transition.to_state == "open":
            self.trips[transition.backend] += 1

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families (a custom collector of the gateway's registry)."""
        yield from self._answers()
        yield from self._breakers()
        yield from self._remaining()

    def _answers(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gateway_requests", "Answers the gateway gave, by the outcome of its log row", labels=["outcome"]
        )
        for outcome, count in sorted(self.outcomes.items()):
            requests.add_metric([outcome], count)
        yield requests
        throttled = CounterMetricFamily(
            "gateway_throttled",
            "Answers that were not a success, by source: token_limit (429), quota (403), backend_429, "
            "breaker_open (every member tripped) or other; backend is the member that answered",
            labels=["source", "backend"],
        )
        for (source, backend), count in sorted(self.throttled.items()):
            throttled.add_metric([source, backend], count)
        yield throttled

    def _breakers(self) -> Iterator[Metric]:
        is_open = GaugeMetricFamily("gateway_breaker_open", "1 while the backend's breaker is open", labels=["backend"])
        left = GaugeMetricFamily(
            "gateway_breaker_open_seconds_remaining",
            "Scenario seconds until the backend's open breaker closes (0 while closed)",
            labels=["backend"],
        )
        closes_at = GaugeMetricFamily(
            "gateway_breaker_closes_at_timestamp_seconds",
            "Wall-clock Unix time at which the backend's open breaker closes (0 while closed)",
            labels=["backend"],
        )
        trips = CounterMetricFamily("gateway_breaker_trips", "Times the backend's breaker opened", labels=["backend"])
        wall = self.clock.wall()
        for backend, breaker in sorted(self.breakers.items()):
            seconds = breaker.retry_after()
            is_open.add_metric([backend], 1.0 if seconds > 0 else 0.0)
            left.add_metric([backend], seconds)
            closes_at.add_metric([backend], wall + seconds / self.clock.scale if seconds > 0 else 0.0)
            trips.add_metric([backend], self.trips[backend])
        yield from (is_open, left, closes_at, trips)

    def _remaining(self) -> Iterator[Metric]:
        tokens = GaugeMetricFamily(
            "gateway_backend_remaining_tokens",
            "x-ratelimit-remaining-tokens of the backend's latest answer for the deployment",
            labels=["deployment", "backend"],
        )
        requests = GaugeMetricFamily(
            "gateway_backend_remaining_requests",
            "x-ratelimit-remaining-requests of the backend's latest answer for the deployment",
            labels=["deployment", "backend"],
        )
        for labels, (left_tokens, left_requests) in sorted(self.backend_remaining.items()):
            if left_tokens is not None:
                tokens.add_metric(list(labels), left_tokens)
            if left_requests is not None:
                requests.add_metric(list(labels), left_requests)
        yield from (tokens, requests)
        key_tokens = GaugeMetricFamily(
            "gateway_counter_key_remaining_tokens",
            "Tokens per minute the token limit has left for the counter key (the keys seen last)",
            labels=["counter_key"],
        )
        key_quota = GaugeMetricFamily(
            "gateway_counter_key_remaining_quota_tokens",
            "Quota tokens the token limit has left for the counter key this period (the keys seen last)",
            labels=["counter_key"],
        )
        limiter = self.limiter
        if limiter is not None:
            for key, left_tokens, left_quota in limiter.remaining_by_key(self.max_keys_shown):
                if left_tokens is not None:
                    key_tokens.add_metric([key], left_tokens)
                if left_quota is not None:
                    key_quota.add_metric([key], left_quota)
        yield from (key_tokens, key_quota)
        yield GaugeMetricFamily(
            "gateway_counter_keys", "Counter keys the token limit holds now", value=len(limiter) if limiter else 0
        )
        yield CounterMetricFamily(
            "gateway_counter_keys_evicted",
            "Counter keys forgotten (their minute window had emptied) to stay within gateway.token_limit.max-counter-keys",
            value=limiter.evicted if limiter else 0,
        )
        yield CounterMetricFamily(
            "gateway_counter_keys_past_cap",
            "Times a counter key was held past max-counter-keys because the keys seen least recently were all live",
            value=limiter.held_past_cap if limiter else 0,
        )
        yield GaugeMetricFamily(
            "gateway_counter_keys_spilled",
            "Forgotten counter keys whose quota used this period is kept as one number",
            value=limiter.spilled if limiter else 0,
        )
