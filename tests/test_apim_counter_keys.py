"""Counter keys as APIM policies write them: kept verbatim on export, simulated where the harness understands
them (subscription id, header, IP, app id, literals = one counter for everyone, concatenations of these), a
warning only for what it cannot evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.apim.convert import from_apim
from harness.apim.expressions import counter_key_expression, counter_key_of
from harness.gateway.identity import Caller, counter_key
from harness.scenario import validate_scenario
from harness.sim.run import simulate

BACKENDS = Path(__file__).parent / "data" / "apim" / "pool-backends.json"
APPID = (
    '@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims.GetValueOrDefault("appid", "x"))'
)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("@(context.Subscription.Id)", "subscription"),
        ("@(context.Subscription?.Id)", "subscription"),
        ('@(context.Request.Headers.GetValueOrDefault("X-Team", ""))', "header:x-team"),
        ("@(context.Request.IpAddress)", "ip"),
        (APPID, "appid"),
        ("global-budget", "constant:global-budget"),
        ('@("everyone")', "constant:everyone"),
        ('@(context.Subscription.Id + ":" + context.Request.IpAddress)', "subscription + constant:: + ip"),
        ('@(context.Request.Headers.GetValueOrDefault("x-team","") + context.Subscription.Id)',
         "header:x-team + subscription"),
    ],
)  # fmt: skip
def test_understood_keys_are_simulated_without_a_warning(tmp_path: Path, value: str, key: str) -> None:
    assert counter_key_of(value) == key
    policy = tmp_path / "policy.xml"
    policy.write_text(f"<llm-token-limit counter-key='{value}' tokens-per-minute='500' />", encoding="utf-8")
    imported = from_apim(BACKENDS, policy)
    assert imported.data["gateway"]["token_limit"]["counter-key"] == key
    assert not any("counter-key" in w for w in imported.warnings)
    validate_scenario(imported.data, "x", workload=False)


@pytest.mark.parametrize(
    "value",
    ["@(context.User.Email)", "@{ return context.Subscription.Id; }", "@(context.Subscription.Id.Substring(0, 4))"],
)
def test_what_cannot_be_evaluated_is_one_warning(tmp_path: Path, value: str) -> None:
    assert counter_key_of(value) is None
    policy = tmp_path / "policy.xml"
    policy.write_text(f"<llm-token-limit counter-key='{value}' tokens-per-minute='500' />", encoding="utf-8")
    warnings = [w for w in from_apim(BACKENDS, policy).warnings if "counter-key" in w]
    assert len(warnings) == 1 and "policy expression not evaluated" in warnings[0]


@pytest.mark.parametrize("key", ["constant:all", "subscription + constant:-gpt + header:x-team", "appid + ip"])
def test_the_harness_expression_of_a_key_reads_back_as_the_key(key: str) -> None:
    assert counter_key_of(counter_key_expression(key)) == key


def test_the_gateway_counts_a_constant_key_once_for_everyone_and_concatenates_parts() -> None:
    a, b = Caller("app-a", "sub-a"), Caller("app-b", "sub-b")
    assert counter_key("constant:all", a, {}, "10.0.0.1") == counter_key("constant:all", b, {}, "10.0.0.2") == "all"
    key = "subscription + constant:/ + header:x-team"
    assert counter_key(key, a, {"x-team": "red"}, "10.0.0.1") == "sub-a/red"
    assert counter_key(key, b, {"x-team": "red"}, "10.0.0.1") == "sub-b/red"


def test_a_global_counter_throttles_two_apps_together_in_the_simulator(tmp_path: Path) -> None:
    """Two apps, each well under the limit alone, together over it: with a constant key both get 429s from
    the gateway, with a per-app key neither does."""

    def run(key: str) -> dict[str, set[str]]:
        scenario = tmp_path / f"{key.replace(':', '-')}.yaml"
        scenario.write_text(
            f"""
run: {{duration: 120, time_scale: 10, seed: 3}}
backends: [{{name: aoai, deployments: {{gpt-4o: {{tpm: 1000000}}}}}}]
gateway:
  token_limit: {{counter-key: "{key}", tokens-per-minute: 4500}}
workload:
  users: 4
  think_time: 6
  apps: [{{id: a, client_profile: none}}, {{id: b, client_profile: none}}]
  mixes: [{{name: chat, deployment: gpt-4o, prompt_tokens: 100, max_tokens: 50}}]
""",
            encoding="utf-8",
        )
        run_dir = simulate(str(scenario), [], tmp_path / key.replace(":", "-"), report=False)
        keys: dict[str, set[str]] = {}
        for line in (run_dir / "gateway.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("counter_key") is not None:
                keys.setdefault(row["counter_key"], set()).add(str(row.get("status")))
        return keys

    shared = run("constant:all")
    assert set(shared) == {"all"} and "429" in shared["all"]
    per_app = run("appid")
    assert set(per_app) == {"a", "b"} and all("429" not in statuses for statuses in per_app.values())
