"""`harness scenario from-apim` / `to-apim`: APIM backend resources and policy XML into a scenario and back.

The configurations are written by the project (tests/data/apim and below); the seed's pool is the first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring

from harness.apim.cli import WORKLOAD_MARKER
from harness.apim.convert import from_apim, to_apim
from harness.apim.expressions import dimension_element
from harness.cli import main
from harness.scenario import load_scenario, load_scenario_text, validate_scenario

DATA = Path(__file__).parent / "data" / "apim"
SEED_BACKENDS, SEED_POLICY = DATA / "pool-backends.json", DATA / "pool-policy.xml"
BICEP_BACKENDS, QUOTA_POLICY = DATA / "bicep-build.json", DATA / "quota-retry-policy.xml"


def export_and_reimport(imported_data: dict[str, Any], work: Path) -> dict[str, Any]:
    scenario = validate_scenario(imported_data, "imported", workload=False)
    exported = to_apim(scenario)
    (work / "backends.json").write_text(json.dumps(exported.backends["backends.json"]), encoding="utf-8")
    (work / "policy.xml").write_text(exported.policy, encoding="utf-8")
    return from_apim(work / "backends.json", work / "policy.xml").data


def equivalent(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Same pool, breaker, token limit, metrics and retry once validated (defaults and number types aside).

    Token-metric dimensions APIM cannot express (model, streaming, ...) are left out of an export with a
    warning, so they are compared as APIM can carry them.
    """
    first, second = validate_scenario(a, "a", workload=False), validate_scenario(b, "b", workload=False)
    names = [x.name for x in first.backends]
    assert names == [x.name for x in second.backends]
    assert first.gateway.pool_members(names) == second.gateway.pool_members(names)
    expressible = [d for d in first.gateway.metrics.dimensions if dimension_element(d) is not None]
    assert second.gateway.metrics.dimensions == expressible
    exclude = {"pool": {"members"}, "metrics": {"dimensions"}}
    assert first.gateway.model_dump(exclude=exclude) == second.gateway.model_dump(exclude=exclude)


def test_the_seed_pool_imports_as_apim_defines_it() -> None:
    imported = from_apim(SEED_BACKENDS, SEED_POLICY)
    gateway = validate_scenario(imported.data, "seed", workload=False).gateway
    assert [(m.backend, m.priority) for m in gateway.pool.members] == [
        ("openai-3", 1), ("openai-1", 2), ("openai-2", 2),
    ]  # fmt: skip
    rule = gateway.circuit_breaker
    assert rule is not None and rule.failureCondition.count == 1 and rule.failureCondition.interval == 60.0
    assert [(r.min, r.max) for r in rule.failureCondition.statusCodeRanges] == [(429, 429)]
    assert rule.tripDuration == 60.0 and rule.acceptRetryAfter is True
    limit = gateway.token_limit
    # the counter key reads a variable set from the JWT's appid claim: counted per appid
    assert limit is not None and limit.counter_key == "appid" and limit.tokens_per_minute == 1000
    assert limit.remaining_tokens_header_name == "x-apim-remaining-token"
    assert limit.tokens_consumed_header_name == "x-apim-tokens-consumed"
    assert gateway.metrics.dimensions == ["subscription", "client_ip"]


def test_what_the_harness_does_not_model_is_one_warning_each_naming_it() -> None:
    warnings = from_apim(SEED_BACKENDS, SEED_POLICY).warnings
    assert any("backend openai-1: properties.credentials is not modelled" in w for w in warnings)
    assert any("<llm-token-limit> remaining-tokens-variable-name: attribute not modelled" in w for w in warnings)
    assert any('<dimension name="API ID">: not a dimension the gateway fills' in w for w in warnings)
    other = from_apim(BICEP_BACKENDS, QUOTA_POLICY).warnings
    assert any("backend payg-east: properties.tls is not modelled" in w for w in other)
    assert any("<validate-jwt> is not modelled" in w for w in other)
    assert all("\n" not in w for w in warnings + other)


def test_an_unknown_counter_key_expression_is_reported_not_evaluated(tmp_path: Path) -> None:
    policy = tmp_path / "policy.xml"
    policy.write_text(
        '<llm-token-limit counter-key="@(context.User.Email.ToUpper())" tokens-per-minute="500" />', encoding="utf-8"
    )
    imported = from_apim(SEED_BACKENDS, policy)
    assert imported.data["gateway"]["token_limit"]["counter-key"] == "appid"
    assert any(
        "counter-key: policy expression not evaluated (@(context.User.Email.ToUpper()))" in w for w in imported.warnings
    )


