"""Prometheus metrics for watching throttling live: who refused, which breakers are open, what quota is left.

A collector registered with the gateway's registry (harness.gateway.metrics), next to the token metrics:

- `gateway_requests_total{outcome}`: every answer, by the outcome its log row names;
- `gateway_throttled_total{source, backend}`: answers that were not a success, by source: `token_limit`
  (429), `quota` (403), `backend_429` (a backend's 429 relayed), `breaker_open` (every member tripped), `other`;
- `gateway_added_duration_seconds{deployment}` and `gateway_backend_duration_seconds{deployment}`: histograms
  of a request's time in the gateway before it was forwarded (or refused), and from the first forward to the
  end of the answer (every member tried, the relay of a stream included), in scenario seconds; exemplars (the
  `gateway_request_id` of the request last seen in a bucket) only with `gateway.metrics.exemplars: true`,
  in the OpenMetrics format;
- `gateway_time_scale`: scenario seconds per wall second. Prometheus takes rates per wall second: divide a
  `rate()` by it for rates per scenario second (the shipped dashboard does);
- `gateway_breaker_open{backend}`, `gateway_breaker_open_seconds_remaining{backend}` (scenario seconds) and
  `gateway_breaker_closes_at_timestamp_seconds{backend}` (wall clock, 0 while closed), `gateway_breaker_trips_total`;
- `gateway_backend_remaining_tokens{deployment, backend}` / `..._requests`: the latest x-ratelimit-remaining-*
  a backend sent; `gateway_backend_utilization_ratio{deployment, backend}`: the latest
  `azure-openai-deployment-utilization` a PTU deployment sent, as a ratio (0.42 for `42.0%`);
- `gateway_rate_limit_key_remaining_tokens{counter_key}` / `..._quota_tokens`: the token limit's windows for
  the `keys_shown` counter keys with the fewest tokens (quota tokens) left, the ones about to be throttled;
  `gateway_rate_limit_keys`, `gateway_rate_limit_keys_evicted_total`, `gateway_rate_limit_keys_past_cap_total`
  and `gateway_rate_limit_keys_spilled` count every key. (Not
  `gateway_counter_key...`: promtool's lint refuses a metric type, `counter`, in a metric's name.)

Sources and outcomes are the typed kinds of harness.aoai.refusals and the log's outcomes, never message text.

    >>> from harness.clock import VirtualClock
    >>> throttling = ThrottleMetrics({}, None, VirtualClock())
    >>> throttling.answered("token_limit", None); throttling.answered("ok", "aoai-0")
    >>> dict(throttling.throttled)
    {('token_limit', ''): 1}
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from harness.aoai.headers import DEPLOYMENT_UTILIZATION, RATELIMIT_REMAINING_REQUESTS, RATELIMIT_REMAINING_TOKENS
from harness.aoai.refusals import BREAKER_OPEN, QUOTA, TOKEN_LIMIT
from harness.clock import Clock
from harness.gateway.breaker import CircuitBreaker, Transition
from harness.gateway.token_limit import TokenLimiter
from harness.records.outcomes import GatewayOutcome

# the `source` label of gateway_throttled_total: an outcome named here, or OTHER
SOURCES = (TOKEN_LIMIT, QUOTA, GatewayOutcome.BACKEND_429, BREAKER_OPEN)
OTHER = "other"
# upper bounds of the latency histograms' buckets, scenario seconds: from a gateway's own milliseconds to a
# long completion
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
KEYS_SHOWN = 100  # counter keys in the remaining-tokens gauges, by default


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None  # a backend's malformed header is not the gateway's failure


def _ratio(percent: str | None) -> float | None:
    """`42.0%` as 0.42 (None for a missing or malformed header)."""
    if percent is None:
        return None
    try:
        value = float(percent.strip().rstrip("%")) / 100
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Histogram:
    """Cumulative bucket counts and a sum per label values; with `exemplars`, the latest exemplar per bucket."""

    def __init__(self, exemplars: bool) -> None:
        self.exemplars = exemplars
        self.counts: dict[tuple[str, ...], list[int]] = {}  # per bucket (not cumulative), +Inf last
        self.sums: dict[tuple[str, ...], float] = {}
        self.examples: dict[tuple[str, ...], list[Exemplar | None]] = {}

    def observe(self, labels: tuple[str, ...], value: float, example: dict[str, str] | None, wall: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(BUCKETS) + 1)
            self.sums[labels] = 0.0
            self.examples[labels] = [None] * (len(BUCKETS) + 1)
        i = bisect_left(BUCKETS, value)  # the first bucket whose bound is >= value (+Inf past the last)
        counts[i] += 1
        self.sums[labels] += value
        if self.exemplars and example:
            self.examples[labels][i] = Exemplar(example, value, wall)

    def family(self, name: str, documentation: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=label_names)
        for labels, counts in sorted(self.counts.items()):
            buckets: list[Any] = []
            total = 0
            for bound, count, example in zip(
                [*(repr(b) for b in BUCKETS), "+Inf"], counts, self.examples[labels], strict=True
            ):
                total += count
                buckets.append((bound, total, example) if example is not None else (bound, total))
            family.add_metric(list(labels), buckets, self.sums[labels])
        return family


class ThrottleMetrics:
    """Throttling by source, breaker state, backends' and callers' remaining quota, as Prometheus families."""

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        limiter: TokenLimiter | None,
        clock: Clock,
        keys_shown: int = KEYS_SHOWN,
        exemplars: bool = False,
    ) -> None:
        self.breakers = breakers
        self.limiter = limiter
        self.clock = clock
        self.keys_shown = keys_shown
        self.outcomes: Counter[str] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()  # (source, backend)
        self.trips: Counter[str] = Counter()
        self.backend_remaining: dict[tuple[str, str], tuple[int | None, int | None]] = {}
        self.utilization: dict[tuple[str, str], float] = {}
        self.added = Histogram(exemplars)
        self.backend_time = Histogram(exemplars)

    def answered(
        self,
        outcome: str,
        backend: str | None,
        row: Mapping[str, Any] | None = None,
        forwarded_at: float | None = None,
    ) -> None:
        """One answer to a client, by its log outcome and the member that answered (None for the gateway).

        With its log `row` (`duration_s` set) the request's time is split at `forwarded_at` (scenario time of
        its first forward, None when it was never forwarded) into gateway-added and backend time.
        """
        self.outcomes[outcome] += 1
        if outcome != GatewayOutcome.OK:
            self.throttled[(outcome if outcome in SOURCES else OTHER, backend or "")] += 1
        if row is None or row.get("duration_s") is None:
            return
        labels = (str(row.get("deployment") or ""),)
        duration = max(0.0, float(row["duration_s"]))
        started = float(row.get("t") or 0.0)
        added = duration if forwarded_at is None else min(duration, max(0.0, forwarded_at - started))
        example, wall = None, 0.0
        if self.added.exemplars and row.get("gateway_request_id"):  # built only when exemplars are on
            example, wall = {"gateway_request_id": str(row["gateway_request_id"])}, self.clock.wall()
        self.added.observe(labels, added, example, wall)
        if forwarded_at is not None:
            self.backend_time.observe(labels, duration - added, example, wall)

    def backend_answered(self, deployment: str, backend: str, headers: Mapping[str, str]) -> None:
        """Keep the quota a backend's answer says is left, or its utilization (headers in lower case)."""
        tokens = _number(headers.get(RATELIMIT_REMAINING_TOKENS))
        requests = _number(headers.get(RATELIMIT_REMAINING_REQUESTS))
        if tokens is not None or requests is not None:
            self.backend_remaining[(deployment, backend)] = (tokens, requests)
        utilization = _ratio(headers.get(DEPLOYMENT_UTILIZATION))
        if utilization is not None:
            self.utilization[(deployment, backend)] = utilization

    def transition(self, transition: Transition) -> None:
        """A breaker listener: counts trips."""
        if transition.to_state == "open":
            self.trips[transition.backend] += 1

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families (a custom collector of the gateway's registry)."""
        yield from self._answers()
        yield from self._latency()
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

    def _latency(self) -> Iterator[Metric]:
        yield self.added.family(
            "gateway_added_duration_seconds",
            "Scenario seconds a request spent in the gateway before it was forwarded (or refused), by deployment",
            ["deployment"],
        )
        yield self.backend_time.family(
            "gateway_backend_duration_seconds",
            "Scenario seconds from a request's first forward to the end of its answer (every member tried), "
            "by deployment",
            ["deployment"],
        )
        yield GaugeMetricFamily(
            "gateway_time_scale",
            "Scenario seconds per wall second: divide a rate() by it for a rate per scenario second",
            value=self.clock.scale,
        )

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
        utilization = GaugeMetricFamily(
            "gateway_backend_utilization_ratio",
            "azure-openai-deployment-utilization of the PTU deployment's latest answer, as a ratio (0.42 = 42 %)",
            labels=["deployment", "backend"],
        )
        for labels, ratio in sorted(self.utilization.items()):
            utilization.add_metric(list(labels), ratio)
        yield utilization
        yield from self._keys()

    def _keys(self) -> Iterator[Metric]:
        key_tokens = GaugeMetricFamily(
            "gateway_rate_limit_key_remaining_tokens",
            "Tokens per minute the token limit has left for the counter key (the keys with the fewest left)",
            labels=["counter_key"],
        )
        key_quota = GaugeMetricFamily(
            "gateway_rate_limit_key_remaining_quota_tokens",
            "Quota tokens the token limit has left for the counter key this period (the keys with the fewest left)",
            labels=["counter_key"],
        )
        limiter = self.limiter
        if limiter is not None and self.keys_shown:
            # every key's windows, then the few nearest their limit: a gauge per caller would grow /metrics with
            # every caller, and the keys about to be throttled are the ones to watch
            keys = list(limiter.remaining_by_key(len(limiter)))
            shown = self.keys_shown
            for key, left, _ in heapq.nsmallest(shown, (k for k in keys if k[1] is not None), key=_tokens_left):
                key_tokens.add_metric([key], float(left or 0))
            for key, _, left in heapq.nsmallest(shown, (k for k in keys if k[2] is not None), key=_quota_left):
                key_quota.add_metric([key], float(left or 0))
        yield from (key_tokens, key_quota)
        yield GaugeMetricFamily(
            "gateway_rate_limit_keys", "Counter keys the token limit holds now", value=len(limiter) if limiter else 0
        )
        yield CounterMetricFamily(
            "gateway_rate_limit_keys_evicted",
            "Counter keys forgotten (their minute window had emptied) to stay within gateway.token_limit.max-counter-keys",
            value=limiter.evicted if limiter else 0,
        )
        yield CounterMetricFamily(
            "gateway_rate_limit_keys_past_cap",
            "Times a counter key was held past max-counter-keys because the keys seen least recently were all live",
            value=limiter.held_past_cap if limiter else 0,
        )
        yield GaugeMetricFamily(
            "gateway_rate_limit_keys_spilled",
            "Forgotten counter keys whose quota used this period is kept as one number",
            value=limiter.spilled if limiter else 0,
        )


def _tokens_left(key: tuple[str, int | None, int | None]) -> tuple[int, str]:
    return (key[1] or 0, key[0])


def _quota_left(key: tuple[str, int | None, int | None]) -> tuple[int, str]:
    return (key[2] or 0, key[0])
