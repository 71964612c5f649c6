"""Header capture: turn a response's headers into record fields, and name the cause of a failure.

The cause is read from the response's headers, never from the wording of its body: the reference gateway
names its own refusals with a typed header (`harness.aoai.refusals`); a backend 429 carries AOAI's
`policy-id`; another gateway's token limit is known by its token headers.

    >>> classify(429, {"policy-id": "DeploymentRatelimit-Token"})
    <ErrorKind.BACKEND_429: 'backend_429'>
    >>> classify(503, {"x-gateway-refusal": "breaker_open", "x-gateway-request-id": "g1"})
    <ErrorKind.BREAKER_OPEN: 'breaker_open'>
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from harness.aoai.headers import BACKEND, GATEWAY_REPLICA, GATEWAY_REQUEST_ID
from harness.aoai.refusals import BREAKER_OPEN, QUOTA, TOKEN_LIMIT, refusal_of
from harness.aoai.retry_after import RETRY_AFTER, RETRY_AFTER_MS, retry_after_ms, retry_after_s
from harness.records.outcomes import ErrorKind


class GatewayHeaderNames(NamedTuple):
    """Names of the gateway's token-limit headers (APIM lets each policy choose them).

    A named tuple: every attempt looks up its record fields by these names (`capture`), and a tuple hashes
    and compares without running Python code.
    """

    remaining_tokens: str = "x-gateway-remaining-tokens"
    remaining_quota: str = "x-gateway-remaining-quota-tokens"
    tokens_consumed: str = "x-gateway-tokens-consumed"
    retry_after: str = "retry-after"

    def lowered(self) -> GatewayHeaderNames:
        return GatewayHeaderNames(*(name.lower() for name in self))


DEFAULT_GATEWAY_HEADERS = GatewayHeaderNames()

# record field -> (header, parser)
_INT_FIELDS = {
    "ratelimit_remaining_requests": "x-ratelimit-remaining-requests",
    "ratelimit_remaining_tokens": "x-ratelimit-remaining-tokens",
    "ratelimit_limit_requests": "x-ratelimit-limit-requests",
    "ratelimit_limit_tokens": "x-ratelimit-limit-tokens",
}
_FLOAT_FIELDS = {
    "ratelimit_reset_requests": "x-ratelimit-reset-requests",
    "ratelimit_reset_tokens": "x-ratelimit-reset-tokens",
    "ptu_utilization": "azure-openai-deployment-utilization",  # "37.5%": a PTU deployment's level
}
_TEXT_FIELDS = {
    "policy_id": "policy-id",
    "backend": BACKEND,
    "region": "x-ms-region",
    "gateway_request_id": GATEWAY_REQUEST_ID,
    "replica": GATEWAY_REPLICA,
}


def _number(value: str | None, kind: type) -> Any:
    """A header as a number; float headers may carry OpenAI's unit suffix ("6s", "120ms")."""
    if value is None:
        return None
    text = value.strip().removesuffix("%")
    scale = 1.0
    if kind is float and text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif kind is float and text.endswith("s"):
        text = text[:-1]
    try:
        number = float(text) * scale
    except ValueError:
        return None
    return int(number) if kind is int else number


@lru_cache(maxsize=16)
def _recorded_headers(names: GatewayHeaderNames) -> dict[str, tuple[tuple[str, type], ...]]:
    """Header -> the record fields it fills and their kinds (a gateway may name a header as AOAI does)."""
    fields = [
        *((field_name, header, float) for field_name, header in _FLOAT_FIELDS.items()),
        *((field_name, header, int) for field_name, header in _INT_FIELDS.items()),
        ("gateway_remaining_tokens", names.remaining_tokens, int),
        ("gateway_remaining_quota", names.remaining_quota, int),
        ("gateway_tokens_consumed", names.tokens_consumed, int),
        *((field_name, header, str) for field_name, header in _TEXT_FIELDS.items()),
    ]
    table: dict[str, tuple[tuple[str, type], ...]] = {}
    for field_name, header, kind in fields:
        table[header] = (*table.get(header, ()), (field_name, kind))
    return table


def capture(headers: Mapping[str, str], names: GatewayHeaderNames = DEFAULT_GATEWAY_HEADERS) -> dict[str, Any]:
    """Record fields found in lower-cased `headers` (absent headers are left out).

    >>> capture({"retry-after": "5", "x-ratelimit-remaining-tokens": "120", "x-ms-region": "East US"})
    {'retry_after_s': 5.0, 'ratelimit_remaining_tokens': 120, 'region': 'East US'}
    """
    fields: dict[str, Any] = {}
    if names.retry_after in headers or RETRY_AFTER in headers:  # the gateway's name for it first, then AOAI's
        retry_after = retry_after_s(headers, name=names.retry_after)
        if retry_after is None and names.retry_after != RETRY_AFTER:
            retry_after = retry_after_s(headers)
        if retry_after is not None:
            fields["retry_after_s"] = retry_after
    if RETRY_AFTER_MS in headers and (millis := retry_after_ms(headers)) is not None:
        fields["retry_after_ms"] = millis
    # One pass over the headers the answer has (a refusal carries four or five), each looked up once.
    recorded = _recorded_headers(names)
    for header, text in headers.items():
        parsed = recorded.get(header)
        if parsed is None:
            continue
        for field_name, kind in parsed:
            if kind is str:
                if text:
                    fields[field_name] = text
            elif (value := _number(text, kind)) is not None:
                fields[field_name] = value
    backend_id = headers.get("apim-request-id") or headers.get("x-request-id")
    if backend_id:
        fields["backend_request_id"] = backend_id
    return fields


def classify(
    status: int,
    headers: Mapping[str, str],
    error: str | None = None,
    names: GatewayHeaderNames = DEFAULT_GATEWAY_HEADERS,
) -> str:
    """The record's `error_kind` for an attempt ("" on success), from the status and the headers."""
    if error:
        return error
    if status < 400:
        return ""
    refusal = refusal_of(headers)
    if refusal is not None and refusal in _REFUSAL_KINDS:
        return _REFUSAL_KINDS[refusal]
    from_gateway = GATEWAY_REQUEST_ID in headers
    has_backend = BACKEND in headers or "policy-id" in headers
    if status == 429:
        if "policy-id" in headers or has_backend:
            return ErrorKind.BACKEND_429
        if names.remaining_tokens in headers:
            return ErrorKind.GATEWAY_TOKEN_LIMIT  # another gateway's token limit: it sends its token headers
        return ErrorKind.BREAKER_OPEN if from_gateway else ErrorKind.BACKEND_429
    if status == 403 and names.remaining_quota in headers:
        return ErrorKind.GATEWAY_QUOTA
    if status == 503 and from_gateway and not has_backend:
        return ErrorKind.BREAKER_OPEN
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    if status == 401:  # a refused key or token: a setup problem, not load, so reports keep it apart
        return ErrorKind.UNAUTHORIZED
    return ErrorKind.CLIENT_ERROR


# the gateway's typed refusals -> the record's error kind (other refusals are told by their status)
_REFUSAL_KINDS = {
    TOKEN_LIMIT: ErrorKind.GATEWAY_TOKEN_LIMIT,
    QUOTA: ErrorKind.GATEWAY_QUOTA,
    BREAKER_OPEN: ErrorKind.BREAKER_OPEN,
}
