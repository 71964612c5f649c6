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
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.client.profiles import ResponseInfo, RetryDecision, RetryProfile
from harness.clock import Clock
from harness.records.outcomes import Decision

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
        return Decision.RETRY
    if response.error is None and response.status < 400:
        return Decision.SUCCESS
    return Decision.GIVE_UP if decision.gave_up else Decision.FAIL


class RetryLoop:
    """The retry loop's state without its waits: what each attempt's answer leads to, attempt after attempt.

    `run_with_retries` carries it out on a clock; the simulator carries it out with events.

    >>> from harness.client.profiles import profile_for
    >>> loop = RetryLoop(profile_for("openai-python"))
    >>> loop.decide(ResponseInfo(429, {"retry-after": "5"}), now=0.0)[1].wait_s
    5.0
    >>> loop.attempt, loop.waited_s
    (2, 5.0)
    """

    def __init__(self, profile: RetryProfile) -> None:
        self.profile = profile
        self.attempt = 1  # the attempt about to be sent (or whose answer is being decided)
        self.waited_s = 0.0

    def decide(self, response: ResponseInfo, now: float) -> tuple[ResponseInfo, RetryDecision]:
        """The profile's decision on the current attempt's answer; on a retry, moves on to the next attempt.

        Returns the response as the profile saw it (with `now` and the time waited so far) and the decision.
        """
        response = ResponseInfo(response.status, response.headers, response.error, now, self.waited_s)
        decision = self.profile.decide(self.attempt, response)
        if decision.retry:
            self.waited_s += decision.wait_s
            self.attempt += 1
        return response, decision


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
        response, decision = loop.decide(response, clock.now())
        if on_attempt is not None:
            on_attempt(attempt, response, detail, decision)
        if not decision.retry:
            return RetryOutcome(attempt, response, detail, decision, waited)
        if decision.wait_s > 0:
            clock.sleep(decision.wait_s)
