"""Client retry profiles: what a real client does after each attempt, as a pure decision.

A profile never sleeps and never reads a clock: it looks at the attempt that just ended and returns a
`RetryDecision` (retry or not, how long to wait, and where that wait came from). The retry loop in
`harness.client.retry` carries the decision out on the scenario clock.

    >>> profile = profile_for("openai-python")
    >>> profile.decide(1, ResponseInfo(429, {"retry-after": "5"})).wait_s
    5.0
    >>> profile.decide(1, ResponseInfo(429, {"retry-after": "86400"})).retry
    False
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from harness.aoai.retry_after import RETRY_AFTER, RETRY_AFTER_MS, http_date
from harness.records.outcomes import WaitSource

# The openai Python SDK's constants (openai/_constants.py); the honour cap changed in 2.52.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
DEFAULT_MAX_RETRIES = 2
LEGACY_MAX_RETRY_AFTER = 60.0
CURRENT_MAX_RETRY_AFTER = 120.0

PROFILE_NAMES = ("none", "openai-python-legacy", "openai-python", "custom", "azure-openai-benchmark")


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class ResponseInfo:
    """What a client can see of one attempt: the status (0 when no response came) and lower-cased headers.

    `error` is "timeout" or "connection" when no response arrived; `now` (scenario seconds on the epoch
    scale) is only used to turn an HTTP-date Retry-After into seconds when the answer has no `Date` header; `waited_s` is what profiles with a
    total retry budget read.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    now: float = 0.0
    waited_s: float = 0.0  # scenario seconds this logical request has already spent waiting to retry


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class RetryDecision:
    """Retry after `wait_s` scenario seconds, or stop; `source` says where the wait came from.

    source (a `WaitSource`) is retry-after-ms or retry-after when a server header was honoured, backoff for the
    client's own exponential backoff, and "" when there is no retry.
    """

    retry: bool
    wait_s: float = 0.0
    source: str = ""
    reason: str = ""
    gave_up: bool = False  # a failure the profile would retry, left alone: its retries or its waiting used up


STOP_SUCCESS = RetryDecision(False, reason="success")


class RetryProfile(Protocol):
    """A client's retry rules."""

    name: str
    max_retries: int

    def decide(self, attempt: int, response: ResponseInfo) -> RetryDecision:
        """`attempt` is the 1-based number of the attempt that just ended."""
        ...


# The headers a server's wait is read from, in the SDK's order, and the record's name for each source
_WAIT_HEADERS = ((RETRY_AFTER_MS, WaitSource.RETRY_AFTER_MS, 1000.0), (RETRY_AFTER, WaitSource.RETRY_AFTER, 1.0))


def parse_retry_after(headers: Mapping[str, str], now: float, overflow_sentinel: float | None) -> tuple[float, str]:
    """Seconds the server asked to wait, and from which header: `retry-after-ms` first, then `retry-after`.

    Values are floats ("nonstandard floats" allowed) or, for `retry-after`, an HTTP date, read against the
    answer's own `Date` header (else against `now`). Returns (nan, "") when neither header gives a number. `overflow_sentinel` reproduces the SDK (2.52+) turning a
    numeric overflow to infinity into a finite value just above its cap.

    >>> parse_retry_after({"retry-after-ms": "1500", "retry-after": "2"}, 0.0, None)
    (1.5, <WaitSource.RETRY_AFTER_MS: 'retry-after-ms'>)
    >>> parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:20 GMT", "date": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, None)
    (20.0, <WaitSource.RETRY_AFTER: 'retry-after'>)
    """
    for header, source, divisor in _WAIT_HEADERS:
        value = headers.get(header)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if (
            overflow_sentinel is not None
            and delay == math.inf
            and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity")
        ):
            return overflow_sentinel, source
        return delay / divisor, source
    when = http_date(headers.get(RETRY_AFTER))
    if when is None:
        return math.nan, ""
    # Counted from the answer's own Date: both dates are the server's clock, so the wait is right at every time
    # scale and however late the answer is read; `now` (the client's clock) only when the answer has no Date.
    dated = http_date(headers.get("date"))
    return when - (now if dated is None else dated), WaitSource.RETRY_AFTER


def retryable_status(status: int) -> bool:
    """The statuses the SDK retries: 408, 409, 429 and every 5xx."""
    return status in (408, 409, 429) or status >= 500


@dataclass
class NoRetry:
    """Never retries: every failure is client-visible (what a bare HTTP client does)."""

    name: str = "none"
    max_retries: int = 0

    def decide(self, attempt: int, response: ResponseInfo) -> RetryDecision:
        if response.error is None and response.status < 400:
            return STOP_SUCCESS
        return RetryDecision(False, reason="no retries")


