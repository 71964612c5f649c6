"""Counter keys: JWT appid (unverified), subscription key, client IP, a header."""

from __future__ import annotations

import jwt

from harness.gateway.identity import ANONYMOUS_APP, app_id_of, counter_key, subscription_key_of


def _bearer(claims: dict[str, str]) -> dict[str, str]:
    return {
        "authorization": "Bearer " + jwt.encode(claims, "a-signing-key-the-gateway-never-checks", algorithm="HS256")
    }


def test_app_id_comes_from_the_appid_claim_without_verifying() -> None:
    assert app_id_of(_bearer({"appid": "11111111-aaaa"})) == "11111111-aaaa"
    assert app_id_of(_bearer({"azp": "v2-app"})) == "v2-app"


def test_missing_or_broken_tokens_are_the_anonymous_app() -> None:
    assert app_id_of({}) == ANONYMOUS_APP
    assert app_id_of({"authorization": "Bearer not.a.jwt"}) == ANONYMOUS_APP
    assert app_id_of({"authorization": "Basic abc"}) == ANONYMOUS_APP
    assert app_id_of(_bearer({"sub": "x"})) == ANONYMOUS_APP


def test_counter_keys() -> None:
    headers = {**_bearer({"appid": "app-1"}), "api-key": "k1", "x-team": "blue"}
    assert counter_key("appid", headers, "10.0.0.1") == "app-1"
    assert counter_key("subscription", headers, "10.0.0.1") == "k1"
    assert counter_key("subscription", {"ocp-apim-subscription-key": "k2", "api-key": "k1"}, "") == "k2"
    assert counter_key("ip", headers, "10.0.0.1") == "10.0.0.1"
    assert counter_key("header:X-Team", headers, "10.0.0.1") == "blue"
    assert subscription_key_of({}) is None
