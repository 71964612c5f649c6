"""The retry loop's decisions: what each attempt's answer leads to, and the record's `decision` for it.

The waits themselves are the drivers' (`harness.workload.session.request_steps` yields them): a Locust user
sleeps them on the scenario clock, the simulator schedules them as events.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.client.profiles import ResponseInfo, RetryDecision, RetryProfile
from harness.records.outcomes import Decision

RETRY_COUNT_HEADER = "x-stainless-retry-count"


def decision_label(response: ResponseInfo, decision: RetryDecision) -> str:
    """The record's `decision`: success, retry, give_up (a retryable failure left alone) or fail."""
    if decision.retry:
        return Decision.RETRY
    if response.error is None and response.status < 400:
        return Decision.SUCCESS
    return Decision.GIVE_UP if decision.gave_up else Decision.FAIL


class RetryLoop:
    """The retry loop's state without its waits: what each attempt's answer leads to, attempt after attempt.

    A logical request's steps (`harness.workload.session.request_steps`) decide with it, whichever driver
    carries them out.

    >>> from harness.client.profiles import profile_for
    >>> loop = RetryLoop(profile_for("openai-python"))
    >>> loop.decide(429, {"retry-after": "5"}, None, now=0.0)[1].wait_s
    5.0
    >>> loop.attempt, loop.waited_s
    (2, 5.0)
    """

    def __init__(self, profile: RetryProfile) -> None:
        self.profile = profile
        self.attempt = 1  # the attempt about to be sent (or whose answer is being decided)
        self.waited_s = 0.0

    def decide(
        self, status: int, headers: Mapping[str, str], error: str | None, now: float
    ) -> tuple[ResponseInfo, RetryDecision]:
        """The profile's decision on the current attempt's answer (`status` and lower-cased `headers`, or the
        `error` that left it without one); on a retry, moves on to the next attempt.

        Returns the response as the profile saw it (with `now` and the time waited so far) and the decision.
        """
        response = ResponseInfo(status, headers, error, now, self.waited_s)
        decision = self.profile.decide(self.attempt, response)
        if decision.retry:
            self.waited_s += decision.wait_s
            self.attempt += 1
        return response, decision
