"""APIM's backend circuit breaker: a pure state machine per pool member, on the injected clock.

`count` failures (or `percentage` of requests failing) within `interval` trip the member for
`tripDuration`, or for the backend's Retry-After when `acceptRetryAfter` is set (86400 keeps it out for a
day, unless `maxTripDuration` caps the trip as Envoy caps ejection). After the trip it closes again; every
transition goes to a listener so the gateway log records it.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario.gateway import CircuitBreakerRule
    >>> clock = VirtualClock()
    >>> breaker = CircuitBreaker("aoai-0", CircuitBreakerRule(tripDuration=60), clock)
    >>> breaker.record(429), breaker.is_open()
    (True, True)
    >>> clock.advance(60); breaker.is_open()
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from harness.clock import Clock
from harness.limits import SlidingWindow
from harness.scenario.gateway import CircuitBreakerRule

State = Literal["closed", "open"]

# Reasons the proxy gives when no HTTP response arrived; these always count as failures.
BACKEND_CONNECTION_FAILURE = "BackendConnectionFailure"
BACKEND_TIMEOUT = "Timeout"
BACKEND_PROTOCOL_ERROR = "BackendProtocolError"
TRANSPORT_FAILURES = frozenset({BACKEND_CONNECTION_FAILURE, BACKEND_TIMEOUT, BACKEND_PROTOCOL_ERROR})

_UNBOUNDED = 2**62  # a window used only as a counter


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state at scenario time `t`; `until` is when an open breaker closes."""

    t: float
    backend: str
    from_state: State
    to_state: State
    reason: str
    until: float | None


class BreakerListener(Protocol):
    """Told about every transition (the gateway log is one)."""

    def __call__(self, transition: Transition) -> None: ...


class CircuitBreaker:
    """The breaker of one backend: closed (serving) or open until a scenario time."""

    def __init__(
        self, backend: str, rule: CircuitBreakerRule, clock: Clock, listener: BreakerListener | None = None
    ) -> None:
        self.backend = backend
        self.rule = rule
        self.clock = clock
        self.listener = listener
        condition = rule.failureCondition
        self._failures = SlidingWindow(_UNBOUNDED, condition.interval, clock)
        # Percentage needs every request's outcome; count needs only the failures.
        self._requests = SlidingWindow(_UNBOUNDED, condition.interval, clock) if condition.percentage else None
        self._open_until: float | None = None

    @property
    def state(self) -> State:
        return "open" if self.is_open() else "closed"

    def is_open(self) -> bool:
        """Whether the member is out of the pool now (closing it, and telling the listener, once the trip ends)."""
        if self._open_until is None:
            return False
        if self.clock.now() < self._open_until:
            return True
        until, self._open_until = self._open_until, None
        self._notify(Transition(until, self.backend, "open", "closed", "trip duration elapsed", None))
        return False

    def retry_after(self) -> float:
        """Seconds until an open breaker closes (0 when closed). Asked of every member of a closed pool at
        every refusal, so the clock is read once."""
        until = self._open_until
        if until is None:
            return 0.0
        wait = until - self.clock.now()
        if wait > 0.0:
            return wait
        self.is_open()  # the trip is over: it closes now, and tells the listener
        return 0.0

    def is_failure(self, status: int | None, reason: str | None = None) -> bool:
        """Whether an attempt's outcome counts against the member (APIM: statusCodeRanges or errorReasons)."""
        if reason is not None and (reason in TRANSPORT_FAILURES or reason in self.rule.failureCondition.errorReasons):
            return True
        return status is not None and self.rule.failureCondition.matches(status)

    def record(self, status: int | None, reason: str | None = None, retry_after: float | None = None) -> bool:
        """Count one attempt's outcome; returns True when this outcome tripped the breaker.

        `status` is None when no response arrived (then `reason` says why); `retry_after` is the backend's
        Retry-After in seconds, used as the trip duration when the rule accepts it.
        """
        if self.is_open():
            return False  # outcomes of attempts that were in flight when it tripped do not extend the trip
        failed = self.is_failure(status, reason)
        if self._requests is not None:
            self._requests.charge(1)
        if not failed:
            return False
        self._failures.charge(1)
        tripped, why = self.condition_met(self._failures.used, self._requests.used if self._requests else 0)
        if tripped:
            self._trip(status, reason, retry_after, why)
        return tripped

    def condition_met(self, failures: int, requests: int) -> tuple[bool, str]:
        """Whether `failures` (of `requests`, for a percentage) within the interval trip it, and why in words."""
        condition = self.rule.failureCondition
        if condition.percentage is not None:
            why = f"{failures} of {requests} requests failed within {condition.interval:g}s"
            return 100.0 * failures / max(1, requests) >= condition.percentage, why
        return failures >= (condition.count or 1), f"{failures} failure(s) within {condition.interval:g}s"

    def _trip(self, status: int | None, reason: str | None, retry_after: float | None, why: str) -> None:
        now = self.clock.now()
        duration, source = self.trip_duration(retry_after)
        self._open_until = now + duration
        self._failures = SlidingWindow(_UNBOUNDED, self.rule.failureCondition.interval, self.clock)
        if self._requests is not None:
            self._requests = SlidingWindow(_UNBOUNDED, self.rule.failureCondition.interval, self.clock)
        self._notify(self.opened(now, status, reason, why, duration, source))

    def trip_duration(self, retry_after: float | None) -> tuple[float, str]:
        """How long a trip now lasts, and what set it: tripDuration, the backend's Retry-After, or the cap."""
        duration = self.rule.tripDuration
        source = "tripDuration"
        if self.rule.acceptRetryAfter and retry_after is not None and retry_after > 0:
            duration, source = retry_after, "Retry-After"
        cap = self.rule.maxTripDuration
        if cap is not None and duration > cap:
            # A day-long Retry-After would take the member out for a day; the cap brings it back to be probed.
            duration, source = cap, f"maxTripDuration (asked {duration:g}s by {source})"
        return duration, source

    def opened(
        self, now: float, status: int | None, reason: str | None, why: str, duration: float, source: str
    ) -> Transition:
        """The transition of a trip at `now`, its reason naming the last outcome and what set the duration."""
        last = f"status {status}" if status is not None else reason or "failure"
        return Transition(
            now, self.backend, "closed", "open", f"{why} (last: {last}); open {duration:g}s by {source}", now + duration
        )

    def _notify(self, transition: Transition) -> None:
        if self.listener is not None:
            self.listener(transition)