def test_the_imported_scenario_is_served(tmp_path: Path, serve_stack: Any) -> None:
    out = tmp_path / "imported.yaml"
    assert main(["scenario", "from-apim", "--backends", str(SEED_BACKENDS), "--policy", str(SEED_POLICY),
                 "--out", str(out)]) == 0  # fmt: skip
    stack = serve_stack(out, only=None)
    gateway = next(line for line in stack.ready if line["role"] == "gateway")
    response = httpx.post(
        f"{gateway['url']}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["x-apim-remaining-token"]  # the imported token limit's header


@pytest.mark.parametrize(
    ("backends", "policy"), [(SEED_BACKENDS, SEED_POLICY), (BICEP_BACKENDS, QUOTA_POLICY), (BICEP_BACKENDS, None)]
)
def test_import_then_export_gives_back_an_equivalent_configuration(
    tmp_path: Path, backends: Path, policy: Path | None
) -> None:
    imported = from_apim(backends, policy).data
    equivalent(imported, export_and_reimport(imported, tmp_path))


VARIANTS = {
    "single backends, no policy": {"gateway": {"pool": {"members": []}, "circuit_breaker": None}},
    "weights and three priorities": {
        "gateway": {
            "pool": {
                "members": [
                    {"backend": "a", "priority": 1, "weight": 5}, {"backend": "b", "priority": 1, "weight": 1},
                    {"backend": "c", "priority": 3, "weight": 2},
                ]
            },
            "circuit_breaker": {
                "failureCondition": {"percentage": 25, "interval": "PT10S",
                                     "statusCodeRanges": [{"min": 429, "max": 429}, {"min": 500, "max": 599}]},
                "tripDuration": "PT2M", "acceptRetryAfter": True,
            },
        }
    },
    "quota only, per header, retry on 429": {
        "gateway": {
            "token_limit": {"counter-key": "header:x-team", "token-quota": 100000, "token-quota-period": "Hourly"},
            "metrics": {"dimensions": ["app_id", "operation", "header:x-team"]},
            "retry": {"enabled": True, "max_attempts": 5, "on": [{"min": 429, "max": 429}]},
        }
    },
    "per ip with every header": {
        "gateway": {
            "token_limit": {
                "counter-key": "ip", "tokens-per-minute": 3000, "estimate-prompt-tokens": False,
                "retry-after-header-name": "x-wait", "remaining-tokens-header-name": "x-left",
                "remaining-quota-tokens-header-name": "x-quota-left", "tokens-consumed-header-name": "x-used",
            },
        }
    },
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_scenarios_export_and_import_back_unchanged(tmp_path: Path, variant: str) -> None:
    data: dict[str, Any] = {
        "backends": [{"name": n, "deployments": {"gpt-4o": {"tpm": 1000}}} for n in ("a", "b", "c")],
        **copy.deepcopy(VARIANTS[variant]),
    }
    equivalent(data, export_and_reimport(data, tmp_path))


def test_exports_have_apims_documented_shapes(tmp_path: Path) -> None:
    imported = from_apim(BICEP_BACKENDS, QUOTA_POLICY).data
    exported = to_apim(validate_scenario(imported, "x", workload=False))
    resources, xml = exported.backends["backends.json"]["resources"], exported.policy
    assert all(r["type"] == "Microsoft.ApiManagement/service/backends" for r in resources)
    pool = resources[-1]["properties"]
    assert pool["type"] == "Pool" and [s["priority"] for s in pool["pool"]["services"]] == [1, 2, 2]
    rule = resources[0]["properties"]["circuitBreaker"]["rules"][0]
    assert set(rule) == {"name", "failureCondition", "tripDuration", "acceptRetryAfter"}
    assert rule["tripDuration"] == "PT30S" and rule["failureCondition"]["interval"] == "PT30S"
    root = fromstring(xml)  # strict XML: the expressions are escaped
    assert root.tag == "policies" and [c.tag for c in root] == ["inbound", "backend", "outbound", "on-error"]
    limit = root.find("inbound/llm-token-limit")
    assert limit is not None and limit.get("counter-key") == "@(context.Subscription.Id)"
    assert limit.get("token-quota-period") == "Daily"
    retry = root.find("backend/retry")
    assert retry is not None and retry.get("count") == "2" and retry.find("forward-request") is not None


def test_harness_only_settings_are_warned_on_export() -> None:
    scenario = validate_scenario(
        {
            "backends": [{"name": "a"}, {"name": "b"}],
            "gateway": {"pool": {"selection": "latency"}, "all_tripped_response": 429,
                        "metrics": {"dimensions": ["model", "streaming"]}},
        },
        "x",
        workload=False,
    )  # fmt: skip
    exported = to_apim(scenario)
    xml, warnings = exported.policy, exported.warnings
    assert any("gateway.pool.selection latency" in w for w in warnings)
    assert any("all_tripped_response 429" in w for w in warnings)
    assert any("dimensions: model has no APIM equivalent" in w for w in warnings)
    assert any("dimensions: streaming has no APIM equivalent" in w for w in warnings)
    assert "<dimension" not in xml


def test_a_sweeps_recommendation_is_exported(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "breaker-trip-duration.yaml"
    recommendation = {"setting": {"gateway.circuit_breaker.tripDuration": "PT2M"}}
    comparison = {"scenario": str(scenario), "recommendation": recommendation}
    (sweep / "comparison.json").write_text(json.dumps(comparison), encoding="utf-8")
    assert main(["scenario", "to-apim", "--sweep", str(sweep), "--out", str(tmp_path / "out")]) == 0
    template = json.loads((tmp_path / "out" / "backends.json").read_text(encoding="utf-8"))
    rules = [r["properties"]["circuitBreaker"]["rules"][0] for r in template["resources"][:-1]]
    assert {r["tripDuration"] for r in rules} == {"PT2M"}
    rule = load_scenario(scenario).gateway.circuit_breaker
    assert rule is not None and rule.tripDuration != 120.0  # the file says otherwise


def test_a_sweep_whose_pick_broke_live_exports_its_fallback_or_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "breaker-trip-duration.yaml"
    confirm = {"confirmed": False, "final_setting": {"gateway.circuit_breaker.tripDuration": "PT1M"}}
    recommendation = {"setting": {"gateway.circuit_breaker.tripDuration": "PT30S"}, "confirm": confirm}
    (sweep / "comparison.json").write_text(json.dumps({"scenario": str(scenario), "recommendation": recommendation}))
    assert main(["scenario", "to-apim", "--sweep", str(sweep), "--out", str(tmp_path / "out")]) == 0
    template = json.loads((tmp_path / "out" / "backends.json").read_text(encoding="utf-8"))
    rules = [r["properties"]["circuitBreaker"]["rules"][0] for r in template["resources"][:-1]]
    assert {r["tripDuration"] for r in rules} == {"PT1M"}
    confirm["final_setting"] = None
    (sweep / "comparison.json").write_text(json.dumps({"scenario": str(scenario), "recommendation": recommendation}))
    assert main(["scenario", "to-apim", "--sweep", str(sweep), "--out", str(tmp_path / "out2")]) == 2
    assert "broke its constraints live and no setting held" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<policies><inbound><llm-token-limit tokens-per-minute='5'></inbound></policies>",
         "policy.xml: line 1, column "),
        ('<!DOCTYPE p [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><policies>&b;</policies>', "policy.xml: "),
        ('<llm-token-limit counter-key="@(context.Subscription.Id)" tokens-per-minute="many" />',
         "policy.xml: <llm-token-limit> tokens-per-minute: 'many' is not a whole number"),
    ],
)  # fmt: skip
def test_bad_policy_is_one_line_naming_file_and_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    policy = tmp_path / "policy.xml"
    policy.write_text(text, encoding="utf-8")
    code = main(["scenario", "from-apim", "--backends", str(SEED_BACKENDS), "--policy", str(policy),
                 "--out", str(tmp_path / "s.yaml")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert expected in err[0]
    assert not (tmp_path / "s.yaml").exists()


def test_bad_backends_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "backends.json"
    bad.write_text('{"name": "x", "properties": {"pool": {"services": [{"priority": 1}]}}}', encoding="utf-8")
    code = main(["scenario", "from-apim", "--backends", str(bad), "--out", str(tmp_path / "s.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("backend x: pool.services[0]: needs an id")


def test_exporting_over_the_original_resources_keeps_their_urls_and_credentials() -> None:
    imported = from_apim(SEED_BACKENDS, SEED_POLICY).data
    imported["gateway"]["circuit_breaker"]["tripDuration"] = "PT30S"  # the tuned setting
    scenario = validate_scenario(imported, "tuned", workload=False)
    exported = to_apim(scenario, originals=SEED_BACKENDS)
    original = json.loads(SEED_BACKENDS.read_text(encoding="utf-8"))
    written = exported.backends[SEED_BACKENDS.name]
    assert written[:3] == original[:3]  # the members: url, credentials and all, untouched
    pool_rule = written[3]["properties"]["circuitBreaker"]["rules"][0]
    assert pool_rule["tripDuration"] == "PT30S"  # the rule lives on the pool resource: edited there
    assert exported.changes == [
        f"{SEED_BACKENDS.name}: backend backend_pool_aoai: circuitBreaker.rules[0].tripDuration: PT1M -> PT30S"
    ]


def test_the_workload_template_validates_once_uncommented(tmp_path: Path) -> None:
    out = tmp_path / "imported.yaml"
    assert main(["scenario", "from-apim", "--backends", str(BICEP_BACKENDS), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    head, _, template = text.partition(WORKLOAD_MARKER)
    uncommented = "\n".join(line.removeprefix("# ") for line in template.splitlines()[1:])
    scenario = load_scenario_text(head + uncommented)
    assert [a.id for a in scenario.workload.apps] == ["app-a", "app-b"]
    assert scenario.workload.mixes[0].deployment == "gpt-4o"
