"""The admission model of one AOAI deployment: request and token windows (standard) or utilization (PTU).

Pure and synchronous, on an injected clock. The app asks `admit`, answers, then calls `finish` with the
actual cost so a PTU deployment can correct its estimate.

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
from harness.scenario import Deployment
from harness.tokens import default_max_tokens

REQUEST_WINDOW_SECONDS = 10.0
TOKEN_WINDOW_SECONDS = 60.0

# decisions as written in the backend log
OK = "ok"
RATE_LIMITED_TOKENS = "rate_limited_tokens"
RATE_LIMITED_REQUESTS = "rate_limited_requests"
PTU_OVER_CAPACITY = "ptu_over_capacity"


@dataclass(frozen=True, slots=True)
class Admission:
    """What the deployment decided about one request, with every number its response headers need."""

    decision: str  # OK, RATE_LIMITED_TOKENS, RATE_LIMITED_REQUESTS or PTU_OVER_CAPACITY
    estimate: int  # tokens charged at admission (0 when rejected)
    retry_after: float  # seconds until the request would fit (0 when admitted)
    limit_requests: int | None = None  # standard deployments only (10 s figure)
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float = 0.0  # seconds until the request window is free again
    reset_tokens: float = 0.0
    utilization: float | None = None  # PTU deployments only, percent after this decision

    @property
    def allowed(self) -> bool:
        return self.decision == OK


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
            self.bucket = LeakyBucket(capacity, capacity / 60.0, clock)
        else:
            self.requests = SlidingWindow(requests_per_10s(deployment), REQUEST_WINDOW_SECONDS, clock)
            self.tokens = SlidingWindow(deployment.tpm, TOKEN_WINDOW_SECONDS, clock)

    @property
    def is_ptu(self) -> bool:
        return self.bucket is not None

    def admit(self, estimate: int, count_rejected: bool = True) -> Admission:
        """Admit a request that AOAI estimates at `estimate` tokens, or say when it would fit.

        A rejected request still uses the request window (as on AOAI) unless `count_rejected` is false,
        which the queueing fault uses while a request waits its turn.
        """
        if self.bucket is not None:
            return self._admit_ptu(estimate)
        assert self.requests is not None and self.tokens is not None
        by_requests = self.requests.peek(1)
        by_tokens = self.tokens.peek(estimate)
        if by_requests.allowed and by_tokens.allowed:
            self.requests.charge(1)
            self.tokens.charge(estimate)
            decision, retry_after, charged = OK, 0.0, estimate
        elif not by_requests.allowed:
            decision, retry_after, charged = RATE_LIMITED_REQUESTS, by_requests.retry_after, 0
        else:
            decision, retry_after, charged = RATE_LIMITED_TOKENS, by_tokens.retry_after, 0
        if decision != OK and count_rejected:
            self.requests.charge(1)
        if math.isinf(retry_after):
            # Larger than the whole window: it never fits; tell the client the window length, as AOAI does.
            retry_after = TOKEN_WINDOW_SECONDS
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
        )

    def _admit_ptu(self, estimate: int) -> Admission:
        assert self.bucket is not None
        decision = self.bucket.acquire(estimate)
        return Admission(
            decision=OK if decision.allowed else PTU_OVER_CAPACITY,
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
