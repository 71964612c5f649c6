"""The end-of-run summary (from the records alone) and the `checks:` verdict.

>>> s = summarize([{"logical_id": "a", "attempt": 1, "t_scenario": 0.0, "latency_s": 1.0, "status": 200,
...                 "error_kind": None, "decision": "success", "usage_total": 120}], duration_s=60)
>>> s.requests, s.failure_rate, s.goodput_tpm
(1, 0.0, 120.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.scenario.checks import Checks


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Summary:
    """Headline numbers of a run, from the caller's point of view."""

    requests: int = 0
    attempts: int = 0
    failures: int = 0
    failure_rate: float = 0.0
    retries_per_request: float = 0.0
    throttled_by_source: dict[str, int] = field(default_factory=dict)
    goodput_tpm: float = 0.0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


THROTTLE_KINDS = ("gateway_token_limit", "gateway_quota", "backend_429", "breaker_open")


def summarize(records: Iterable[Mapping[str, Any]], duration_s: float) -> Summary:
    """Summary of attempt records; a logical request is judged by its last attempt."""
    last: dict[str, Mapping[str, Any]] = {}
    first_start: dict[str, float] = {}
    attempts = 0
    throttled: Counter[str] = Counter()
    goodput = 0
    ttfts: list[float] = []
    for record in records:
        attempts += 1
        logical = str(record.get("logical_id"))
        start = record.get("t_scenario") or 0.0
        first_start[logical] = min(first_start.get(logical, start), start)
        previous = last.get(logical)
        if previous is None or (record.get("attempt") or 0) >= (previous.get("attempt") or 0):
            last[logical] = record
        kind = record.get("error_kind") or ""
        if kind in THROTTLE_KINDS:
            throttled[kind] += 1
        if not kind and (record.get("status") or 0) < 400:
            goodput += record.get("usage_total") or 0
            if record.get("stream") and record.get("ttft_s") is not None:
                ttfts.append(float(record["ttft_s"]))
    latencies = [
        (r.get("t_scenario") or 0.0) + (r.get("latency_s") or 0.0) - first_start[logical] for logical, r in last.items()
    ]
    failures = sum(1 for r in last.values() if r.get("error_kind") or (r.get("status") or 0) >= 400)
    requests = len(last)
    minutes = duration_s / 60.0 if duration_s > 0 else 0.0
    return Summary(
        requests=requests,
        attempts=attempts,
        failures=failures,
        failure_rate=failures / requests if requests else 0.0,
        retries_per_request=(attempts - requests) / requests if requests else 0.0,
        throttled_by_source=dict(throttled),
        goodput_tpm=goodput / minutes if minutes else 0.0,
        latency_p50_s=percentile(latencies, 0.50),
        latency_p95_s=percentile(latencies, 0.95),
        ttft_p50_s=percentile(ttfts, 0.50),
        ttft_p95_s=percentile(ttfts, 0.95),
        duration_s=duration_s,
    )


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.3f} {unit}".strip()


def format_summary(summary: Summary, profiles: str, time_scale: float) -> str:
    """A short table for the console."""
    throttled = ", ".join(f"{k} {v}" for k, v in sorted(summary.throttled_by_source.items())) or "none"
    rows = [
        ("requests (logical)", f"{summary.requests} ({summary.attempts} attempts)"),
        ("client-visible failures", f"{summary.failures} ({summary.failure_rate:.1%})"),
        ("429/403/503 by source", throttled),
        ("retries per request", f"{summary.retries_per_request:.2f}"),
        ("goodput", f"{summary.goodput_tpm:,.0f} tokens/min (scenario time)"),
        ("latency p50 / p95", f"{_fmt(summary.latency_p50_s)} / {_fmt(summary.latency_p95_s)}"),
        ("TTFT p50 / p95 (streams)", f"{_fmt(summary.ttft_p50_s)} / {_fmt(summary.ttft_p95_s)}"),
        ("client profile(s)", profiles),
        ("scenario time", f"{summary.duration_s:.1f} s at time scale {time_scale:g}"),
    ]
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 40)
    return "\n".join(["Harness summary", line, *(f"{name:<{width}}  {value}" for name, value in rows), line])


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    limit: float
    actual: float | None
    passed: bool

    def describe(self) -> str:
        actual = "n/a" if self.actual is None else f"{self.actual:.4g}"
        verdict = "ok" if self.passed else "FAILED"
        if self.passed or self.actual is None:
            return f"check {self.name}: {verdict} (actual {actual}, limit {self.limit:g})"
        by = abs(self.actual - self.limit)
        return f"check {self.name}: {verdict}: actual {actual}, limit {self.limit:g} (off by {by:.4g})"


def evaluate_checks(checks: Checks, summary: Summary) -> list[CheckResult]:
    """Every set threshold against the summary; a number that cannot be measured fails its check."""
    actual_of: dict[str, float | None] = {
        "max_failure_rate": summary.failure_rate if summary.requests else None,
        "max_p95_latency_s": summary.latency_p95_s,
        "max_p95_ttft_s": summary.ttft_p95_s,
        "min_goodput_tpm": summary.goodput_tpm,
        "max_retries_per_request": summary.retries_per_request if summary.requests else None,
        "min_requests": float(summary.requests),
    }
    results = []
    for name, limit in checks.limits().items():
        actual = actual_of[name]
        if actual is None:
            passed = False
        elif name.startswith("max_"):
            passed = actual <= limit
        else:
            passed = actual >= limit
        results.append(CheckResult(name, float(limit), actual, passed))
    return results
