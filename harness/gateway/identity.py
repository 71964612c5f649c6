"""Who is calling: the subscription (by id, never by key), the app of the Bearer token, the client IP or a header.

With `gateway.auth` empty (the default) the token's `appid` is read without checking its signature, as APIM's
`context.Request.Headers...AsJwt()` expressions do: taken on trust. With `gateway.auth.jwt` the token is
validated first (harness.gateway.jwt_check) and a token that fails is a 401, like APIM's `validate-jwt`.

    >>> import jwt
    >>> token = jwt.encode({"appid": "app-7"}, "k" * 32, algorithm="HS256")
    >>> app_id_of({"authorization": f"Bearer {token}"})
    'app-7'
    >>> counter_key("header:x-team", Caller(ANONYMOUS_APP, None), {"x-team": "blue"}, "127.0.0.1")
    'blue'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.clock import Clock
from harness.gateway.jwt_check import ANONYMOUS_APP, TokenValidator, app_claim, json_segment
from harness.gateway.lru import BoundedCache
from harness.scenario.gateway import Auth, counter_key_parts

SUBSCRIPTION_HEADERS = ("ocp-apim-subscription-key", "api-key")
# APIM also reads the key from the query string, under this name (its default), when no header carries one.
SUBSCRIPTION_QUERY = "subscription-key"

# APIM's 401 messages for subscription keys (the body is `{"statusCode": 401, "message": ...}`).
MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when making requests to "
    "an API."
)
INVALID_KEY = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
)

# Unverified app ids remembered; past it a token is decoded again, which costs a few microseconds (no cliff).
UNVERIFIED_CACHE_SIZE = 16_384


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Caller:
    """An admitted caller: its app id and its subscription's id (None without a key); never a secret."""

    app_id: str
    subscription: str | None


@dataclass(frozen=True, slots=True)
class Denied:
    """A request refused for its credentials, with APIM's message."""

    message: str
    status: int = 401


def bearer_of(headers: Mapping[str, str]) -> str | None:
    """The Bearer token of a request (header names in lower case), or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, read without checking anything (None when it is not a JWT)."""
    parts = token.split(".")
    return json_segment(parts[1]) if len(parts) == 3 else None


_unverified = BoundedCache(UNVERIFIED_CACHE_SIZE)


def app_id_of(headers: Mapping[str, str]) -> str:
    """The `appid` claim of the request's Bearer token, unverified, or the empty GUID."""
    token = bearer_of(headers)
    if token is None:
        return ANONYMOUS_APP
    app_id = _unverified.get(token)
    if app_id is None:
        claims = unverified_claims(token)
        app_id = app_claim(claims) if claims is not None else ANONYMOUS_APP
        _unverified.put(token, app_id)
    return str(app_id)


def subscription_key_of(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The APIM subscription key (`Ocp-Apim-Subscription-Key`, or `api-key` as the openai SDK sends it), else
    the `subscription-key` query parameter.

    >>> subscription_key_of({}, {"api-version": "2024-10-21", "subscription-key": "k-1"})
    'k-1'
    """
    for name in SUBSCRIPTION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    value = query.get(SUBSCRIPTION_QUERY) if query is not None else None
    return value or None


def without_subscription_key(target: bytes) -> bytes:
    """A request target (path and query, as sent) without its `subscription-key` parameters: a key the gateway
    has checked goes no further, in the query as in the headers, so no backend's log holds it.

    >>> without_subscription_key(b"/openai/x?subscription-key=s3cret&api-version=2024-10-21")
    b'/openai/x?api-version=2024-10-21'
    >>> without_subscription_key(b"/openai/x?api-version=2024-10-21")
    b'/openai/x?api-version=2024-10-21'
    """
    path, mark, query = target.partition(b"?")
    if not mark or _QUERY_NAME not in query:
        return target
    kept = [part for part in query.split(b"&") if part.partition(b"=")[0] != _QUERY_NAME]
    return path + (b"?" + b"&".join(kept) if kept else b"")


_QUERY_NAME = SUBSCRIPTION_QUERY.encode()


def key_fingerprint(key: str) -> str:
    """A stand-in for a key no subscription lists: tells callers apart without writing the key anywhere.

    >>> key_fingerprint("secret-1")
    'key-f7e7c36e458e'
    """
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class Identifier:
    """Checks a request's credentials as `gateway.auth` says, and names the caller."""

    def __init__(self, auth: Auth, clock: Clock) -> None:
        self.subscriptions = {s.key: s.id for s in auth.subscriptions}
        self.subscription_required = auth.subscription_required
        self.validator = TokenValidator(auth.jwt, clock) if auth.jwt is not None else None

    @property
    def checks_subscriptions(self) -> bool:
        """Whether keys are the gateway's own (then they are not passed on to the backends)."""
        return bool(self.subscriptions)

    def identify(self, headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> Caller | Denied:
        """The caller of a request, or why it is refused (lower-cased header names; the query string's
        parameters, where APIM also takes the subscription key)."""
        key = subscription_key_of(headers, query)
        if self.subscriptions:
            if key is None:
                if self.subscription_required:
                    return Denied(MISSING_KEY)
                subscription = None
            else:
                subscription = self.subscriptions.get(key)
                if subscription is None:
                    return Denied(INVALID_KEY)
        else:
            subscription = key_fingerprint(key) if key is not None else None
        if self.validator is None:
            return Caller(app_id_of(headers), subscription)
        app_id = self.validator.app_id(bearer_of(headers))
        if app_id is None:
            return Denied(self.validator.rule.failed_validation_error_message)
        return Caller(app_id, subscription)


def counter_key(kind: str, caller: Caller, headers: Mapping[str, str], client_ip: str) -> str:
    """The token-limit counter key of a request: `appid`, `subscription` (its id), `ip`, `header:<name>`,
    `constant:<text>`, or several joined by `+`, their values concatenated."""
    if "+" in kind:
        return "".join(_key_part(part, caller, headers, client_ip) for part in counter_key_parts(kind))
    return _key_part(kind, caller, headers, client_ip)


def _key_part(kind: str, caller: Caller, headers: Mapping[str, str], client_ip: str) -> str:
    if kind.startswith("constant:"):
        return kind.removeprefix("constant:")
    if kind == "appid":
        return caller.app_id
    if kind == "subscription":
        return caller.subscription or ""
    if kind == "ip":
        return client_ip
    if kind.startswith("header:"):
        return headers.get(kind.removeprefix("header:").lower(), "")
    raise ValueError(f"unknown counter key {kind!r}")
