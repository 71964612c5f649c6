"""A logical request's retry loop on a clock, for tests that compare a client profile with the SDK it models:
send, let the profile decide (`harness.client.RetryLoop`), wait, send again.

    >>> from harness.clock import VirtualClock
    >>> from harness.client import ResponseInfo, profile_for
    >>> answers = iter([ResponseInfo(429, {"retry-after": "5"}), ResponseInfo(200)])
    >>> outcome = run_with_retries(lambda n: (next(answers), None), profile_for("openai-python"), VirtualClock())
    >>> outcome.attempts, outcome.waited_s
    (2, 5.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.client import ResponseInfo, RetryDecision, RetryLoop, RetryProfile
from harness.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryOutcome(Generic[T]):
    """The last attempt of a logical request, and how many attempts and how much waiting it took."""

    attempts: int
    response: ResponseInfo
    detail: T
    decision: RetryDecision
    waited_s: float


def run_with_retries(
    send: Callable[[int], tuple[ResponseInfo, T]],
    profile: RetryProfile,
    clock: Clock,
    on_attempt: Callable[[int, ResponseInfo, T, RetryDecision], None] | None = None,
) -> RetryOutcome[T]:
    """Call `send(attempt)` until the profile stops; `on_attempt` sees every attempt with its decision.

    `send` gets the 1-based attempt number (attempt - 1 is what goes into `x-stainless-retry-count`).
    """
    loop = RetryLoop(profile)
    while True:
        attempt, waited = loop.attempt, loop.waited_s
        response, detail = send(attempt)
        response, decision = loop.decide(response.status, response.headers, response.error, clock.now())
        if on_attempt is not None:
            on_attempt(attempt, response, detail, decision)
        if not decision.retry:
            return RetryOutcome(attempt, response, detail, decision, waited)
        if decision.wait_s > 0:
            clock.sleep(decision.wait_s)
