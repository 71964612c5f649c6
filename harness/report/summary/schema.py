"""The shape of summary.json: one TypedDict per section, the keys in the order the file lists them.

Why TypedDicts and not dataclasses: a summary goes two ways. `summarize` builds it from a run, and every
reader (the report, the console table, the verdict, `checks:`, comparisons, sweeps, recommendations) reads
it by key, often generically (flattened into dotted metric names, looked up by a name the user wrote).
It is also read back from run.json and sweep results, where it is plain JSON. A TypedDict is that same
plain dict at run time: summary.json stays byte-identical with no conversion step, a summary read back
from JSON is one check away from being typed, and mypy checks every key a reader names. A dataclass
would force every reader to change to attribute access at once and add a from-JSON parser besides.
`to_json` is therefore the identity (`json_safe` only turns numpy scalars and NaN into JSON).

They are typing_extensions' TypedDicts because pydantic validates only those on Python < 3.12: a summary read
back from JSON is checked against these same classes (`load`), not against a second copy of the shape.
"""

from __future__ import annotations

import math
from typing import Any

from typing_extensions import TypedDict


class Percentiles(TypedDict):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class RetryAfterPercentiles(Percentiles):
    max: float | None


class GatewayFacts(TypedDict):
    replicas: int
    shared_state: str
    tokens_per_minute: float | None
    counter_key: str | None


class AppWhileLost(TypedDict):
    peak_tokens_60s: float
    x_limit: float | None


class SharedStateLost(TypedDict):
    losses: int
    replicas: list[str]
    fallbacks: int
    lost_s: float
    by_app: dict[str, AppWhileLost]


class RunFacts(TypedDict):
    run_id: str
    scenario: str | None
    description: str | None
    overrides: list[str]
    engine: str
    client_profiles: list[str]
    time_scale: float | None
    duration_s: float | None
    planned_duration_s: float | None
    ended_by: str | None
    never_ended: bool
    cut_short_s: float | None
    offered_load: dict[str, Any] | None  # run.json's own shape, passed through as written
    appid_on_trust: bool | None
    shared_state_lost: SharedStateLost | None
    shared_state_lost_s: float | None
    gateway: GatewayFacts | None
    missing: list[str]
    question: str | None


class Requests(TypedDict):
    attempts: int
    logical: int
    unfinished: int
    succeeded: int
    failed: int
    client_failure_rate: float | None
    attempt_outcomes: dict[str, int]
    rate_429: float
    rate_429_gateway: float
    rate_429_backend: float
    rate_503_breaker: float
    rate_403_quota: float


class RequestsSection(Requests):
    in_flight_when_stopped: int | None


class Throughput(TypedDict):
    goodput_tokens: float | None
    goodput_tpm: float | None
    successes_per_s: float | None


class Retries(TypedDict):
    amplification: float
    per_request: float
    max_attempts: int
    retried_share: float
    wait_s_total: float
    wait_s_per_request: float
    wait_s_by_source: dict[str, float]


class RetryAfter(TypedDict):
    attempts: int
    with_retry_after: int
    retry_after_s: RetryAfterPercentiles
    client_did: dict[str, int]


class Latency(TypedDict):
    all: Percentiles
    stream: Percentiles
    non_stream: Percentiles
    by_max_tokens: dict[str, Percentiles]


class Ttft(TypedDict):
    stream: Percentiles
    by_max_tokens: dict[str, Percentiles]


class PtuUtilization(TypedDict):
    mean: float | None
    p95: float | None


class PerKey(TypedDict):
    """An app's or a backend's share of the goodput, against its limit."""

    requests: int
    request_share: float | None
    tokens: float
    token_share: float | None
    tpm: float | None
    peak_tpm: float | None
    limit_tpm: float | None


class Backend(PerKey):
    """A backend's share, its PTU utilization and what its own log says it answered."""

    ptu_utilization: PtuUtilization | None
    answered: int | None
    rate_429: float | None


class BackendAnswers(TypedDict):
    answered: int | None
    rate_429: float | None


class Split(TypedDict):
    attempts: int
    attempt_outcomes: dict[str, int]
    rate_throttled: float
    rate_429: float
    rate_429_gateway: float
    rate_429_backend: float
    rate_503_breaker: float
    rate_403_quota: float
    logical: int | None
    client_failure_rate: float | None
    retries_per_request: float | None
    client_did: dict[str, int]
    goodput_tokens: float
    goodput_tpm: float | None
    latency_p95: float | None
    tokens: dict[str, float]


class BreakerFigures(TypedDict):
    trips: int
    open_s: float


class DrainFigures(TypedDict):
    requests: int
    charged: float
    used: float
    charged_per_used: float | None


class Drain(DrainFigures):
    by_deployment: dict[str, DrainFigures]


class LockoutFigures(TypedDict):
    request_limit_429s: int
    with_tokens_free: int
    share_with_tokens_free: float | None
    mean_tokens_free: float | None
    admitted: int


class Lockout(LockoutFigures):
    by_deployment: dict[str, LockoutFigures]


class ChargebackRow(TypedDict):
    app_id: str
    model: str
    gateway_prompt_tokens: float
    gateway_completion_tokens: float
    gateway_total_tokens: float
    backend_prompt_tokens: float
    backend_completion_tokens: float
    backend_total_tokens: float
    error: float
    error_pct: float | None


class BackendCost(TypedDict):
    """A backend's cost over the run (None figures for a backend without `cost`)."""

    ptu: float | None
    payg: float | None
    total: float | None


class Cost(TypedDict):
    currency: str
    total: float
    per_1m_tokens: float | None
    backends: dict[str, BackendCost]


class SummaryBody(TypedDict):
    """Every section but the verdict, which is written from these."""

    run: RunFacts
    requests: RequestsSection
    throughput: Throughput
    retries: Retries
    retry_after: dict[str, RetryAfter]
    latency: Latency
    ttft: Ttft
    end_to_end_latency: Percentiles
    backends: dict[str, Backend]
    apps: dict[str, PerKey]
    by_app: dict[str, Split]
    by_client_profile: dict[str, Split]
    by_backend: dict[str, Split]
    by_replica: dict[str, Split]
    breaker: dict[str, BreakerFigures] | None
    drain: Drain | None
    lockout: Lockout | None
    chargeback: list[ChargebackRow] | None
    cost: Cost | None


class Summary(SummaryBody):
    """summary.json: every headline number of a run, JSON-ready (missing values are None)."""

    verdict: list[str]


class SummaryFile(Summary):
    """summary.json as the report writes it: the summary and the figures written beside it."""

    figures: list[str]


def to_json(summary: Summary) -> dict[str, Any]:
    """summary.json's content: the summary itself (a TypedDict is a plain dict), numbers made JSON-safe."""
    safe: dict[str, Any] = json_safe(summary)
    return safe


def safe_summary(summary: Summary) -> Summary:
    """The summary with its numbers made JSON-safe (`json_safe`): the same shape, so still a `Summary`."""
    safe: Summary = json_safe(summary)
    return safe


def json_safe(value: Any) -> Any:
    """Nested data with NaN/inf as None and numpy scalars as plain numbers, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