@dataclass
class CustomRetry:
    """Configurable rules: the SDK's shape with every number (and the give-up-above-cap rule) a setting.

    `honour_cap`: a server wait of at most this many seconds is honoured; `give_up_above_cap` stops
    retrying above it (openai-python 2.52+) instead of falling back to the own backoff (up to 2.51).
    `jitter` is the largest share the backoff is reduced by at random (0.25 in the SDK).
    """

    name: str = "custom"
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = INITIAL_RETRY_DELAY
    backoff_max: float = MAX_RETRY_DELAY
    jitter: float = 0.25
    honour_cap: float = CURRENT_MAX_RETRY_AFTER
    give_up_above_cap: bool = True
    honour_should_retry_header: bool = True
    rng: random.Random = field(default_factory=random.Random)
    # 2.52+ maps a numeric overflow of the header to just above the cap; the legacy SDK did not
    overflow_guard: bool = True

    def decide(self, attempt: int, response: ResponseInfo) -> RetryDecision:
        if response.error is None and response.status < 400:
            return STOP_SUCCESS
        retries_taken = attempt - 1
        if retries_taken >= self.max_retries:
            return RetryDecision(False, reason="retries exhausted", gave_up=True)
        delay, header = math.nan, ""
        if response.error is None:
            sentinel = self.honour_cap + 1 if self.overflow_guard else None
            delay, header = parse_retry_after(response.headers, response.now, sentinel)
            if not self._should_retry(response, delay):
                above_cap = self.give_up_above_cap and math.isfinite(delay) and delay > self.honour_cap
                return RetryDecision(False, reason=self._why_not(response, delay), gave_up=above_cap)
        if header and math.isfinite(delay) and 0 < delay <= self.honour_cap:
            return RetryDecision(True, delay, header, reason="server wait honoured")
        return RetryDecision(True, self._backoff(retries_taken), WaitSource.BACKOFF, reason="own backoff")

    def _should_retry(self, response: ResponseInfo, delay: float) -> bool:
        if self.give_up_above_cap and math.isfinite(delay) and delay > self.honour_cap:
            return False
        if self.honour_should_retry_header:
            flag = response.headers.get("x-should-retry")
            if flag == "true":
                return True
            if flag == "false":
                return False
        return retryable_status(response.status)

    def _why_not(self, response: ResponseInfo, delay: float) -> str:
        if self.give_up_above_cap and math.isfinite(delay) and delay > self.honour_cap:
            return f"server wait {delay:g} s above the {self.honour_cap:g} s cap"
        if self.honour_should_retry_header and response.headers.get("x-should-retry") == "false":
            return "x-should-retry: false"
        return f"status {response.status} is not retried"

    def _backoff(self, retries_taken: int) -> float:
        sleep_seconds = min(self.backoff_base * pow(2.0, min(retries_taken, 1000)), self.backoff_max)
        return max(0.0, sleep_seconds * (1 - self.jitter * self.rng.random()))


def openai_python(rng: random.Random | None = None, max_retries: int = DEFAULT_MAX_RETRIES) -> CustomRetry:
    """openai-python 2.52 and later: honours a server wait of up to 120 s, does not retry at all above it."""
    return CustomRetry(
        name="openai-python",
        max_retries=max_retries,
        honour_cap=CURRENT_MAX_RETRY_AFTER,
        give_up_above_cap=True,
        rng=rng or random.Random(),
        overflow_guard=True,
    )


def openai_python_legacy(rng: random.Random | None = None, max_retries: int = DEFAULT_MAX_RETRIES) -> CustomRetry:
    """openai-python up to 2.51: honours a server wait of up to 60 s, else its own backoff, and still retries."""
    return CustomRetry(
        name="openai-python-legacy",
        max_retries=max_retries,
        honour_cap=LEGACY_MAX_RETRY_AFTER,
        give_up_above_cap=False,
        rng=rng or random.Random(),
        overflow_guard=False,
    )


@dataclass
class AzureOpenAIBenchmark:
    """Azure/azure-openai-benchmark's `--retry exponential`: sleep `retry-after-ms` on a 429 while the total
    time spent retrying stays under 60 s, else an exponential backoff with full jitter; any other error ends
    the request.
    """

    name: str = "azure-openai-benchmark"
    max_retries: int = 1000
    max_total_wait: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def decide(self, attempt: int, response: ResponseInfo) -> RetryDecision:
        if response.error is None and response.status < 400:
            return STOP_SUCCESS
        if response.status != 429:
            return RetryDecision(False, reason="only 429 is retried")
        ms = response.headers.get(RETRY_AFTER_MS)
        source: str  # a WaitSource, or empty when the header says nothing usable
        try:
            wait, source = float(ms) / 1000.0 if ms is not None else math.nan, WaitSource.RETRY_AFTER_MS
        except ValueError:
            wait, source = math.nan, ""
        if not (math.isfinite(wait) and wait >= 0):
            wait, source = self.rng.uniform(0, min(60.0, 2.0 ** (attempt - 1))), WaitSource.BACKOFF
        if response.waited_s + wait > self.max_total_wait:
            return RetryDecision(False, reason=f"would wait more than {self.max_total_wait:g} s in total", gave_up=True)
        return RetryDecision(True, wait, source, reason="429 retried")


def profile_for(name: str, rng: random.Random | None = None, **settings: float | int | bool) -> RetryProfile:
    """The profile called `name`; `settings` configure `custom` (max_retries, backoff_base, honour_cap, ...).

    >>> profile_for("openai-python-legacy").decide(1, ResponseInfo(429, {"retry-after": "90"})).source
    <WaitSource.BACKOFF: 'backoff'>
    """
    rng = rng or random.Random()
    if name == "none":
        return NoRetry()
    if name == "openai-python":
        return openai_python(rng, int(settings.get("max_retries", DEFAULT_MAX_RETRIES)))
    if name == "openai-python-legacy":
        return openai_python_legacy(rng, int(settings.get("max_retries", DEFAULT_MAX_RETRIES)))
    if name == "custom":
        return CustomRetry(rng=rng, **settings)  # type: ignore[arg-type]
    if name == "azure-openai-benchmark":
        return AzureOpenAIBenchmark(rng=rng)
    raise ValueError(f"unknown client profile '{name}' (known: {', '.join(PROFILE_NAMES)})")
