"""Response headers of an AOAI deployment: quota figures on success, retry advice on a 429.

>>> from harness.mock.deployment import Admission
>>> rate_limit_headers(Admission("rate_limited_tokens", 0, 5.2, 50, 50_000, 49, 0, 3.0, 41.0))["retry-after"]
'6'
"""

from __future__ import annotations

import math

from harness.aoai.headers import CLIENT_REQUEST_ID, DEPLOYMENT_UTILIZATION
from harness.aoai.retry_after import RETRY_AFTER, RETRY_AFTER_MS
from harness.mock.deployment import Admission
from harness.records.outcomes import BackendDecision

POLICY_IDS: dict[str, str] = {
    BackendDecision.RATE_LIMITED_TOKENS: "DeploymentRatelimit-Token",
    BackendDecision.RATE_LIMITED_REQUESTS: "DeploymentRatelimit-Requests",
}
# what a 429 body says was reached, by policy-id (a PTU's 429 has none)
LIMIT_NAMES = {"DeploymentRatelimit-Token": "token rate", "DeploymentRatelimit-Requests": "request rate"}


def limit_name(admission: Admission) -> str:
    """The limit a 429 body names: the request or token rate, or the provisioned throughput (PTU).

    >>> limit_name(Admission("rate_limited_requests", 0, 3.0))
    'request rate'
    """
    if admission.utilization is not None:
        return "provisioned throughput"
    policy = admission.policy_id or POLICY_IDS.get(admission.decision)
    return LIMIT_NAMES.get(policy or "", "request rate")


def whole_seconds(seconds: float) -> int:
    """Seconds rounded up, as AOAI writes Retry-After and the reset headers (never 0 for a wait)."""
    return max(0, math.ceil(seconds - 1e-9))


def identity_headers(request_id: str, region: str, client_request_id: str | None) -> dict[str, str]:
    """Headers every answer carries, so a request can be traced across layers (the model session is added
    once the deployment is known)."""
    headers = {"apim-request-id": request_id, "x-request-id": request_id, "x-ms-region": region}
    if client_request_id:
        headers[CLIENT_REQUEST_ID] = client_request_id
    return headers


def quota_headers(admission: Admission) -> dict[str, str]:
    """x-ratelimit-* figures (standard deployments) or the utilization (PTU) after this request."""
    headers: dict[str, str] = {}
    if admission.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(admission.limit_requests)
        headers["x-ratelimit-remaining-requests"] = str(admission.remaining_requests)
        headers["x-ratelimit-limit-tokens"] = str(admission.limit_tokens)
        headers["x-ratelimit-remaining-tokens"] = str(admission.remaining_tokens)
    if admission.utilization is not None:
        headers[DEPLOYMENT_UTILIZATION] = f"{admission.utilization:.1f}%"
    return headers


def rate_limit_headers(
    admission: Admission, retry_after: float | None = None, advertise: bool = True
) -> dict[str, str]:
    """The 429 headers: both retry headers, the reset headers and the policy that refused.

    `retry_after` overrides the admission's own figure (the day-long Retry-After fault); with `advertise`
    False neither retry header is sent (an injected 429 that tells no wait).
    """
    wait = admission.retry_after if retry_after is None else retry_after
    headers = quota_headers(admission)
    if advertise:
        headers[RETRY_AFTER] = str(whole_seconds(wait))
        headers[RETRY_AFTER_MS] = str(max(0, math.ceil(wait * 1000)))
    if admission.limit_requests is not None:
        headers["x-ratelimit-reset-requests"] = str(whole_seconds(admission.reset_requests))
        headers["x-ratelimit-reset-tokens"] = str(whole_seconds(admission.reset_tokens))
    policy = admission.policy_id or POLICY_IDS.get(admission.decision)
    if policy:
        headers["policy-id"] = policy
    return headers
