"""Counter keys: JWT appid (unverified), subscription (its id or a fingerprint, never the key), client IP, a header."""

from __future__ import annotations

import jwt

from harness.clock import VirtualClock
from harness.gateway.identity import (
    ANONYMOUS_APP,
    Caller,
    Identifier,
    app_id_of,
    counter_key,
    key_fingerprint,
    subscription_key_of,
)
from harness.scenario.gateway import Auth


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


def _caller(headers: dict[str, str], **auth: object) -> Caller:
    caller = Identifier(Auth.model_validate(auth), VirtualClock()).identify(headers)
    assert isinstance(caller, Caller)
    return caller


def test_counter_keys() -> None:
    headers = {**_bearer({"appid": "app-1"}), "api-key": "k1", "x-team": "blue"}
    caller = _caller(headers)
    assert counter_key("appid", caller, headers, "10.0.0.1") == "app-1"
    assert counter_key("ip", caller, headers, "10.0.0.1") == "10.0.0.1"
    assert counter_key("header:X-Team", caller, headers, "10.0.0.1") == "blue"
    assert subscription_key_of({"ocp-apim-subscription-key": "k2", "api-key": "k1"}) == "k2"
    assert subscription_key_of({}) is None


def test_the_subscription_counter_key_is_the_subscriptions_id_never_its_key() -> None:
    listed = {"subscriptions": [{"id": "team-a", "key": "k1"}, {"id": "team-b", "key": "k2"}]}
    headers = {"ocp-apim-subscription-key": "k2"}
    assert counter_key("subscription", _caller(headers, **listed), headers, "") == "team-b"
    # with no subscriptions listed keys are not checked; callers are still told apart, by a fingerprint
    unlisted = {"api-key": "k1"}
    key = counter_key("subscription", _caller(unlisted), unlisted, "")
    assert key == key_fingerprint("k1") and "k1" not in key
    assert key != counter_key("subscription", _caller({"api-key": "k3"}), {"api-key": "k3"}, "")


def test_app_ids_of_many_callers_stay_correct_past_the_cache() -> None:
    tokens = [_bearer({"appid": f"app-{i}"}) for i in range(20_000)]
    assert [app_id_of(t) for t in tokens[:3]] == ["app-0", "app-1", "app-2"]
    for headers in tokens:
        app_id_of(headers)
    assert app_id_of(tokens[0]) == "app-0" and app_id_of(tokens[-1]) == "app-19999"
