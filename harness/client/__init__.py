"""The client side: retry profiles of real SDKs, the retry loop and header capture (SSE: `harness.aoai.sse`).

Pure and gevent-safe: nothing here uses asyncio, and every wait goes through the scenario clock.
"""

from harness.client.headers import GatewayHeaderNames, capture, classify
from harness.client.profiles import PROFILE_NAMES, ResponseInfo, RetryDecision, RetryProfile, profile_for
from harness.client.retry import RETRY_COUNT_HEADER, RetryLoop, decision_label

__all__ = [
    "PROFILE_NAMES",
    "RETRY_COUNT_HEADER",
    "GatewayHeaderNames",
    "ResponseInfo",
    "RetryDecision",
    "RetryLoop",
    "RetryProfile",
    "capture",
    "classify",
    "decision_label",
    "profile_for",
]
