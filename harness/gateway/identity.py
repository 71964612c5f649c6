"""Who is calling: the app id of a Bearer token, the subscription key, the client IP or a header.

The JWT is decoded without verifying its signature: the gateway only needs the `appid` claim to count
tokens per app, as APIM's `context.Request.Headers...AsJwt()` expressions do.

    >>> import jwt
    >>> token = jwt.encode({"appid": "app-7"}, "k" * 32, algorithm="HS256")
    >>> app_id_of({"authorization": f"Bearer {token}"})
    'app-7'
    >>> counter_key("header:x-team", {"x-team": "blue"}, "127.0.0.1")
    'blue'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import jwt

# APIM samples fall back to the empty GUID when a request carries no app id.
ANONYMOUS_APP = "00000000-0000-0000-0000-000000000000"
SUBSCRIPTION_HEADERS = ("ocp-apim-subscription-key", "api-key")


@lru_cache(maxsize=4096)
def _app_id_from_token(token: str) -> str:
    # Tokens repeat across a client's requests; decoding each once keeps this off the hot path.
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ANONYMOUS_APP
    value = claims.get("appid") or claims.get("azp")
    return str(value) if value else ANONYMOUS_APP


def app_id_of(headers: Mapping[str, str]) -> str:
    """The `appid` claim of the request's Bearer token, or the empty GUID (header names in lower case)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return ANONYMOUS_APP
    return _app_id_from_token(token.strip())


def subscription_key_of(headers: Mapping[str, str]) -> str | None:
    """The APIM subscription key (`Ocp-Apim-Subscription-Key`, or `api-key` as the openai SDK sends it)."""
    for name in SUBSCRIPTION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def counter_key(kind: str, headers: Mapping[str, str], client_ip: str) -> str:
    """The token-limit counter key of a request: `appid`, `subscription`, `ip` or `header:<name>`."""
    if kind == "appid":
        return app_id_of(headers)
    if kind == "subscription":
        return subscription_key_of(headers) or ""
    if kind == "ip":
        return client_ip
    if kind.startswith("header:"):
        return headers.get(kind.removeprefix("header:").lower(), "")
    raise ValueError(f"unknown counter key {kind!r}")
