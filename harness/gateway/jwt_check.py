"""`validate-jwt` as APIM does it: signature, issuer, audience and lifetime of a Bearer token, on the injected clock.

Only tokens that pass are remembered (a bounded cache keyed by the token, each entry until its `exp`); a token
that fails is checked again every time it comes, so a failure is never taken for a success.

    >>> import jwt
    >>> from harness.clock import VirtualClock
    >>> from harness.scenario.gateway import JwtValidation
    >>> rule = JwtValidation.model_validate({"signing-secret": "s" * 32, "require-expiration-time": False})
    >>> check = TokenValidator(rule, VirtualClock())
    >>> check.app_id(jwt.encode({"appid": "a-1"}, "s" * 32, algorithm="HS256"))
    'a-1'
    >>> check.app_id(jwt.encode({"appid": "a-1"}, "forged" * 6, algorithm="HS256")) is None
    True
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import jwt

from harness.clock import Clock
from harness.errors import ScenarioError
from harness.gateway.lru import BoundedCache
from harness.inputs import JWKS_LIMIT, InputError, read_text
from harness.scenario.gateway import JwtValidation

_PATH = "gateway.auth.jwt"

# APIM samples fall back to the empty GUID when a request carries no app id.
ANONYMOUS_APP = "00000000-0000-0000-0000-000000000000"


def json_segment(segment: str) -> dict[str, Any] | None:
    """One base64url JSON part of a JWT (header or payload), read without checking anything; None if it is not.

    A plain base64 and JSON read: several times cheaper than PyJWT's, which matters for every unseen caller.
    """
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def app_claim(claims: dict[str, Any], name: str = "appid") -> str:
    """The app a token names: its `name` claim, else `azp` (v2 tokens), else the empty GUID."""
    value = claims.get(name) or claims.get("azp")
    return str(value) if value else ANONYMOUS_APP


class SigningKeys:
    """The keys tokens may be signed with: an HS256 secret, or a JSON Web Key Set from a file or a URL."""

    def __init__(self, rule: JwtValidation, clock: Clock) -> None:
        self.rule = rule
        self.clock = clock
        self._by_kid: dict[str | None, jwt.PyJWK] = {}
        self._read_at = -math.inf
        if rule.jwks_file is not None:
            self._load(self._read_file(rule.jwks_file))
        elif rule.jwks_url is not None:
            self._load(self._fetch(rule.jwks_url))

    def key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]] | None:
        """The key and the algorithm a token's header asks for, when it is one of ours."""
        if self.rule.signing_secret is not None:
            return self.rule.signing_secret, ["HS256"]
        kid = header.get("kid")
        key = self._by_kid.get(kid) or (self._only_key() if kid is None else None)
        if key is None and self.rule.jwks_url is not None and self._may_refresh():
            # An unknown kid may be a rotated key; the wait between reads keeps random kids from hammering the URL.
            self._load(self._fetch(self.rule.jwks_url))
            key = self._by_kid.get(kid)
        if key is None or key.algorithm_name is None:
            return None
        return key.key, [key.algorithm_name]

    def _only_key(self) -> jwt.PyJWK | None:
        return next(iter(self._by_kid.values())) if len(self._by_kid) == 1 else None

    def _may_refresh(self) -> bool:
        return self.clock.wall() - self._read_at >= self.rule.jwks_refresh

    def _load(self, data: dict[str, Any] | None) -> None:
        self._read_at = self.clock.wall()
        if data is None:
            return
        try:
            keys = jwt.PyJWKSet.from_dict(data).keys
        except jwt.PyJWTError as exc:
            raise ScenarioError(f"{_PATH}.jwks", f"not a usable JSON Web Key Set: {exc}") from None
        except (KeyError, ValueError, TypeError, AttributeError, NotImplementedError) as exc:
            # PyJWT reads a key's fields without checking them first (a missing "k", an unknown algorithm)
            problem = f"{exc.__class__.__name__}: {_first_line(exc)}"
            raise ScenarioError(f"{_PATH}.jwks", f"not a usable JSON Web Key Set ({problem})") from None
        self._by_kid = {key.key_id: key for key in keys}

    @staticmethod
    def _read_file(path: str) -> dict[str, Any]:
        where = f"{_PATH}.jwks-file"
        try:
            # a regular file of bounded size: /dev/zero or a FIFO is one line, not memory exhausted or a hang
            data = json.loads(read_text(path, "JSON Web Key Set", JWKS_LIMIT), parse_constant=_not_json)
        except InputError as exc:
            raise ScenarioError(where, str(exc)) from None
        except (ValueError, RecursionError) as exc:
            raise ScenarioError(where, f"{path}: not JSON ({_first_line(exc)})") from None
        if not isinstance(data, dict):
            raise ScenarioError(where, f"{path} is not a JSON Web Key Set (an object with keys)")
        return data

    def _fetch(self, url: str) -> dict[str, Any] | None:
        first = self._read_at == -math.inf
        try:
            data = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=10).fetch_data()
        except jwt.PyJWKClientError as exc:
            if first:  # at start a bad URL is the scenario's fault; later the keys already read stay in use
                raise ScenarioError(f"{_PATH}.jwks-url", f"cannot read the key set: {exc}") from None
            return None
        return data if isinstance(data, dict) else None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


class TokenValidator:
    """Whether a Bearer token passes `validate-jwt`, and the app it names."""

    def __init__(self, rule: JwtValidation, clock: Clock) -> None:
        self.rule = rule
        self.clock = clock
        self.keys = SigningKeys(rule, clock)
        # token -> (app id, expiry): bounded, least recently used forgotten, so memory stays flat
        self._passed = BoundedCache(rule.cache_size)

    def app_id(self, token: str | None) -> str | None:
        """The app the token names when it passes; None when it is missing or fails."""
        if token is None:
            return None
        now = self.clock.wall()
        known = self._passed.get(token)
        if known is not None:
            app_id, expires = known
            if now <= expires + self.rule.clock_skew:
                return str(app_id)
            self._passed.drop(token)
            return None
        claims = self._verified_claims(token, now)
        if claims is None:
            return None
        app_id = app_claim(claims, self.rule.app_claim)
        self._passed.put(token, (app_id, float(claims.get("exp", math.inf))))
        return app_id

    def _verified_claims(self, token: str, now: float) -> dict[str, Any] | None:
        rule = self.rule
        header = json_segment(token.partition(".")[0])
        if header is None:
            return None
        try:
            found = self.keys.key_for(header)
            if found is None or header.get("alg") not in found[1]:
                return None  # unsigned (`alg: none`), another algorithm, or a key we do not know
            key, algorithms = found
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=rule.audiences or None,
                issuer=rule.issuers or None,
                # lifetime is checked below on the injected clock, not on the process's own time
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": bool(rule.audiences),
                    "verify_iss": bool(rule.issuers),
                    "require": ["exp"] if rule.require_expiration_time else [],
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            return None
        if not _within_lifetime(claims, now, rule.clock_skew):
            return None
        return claims


def _within_lifetime(claims: dict[str, Any], now: float, skew: float) -> bool:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    for value in (exp, nbf):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
    if exp is not None and now > exp + skew:
        return False
    return not (nbf is not None and now < nbf - skew)
