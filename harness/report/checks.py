"""The verdict of a scenario's `checks:` on a run, judged on the numbers of `summarize(run)` (summary.json).

Each check reads exactly one summary number (`CHECKED_NUMBERS`); a number that could not be measured
(missing or None) fails its check. Locust's exit code and `harness sweep` both use this verdict.

    >>> summary = {"requests": {"client_failure_rate": 0.08}}
    >>> [r.describe() for r in evaluate_checks(Checks(max_failure_rate=0.05), summary)]
    ['check max_failure_rate: FAILED: actual 0.08, limit 0.05 (off by 0.03)']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.scenario.checks import Checks

# check name -> the summary number it limits, as a path into summary.json (see each field of `Checks`)
CHECKED_NUMBERS: dict[str, tuple[str, ...]] = {
    "max_failure_rate": ("requests", "client_failure_rate"),
    "max_p95_latency_s": ("end_to_end_latency", "p95"),
    "max_p95_ttft_s": ("ttft", "stream", "p95"),
    "min_goodput_tpm": ("throughput", "goodput_tpm"),
    "max_retries_per_request": ("retries", "per_request"),
    "min_requests": ("requests", "logical"),
    "max_shared_state_lost_s": ("run", "shared_state_lost_s"),
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict: its limit, the measured number (None when unmeasurable), and whether it passed."""

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


def checked_number(summary: Mapping[str, Any], name: str) -> float | None:
    """The summary number check `name` limits; None when the summary lacks it."""
    value: Any = summary
    for key in CHECKED_NUMBERS[name]:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def evaluate_checks(checks: Checks, summary: Mapping[str, Any]) -> list[CheckResult]:
    """Every set threshold against its summary number; a number that cannot be measured fails its check."""
    results = []
    for name, limit in checks.limits().items():
        actual = checked_number(summary, name)
        if actual is None:
            passed = False
        elif name.startswith("max_"):
            passed = actual <= limit
        else:
            passed = actual >= limit
        results.append(CheckResult(name, float(limit), actual, passed))
    return results
