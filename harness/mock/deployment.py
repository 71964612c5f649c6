"""The admission model of one AOAI deployment: request and token windows (standard) or utilization (PTU).

Pure and synchronous, on an injected clock. The app asks `admit`, answers, then calls `finish` with the
actual cost so a PTU deployment can correct its estimate.

A refused request is told the honest earliest time it would be admitted (`retry_after`): when both the
request window and the token window have room for it, given everything they hold at that moment. While
rejected requests count toward the request window (`count_rejected_requests`, AOAI's documented rule),
the refusal itself holds a place, so that time is later than when the oldest request ages out; and it
holds only if nothing else reaches the deployment meanwhile: every request that arrives earlier, a retry
or another client's, is counted too and pushes the time further.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario import Deployment
    >>> model = DeploymentModel(Deployment(tpm=50_000, model="gpt-4o"), VirtualClock())
    >>> model.admit(estimate=110).remaining_requests
    49
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.clock import Clock
from harness.limits import LeakyBucket, SlidingWindow
from harness.records.outcomes import BackendDecision
from harness.scenario import Deployment
from harness.tokens import default_max_tokens

REQUEST_WINDOW_SECONDS = 10.0
TOKEN_WINDOW_SECONDS = 60.0

# decisions as written in the backend log
# an admitted request answered 429 after all by an injected fault (the backend log says "fault")
INJECTED_429 = "injected_429"


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Admission:
    """What the deployment decided about one request, with every number its response headers need."""

    decision: str  # a BackendDecision: ok, rate_limited_tokens, rate_limited_requests or ptu_over_capacity
    estimate: int  # tokens charged at admission (0 when rejected)
    retry_after: float  # seconds until the request would be admitted (0 when admitted)
    limit_requests: int | None = None  # standard deployments only (10 s figure)
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float = 0.0  # seconds until the request window is free again
    reset_tokens: float = 0.0
    utilization: float | None = None  # PTU deployments only, percent after this decision
    policy_id: str | None = None  # the policy-id an INJECTED_429 carries (the others' follows from the decision)

    @property
    def allowed(self) -> bool:
        return self.decision == BackendDecision.OK


def requests_per_10s(deployment: Deployment) -> int:
    """Requests allowed per 10 s window: RPM / 6, at least 1 (50K TPM at 6 RPM per 1K -> 50).

    >>> requests_per_10s(Deployment(tpm=1_000))
    1
    """
    rpm = deployment.tpm / 1000 * deployment.rpm_per_1k_tpm
    return max(1, round(rpm / 6))


class DeploymentModel:
    """Quota state of one deployment; all time comes from `clock` (scenario seconds)."""

    def __init__(self, deployment: Deployment, clock: Clock) -> None:
        self.deployment = deployment
        self.clock = clock
        self.default_completion = deployment.default_max_tokens or default_max_tokens(deployment.model)
        self.requests: SlidingWindow | None = None
        self.tokens: SlidingWindow | None = None
        self.bucket: LeakyBucket | None = None
        if deployment.ptu is not None:
            capacity = deployment.ptu * deployment.ptu_tokens_per_minute
            initial = capacity * deployment.ptu_initial_utilization / 100.0
            self.bucket = LeakyBucket(capacity, capacity / 60.0, clock, initial_level=initial)
        else:
            self.requests = SlidingWindow(requests_per_10s(deployment), REQUEST_WINDOW_SECONDS, clock)
            self.tokens = SlidingWindow(deployment.tpm, TOKEN_WINDOW_SECONDS, clock)

    @property
    def is_ptu(self) -> bool:
        return self.bucket is not None

    def admit(self, estimate: int, count_rejected: bool = True) -> Admission:
        """Admit a request that AOAI estimates at `estimate` tokens, or say when it would be admitted.

        A rejected request still uses the request window (as on AOAI) when the deployment counts rejected
        requests (`count_rejected_requests`, the default) and `count_rejected` is true; the queueing fault
        passes false while a request waits its turn.
        """
        if self.bucket is not None:
            return self._admit_ptu(estimate)
        assert self.requests is not None and self.tokens is not None
        by_requests = self.requests.peek(1)
        by_tokens = self.tokens.peek(estimate)
        if by_requests.allowed and by_tokens.allowed:
            self.requests.charge(1)
            self.tokens.charge(estimate)
            return self._standard(BackendDecision.OK, estimate, 0.0)
        decision = (
            BackendDecision.RATE_LIMITED_REQUESTS if not by_requests.allowed else BackendDecision.RATE_LIMITED_TOKENS
        )
        if count_rejected and self.deployment.count_rejected_requests:
            self.requests.charge(1)
        return self._standard(decision, 0, self._earliest(estimate))

    def refuse_admitted(self, admission: Admission, retry_after: float, policy_id: str) -> Admission:
        """Answer an admitted request 429 after all (an injected fault): its tokens come back, and so does its
        place in the request window unless rejected requests count; it is told `retry_after`, or later when
        the windows admit it only then.
        """
        if self.bucket is not None:
            # the level is back where the admission found it (<= 100 %): nothing more to wait for
            self.bucket.adjust(-admission.estimate)
            # PTU 429s carry no quota policy: the utilization header says why
            return Admission(INJECTED_429, 0, retry_after, utilization=self.bucket.utilization())
        assert self.requests is not None and self.tokens is not None
        self.tokens.refund(admission.estimate)
        if not self.deployment.count_rejected_requests:
            self.requests.refund(1)
        wait = max(retry_after, self._earliest(admission.estimate))
        return self._standard(INJECTED_429, 0, wait, policy_id)

    def _earliest(self, estimate: int) -> float:
        """Seconds until both windows have room for a request of `estimate` tokens, if nothing else arrives.

        Each window only frees room as time passes, so the later of the two times is the earliest for both.
        """
        assert self.requests is not None and self.tokens is not None
        wait = max(self.requests.peek(1).retry_after, self.tokens.peek(estimate).retry_after)
        # Larger than the whole token window: it never fits; tell the client the window length, as AOAI does.
        return TOKEN_WINDOW_SECONDS if math.isinf(wait) else wait

    def _standard(self, decision: str, charged: int, retry_after: float, policy_id: str | None = None) -> Admission:
        assert self.requests is not None and self.tokens is not None
        return Admission(
            decision=decision,
            estimate=charged,
            retry_after=retry_after,
            limit_requests=self.requests.limit,
            limit_tokens=self.tokens.limit,
            remaining_requests=self.requests.remaining(),
            remaining_tokens=self.tokens.remaining(),
            reset_requests=self.requests.peek(0).reset_after,
            reset_tokens=self.tokens.peek(0).reset_after,
            policy_id=policy_id,
        )

    def _admit_ptu(self, estimate: int) -> Admission:
        assert self.bucket is not None
        decision = self.bucket.acquire(estimate)
        return Admission(
            decision=BackendDecision.OK if decision.allowed else BackendDecision.PTU_OVER_CAPACITY,
            estimate=estimate if decision.allowed else 0,
            retry_after=decision.retry_after,
            utilization=self.bucket.utilization(),
        )

    def finish(self, admission: Admission, actual_tokens: int) -> None:
        """Correct a PTU charge to the request's actual cost (prompt + completion tokens).

        Standard deployments keep the estimate: AOAI charges TPM at admission and never refunds it.
        """
        if self.bucket is not None and admission.allowed:
            self.bucket.adjust(actual_tokens - admission.estimate)

    def utilization(self) -> float | None:
        return self.bucket.utilization() if self.bucket is not None else None
