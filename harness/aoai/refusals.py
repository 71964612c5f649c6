"""The gateway's own refusals as typed codes on the wire: a header a client reads, never an English message.

The reference gateway puts `x-gateway-refusal: <kind>` on every answer it makes itself instead of relaying a
backend's; clients and reports map the kind, not the wording of the body.

    >>> refusal_of({"x-gateway-refusal": "token_limit"})
    'token_limit'
    >>> refusal_of({"x-gateway-refusal": "free lunch"}) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping

REFUSAL_HEADER = "x-gateway-refusal"

TOKEN_LIMIT = "token_limit"  # 429: the caller's tokens per minute are used up
QUOTA = "quota"  # 403: the caller's token quota for the period is used up
BREAKER_OPEN = "breaker_open"  # 503 (or 429): every pool member is tripped
UPSTREAM_ERROR = "upstream_error"  # 502/504: no usable answer from the member
BAD_REQUEST = "bad_request"  # 400/404/405/413: the request itself
UNAUTHORIZED = "unauthorized"  # 401: credentials

KINDS = frozenset({TOKEN_LIMIT, QUOTA, BREAKER_OPEN, UPSTREAM_ERROR, BAD_REQUEST, UNAUTHORIZED})


def refusal_of(headers: Mapping[str, str]) -> str | None:
    """The refusal kind a gateway answer names (lower-cased headers), or None for a relayed answer."""
    kind = headers.get(REFUSAL_HEADER)
    return kind if kind in KINDS else None
