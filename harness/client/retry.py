"""The retry loop: send, ask the profile, wait on the scenario clock, send again.

Gevent-safe (no asyncio): waits go through `Clock.sleep`, which a scaled clock shortens by the time scale
and gevent's monkey-patching turns into a cooperative sleep.

    >>> from harness.clock import VirtualClock
    >>> from harness.client.profiles import ResponseInfo, profile_for
    >>> answers = iter([ResponseInfo(429, {"retry-after": "5"}), ResponseInfo(200)])
    >>> outcome = run_with_retries(lambda n: (next(answers), None), profile_for("openai-python"), VirtualClock())
    >>> outcome.attempts, outcome.waited_s
    (2, 5.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from harness.client.profiles import ResponseInfo, RetryDecision, RetryProfile
from harness.clock import Clock

T = TypeVar("T")

RETRY_COUNT_HEADER = "x-stainless-retry-count"


@dataclass(frozen=True, slots=True)
class RetryOutcome(Generic[T]):
    """The last attempt of a logical request, and how many attempts and how much waiting it took."""

    attempts: int
    response: ResponseInfo
    detail: T
    decision: RetryDecision
    waited_s: float


def decision_label(response: ResponseInfo, decision: RetryDecision) -> str:
    """The record's `decision`: success, retry, give_up (a retryable failure left alone) or fail."""
    if decision.retry:
        return "retry"
    if response.error is None and response.status < 400:
        return "success"
    if decision.reason in ("retries exhausted",) or "cap" in decision.reason or "in total" in decision.reason:
        return "give_up"
    return "fail"


def run_with_retries(
    send: Callable[[int], tuple[ResponseInfo, T]],
    profile: RetryProfile,
    clock: Clock,
    on_attempt: Callable[[int, ResponseInfo, T, RetryDecision], None] | None = None,
) -> RetryOutcome[T]:
    """Call `send(attempt)` until the profile stops; `on_attempt` sees every attempt with its decision.

    `send` gets the 1-based attempt number (attempt - 1 is what goes into `x-stainless-retry-count`).
    """
    attempt = 1
    waited = 0.0
    while True:
        response, detail = send(attempt)
        response = replace(response, now=clock.now(), waited_s=waited)
        decision = profile.decide(attempt, response)
        if on_attempt is not None:
            on_attempt(attempt, response, detail, decision)
        if not decision.retry:
            return RetryOutcome(attempt, response, detail, decision, waited)
        if decision.wait_s > 0:
            clock.sleep(decision.wait_s)
        waited += decision.wait_s
        attempt += 1
