"""Gateway auth as APIM does it: subscription keys (their id, never the key, names the caller) and validate-jwt
(a forged, unsigned, expired or foreign token is a 401 and charges nobody's counter)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_helpers import INSTANT, START, Stack

from harness.aoai.refusals import REFUSAL_HEADER, UNAUTHORIZED
from harness.client import classify
from harness.errors import ScenarioError
from harness.gateway.jwt_check import TokenValidator
from harness.records import read_records
from harness.scenario import load_scenario_text
from harness.scenario.gateway import JWT_FAILED_MESSAGE, JwtValidation
from harness.sim import simulate
from harness.workload.requests import unsigned_token

SECRET = "hs256-secret-of-the-tests-0123456789"
BACKEND = f"backends: [{{name: east, deployments: {{gpt-4o: {{latency: {INSTANT}}}}}}}]\n"
LIMIT = "token_limit: {tokens-per-minute: 10000, counter-key: appid}"
JWT = f"jwt: {{signing-secret: {SECRET}, issuers: [https://sts.test/], audiences: [api://aoai]}}"


def _token(app_id: str, key: str = SECRET, *, exp: float = START + 3600, **claims: Any) -> str:
    body = {"appid": app_id, "iss": "https://sts.test/", "aud": "api://aoai", "exp": int(exp), **claims}
    return jwt.encode(body, key, algorithm="HS256")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _remaining(stack: Stack) -> dict[str, int | None]:
    assert stack.gateway.limiter is not None
    return {key: tokens for key, tokens, _ in stack.gateway.limiter.remaining_by_key(1000)}


async def test_a_forged_token_is_401_and_leaves_the_victims_counter_untouched(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack(BACKEND + f"gateway: {{auth: {{{JWT}}}, {LIMIT}}}")
    for _ in range(20):  # signed with a key the gateway does not trust, claiming to be the victim
        forged = await stack.chat(headers=_bearer(_token("victim", key="attacker-key-0123456789abcdef-0123")))
        assert forged.status_code == 401 and forged.headers[REFUSAL_HEADER] == UNAUTHORIZED
        assert forged.json() == {"statusCode": 401, "message": JWT_FAILED_MESSAGE}
    assert "victim" not in _remaining(stack)
    assert all(r["app_id"] is None and r["counter_key"] is None for r in stack.requests())
    genuine = await stack.chat(headers=_bearer(_token("victim")))
    assert genuine.status_code == 200
    assert _remaining(stack)["victim"] == 10_000 - genuine.json()["usage"]["total_tokens"]
    assert stack.requests()[-1]["app_id"] == "victim"
    # the client's records call it what it is
    assert classify(forged.status_code, forged.headers) == "unauthorized"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(unsigned_token({"appid": "victim", "exp": int(START + 60)}), id="unsigned alg none"),
        pytest.param(_token("victim", aud="api://other"), id="another audience"),
        pytest.param(_token("victim", iss="https://evil.test/"), id="another issuer"),
        pytest.param(_token("victim", exp=START - 1), id="expired"),
        pytest.param(_token("victim", nbf=int(START + 600)), id="not yet valid"),
        pytest.param(
            jwt.encode({"appid": "victim", "iss": "https://sts.test/", "aud": "api://aoai"}, SECRET), id="no exp"
        ),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
async def test_tokens_that_fail_validation_are_401(make_stack: Callable[[str], Stack], token: str) -> None:
    stack = make_stack(BACKEND + f"gateway: {{auth: {{{JWT}}}, {LIMIT}}}")
    answer = await stack.chat(headers=_bearer(token))
    assert answer.status_code == 401 and answer.headers[REFUSAL_HEADER] == UNAUTHORIZED
    assert (await stack.chat()).status_code == 401  # no token at all


async def test_a_remembered_token_still_expires_on_the_gateways_clock(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND + f"gateway: {{auth: {{{JWT}}}}}")
    token = _token("app-1", exp=START + 120)
    assert (await stack.chat(headers=_bearer(token))).status_code == 200
    stack.clock.advance(119)
    assert (await stack.chat(headers=_bearer(token))).status_code == 200
    stack.clock.advance(2)
    assert (await stack.chat(headers=_bearer(token))).status_code == 401


def test_only_successes_are_cached_and_the_cache_stays_bounded() -> None:
    from harness.clock import VirtualClock

    rule = JwtValidation.model_validate({"signing-secret": SECRET, "cache-size": 3})
    check = TokenValidator(rule, VirtualClock(START))
    forged = _token("victim", key="attacker-key-0123456789abcdef-0123")
    assert check.app_id(forged) is None and check.app_id(forged) is None
    assert len(check._passed) == 0
    tokens = [_token(f"app-{i}") for i in range(10)]
    assert [check.app_id(t) for t in tokens] == [f"app-{i}" for i in range(10)]
    assert len(check._passed) == 3
    assert check.app_id(tokens[0]) == "app-0"  # forgotten, so validated again: still right


def _rsa_jwk(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "alg": "RS256", "use": "sig"}


async def test_rs256_tokens_checked_against_a_jwks_file(tmp_path: Path, make_stack: Callable[[str], Stack]) -> None:
    trusted, jwk = _rsa_jwk("k1")
    stranger, _ = _rsa_jwk("k1")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    stack = make_stack(BACKEND + f"gateway: {{auth: {{jwt: {{jwks-file: '{jwks}'}}}}}}")
    claims = {"appid": "app-rs", "exp": int(START + 600)}
    signed = jwt.encode(claims, trusted, algorithm="RS256", headers={"kid": "k1"})
    assert (await stack.chat(headers=_bearer(signed))).status_code == 200
    assert stack.requests()[-1]["app_id"] == "app-rs"
    impostor = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
    assert (await stack.chat(headers=_bearer(impostor))).status_code == 401
    unknown_kid = jwt.encode(claims, trusted, algorithm="RS256", headers={"kid": "k9"})
    assert (await stack.chat(headers=_bearer(unknown_kid))).status_code == 401


def test_an_unreadable_jwks_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    from harness.clock import VirtualClock

    rule = JwtValidation.model_validate({"jwks-file": str(tmp_path / "missing.json")})
    with pytest.raises(ScenarioError) as caught:
        TokenValidator(rule, VirtualClock())
    message = str(caught.value)
    assert message == f"gateway.auth.jwt.jwks-file: {tmp_path / 'missing.json'}: no such JSON Web Key Set file"


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    """A JWKS endpoint on loopback: (url, the served set, the paths asked for)."""
    served: dict[str, Any] = {"keys": []}
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keys", served, hits
    server.shutdown()
    server.server_close()


def test_jwks_url_is_read_again_for_a_rotated_key_but_not_for_every_unknown_kid(
    jwks_server: tuple[str, dict[str, Any], list[str]],
) -> None:
    from harness.clock import VirtualClock

    url, served, hits = jwks_server
    first, first_jwk = _rsa_jwk("k1")
    rotated, rotated_jwk = _rsa_jwk("k2")
    served["keys"] = [first_jwk]
    clock = VirtualClock(START)
    check = TokenValidator(JwtValidation.model_validate({"jwks-url": url, "jwks-refresh": "PT5M"}), clock)
    claims = {"appid": "a", "exp": int(START + 3600)}
    assert check.app_id(jwt.encode(claims, first, algorithm="RS256", headers={"kid": "k1"})) == "a"
    assert len(hits) == 1
    served["keys"] = [first_jwk, rotated_jwk]
    new_token = jwt.encode(claims, rotated, algorithm="RS256", headers={"kid": "k2"})
    assert check.app_id(new_token) is None  # read less than jwks-refresh ago: no new read
    for i in range(50):  # random kids do not hammer the identity provider
        check.app_id(jwt.encode(claims, rotated, algorithm="RS256", headers={"kid": f"x{i}"}))
    assert len(hits) == 1
    clock.advance(300)
    assert check.app_id(new_token) == "a" and len(hits) == 2


SUBSCRIPTIONS = "auth: {subscriptions: [{id: team-a, key: key-of-team-a-0001}, {id: team-b, key: key-of-team-b-0002}]}"


async def test_the_subscription_id_is_the_counter_key_and_the_metric_label(make_stack: Callable[[str], Stack]) -> None:
    limit = "token_limit: {tokens-per-minute: 10000, counter-key: subscription}"
    metrics = "metrics: {dimensions: [subscription, model]}"
    stack = make_stack(BACKEND + f"gateway: {{{SUBSCRIPTIONS}, {limit}, {metrics}}}")
    assert (await stack.chat(headers={"api-key": "key-of-team-a-0001"})).status_code == 200
    assert (await stack.chat(headers={"ocp-apim-subscription-key": "key-of-team-b-0002"})).status_code == 200
    assert [r["counter_key"] for r in stack.requests()] == ["team-a", "team-b"]
    scrape = (await stack.client.get("/metrics")).text
    assert 'subscription="team-a"' in scrape and 'counter_key="team-b"' in scrape
    logged = json.dumps(stack.rows)
    for key in ("key-of-team-a-0001", "key-of-team-b-0002"):
        assert key not in scrape and key not in logged


async def test_subscription_not_required_lets_keyless_callers_in_but_not_wrong_keys(
    make_stack: Callable[[str], Stack],
) -> None:
    stack = make_stack(BACKEND + f"gateway: {{{SUBSCRIPTIONS[:-1]}, subscription_required: false}}}}")
    assert (await stack.chat()).status_code == 200
    assert (await stack.chat(headers={"api-key": "guess"})).status_code == 401


def test_embedded_default_has_no_auth() -> None:
    auth = load_scenario_text(BACKEND).gateway.auth
    assert auth.subscriptions == [] and auth.jwt is None


def test_the_simulated_load_signs_its_tokens_and_sends_its_keys(tmp_path: Path) -> None:
    """A scenario with subscriptions and validate-jwt runs end to end: each app sends its key and a token
    signed with the scenario's secret, and the gateway counts the apps it validated."""
    scenario = tmp_path / "auth.yaml"
    scenario.write_text(
        f"""
run: {{duration: 60, seed: 1}}
backends: [{{name: east, deployments: {{gpt-4o: {{tpm: 1000000}}}}}}]
gateway:
  auth: {{{JWT}, subscriptions: [{{id: team-a, key: key-a-01}}, {{id: team-b, key: key-b-02}}]}}
  token_limit: {{tokens-per-minute: 100000, counter-key: subscription}}
workload:
  users: 4
  think_time: 1
  apps: [{{id: app-a, subscription_key: key-a-01}}, {{id: app-b, subscription_key: key-b-02}}]
  mixes: [{{deployment: gpt-4o, prompt_tokens: 20, max_tokens: 10}}]
""",
        encoding="utf-8",
    )
    run_dir = simulate(str(scenario), [], tmp_path / "run")
    records = read_records(run_dir / "records.csv")
    assert len(records) > 50 and {r["status"] for r in records} == {200}
    rows = [json.loads(line) for line in (run_dir / "gateway.jsonl").read_text().splitlines()]
    requests = [r for r in rows if r["kind"] == "request"]
    assert {(r["app_id"], r["counter_key"]) for r in requests} == {("app-a", "team-a"), ("app-b", "team-b")}
