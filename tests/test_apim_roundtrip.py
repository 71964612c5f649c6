"""`to-apim` over the user's own configuration: a corpus shaped like the public APIM GenAI-gateway patterns
(tests/fixtures/apim, written by the project) imported, tuned and exported. Only the tuned attributes change:
the exported policy is the input byte for byte otherwise, and the backends JSON equals the input but for them.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.apim.cli import read_named_values, scenario_text
from harness.apim.convert import DEFAULT_DEPLOYMENT, Exported, from_apim, to_apim
from harness.apim.policy import parse_policy
from harness.cli import main
from harness.errors import HarnessError
from harness.gateway.forwarding import build_breakers
from harness.scenario import load_scenario, validate_scenario

FIXTURES = Path(__file__).parent / "fixtures" / "apim"


@dataclass
class Case:
    tuning: list[str]  # --set overrides, as a sweep's recommendation gives them
    policy_edits: list[tuple[str, str, str]]  # (element tag, attribute, value) the export must write
    backends_edit: Callable[[Any], None]  # applies the expected edits to the input JSON
    named_values: dict[str, str] = field(default_factory=dict)  # named values the export asks to set
    kept: list[str] = field(default_factory=list)  # elements that must survive (auth, cache, fragments, ...)


def _set(*path: Any) -> Callable[[Any], None]:
    *keys, value = path

    def edit(document: Any) -> None:
        for key in keys[:-1]:
            document = document[key]
        document[keys[-1]] = value

    return edit


def _all(*edits: Callable[[Any], None]) -> Callable[[Any], None]:
    def edit(document: Any) -> None:
        for one in edits:
            one(document)

    return edit


CASES = {
    "priority-weight-pool": Case(
        ["gateway.pool.members[1].circuit_breaker.tripDuration=PT2M", "gateway.pool.members[0].weight=2",
         "gateway.token_limit.tokens-per-minute=30000"],
        [("azure-openai-token-limit", "tokens-per-minute", "30000")],
        _all(_set("value", 1, "properties", "circuitBreaker", "rules", 0, "tripDuration", "PT2M"),
             _set("value", 3, "properties", "pool", "services", 0, "weight", 2)),
        kept=["authentication-managed-identity", "set-header", "on-error/choose/when/return-response"],
    ),
    "ptu-payg-spill": Case(
        ["gateway.pool.members[0].circuit_breaker.tripDuration=PT30S", "gateway.retry.max_attempts=3"],
        [("retry", "count", "2")],
        _set("resources", 0, "properties", "circuitBreaker", "rules", 0, "tripDuration", "PT30S"),
        kept=["authentication-managed-identity", "outbound/set-header"],
    ),
    "semantic-cache-global": Case(
        ["gateway.token_limit.tokens-per-minute=150000", "gateway.token_limit.estimate-prompt-tokens=true"],
        [("azure-openai-token-limit", "tokens-per-minute", "150000"),
         ("azure-openai-token-limit", "estimate-prompt-tokens", "true")],
        lambda document: None,
        kept=["azure-openai-semantic-cache-lookup", "azure-openai-semantic-cache-store", "authentication-managed-identity"],
    ),
    "landing-zone-fragments": Case(
        ["gateway.token_limit.tokens-per-minute=45000", "gateway.circuit_breaker.tripDuration=PT1M"],
        [],  # tokens-per-minute is {{tpm}}: the reference stays, the named value changes
        _all(_set("value", 0, "properties", "circuitBreaker", "rules", 0, "tripDuration", "PT1M"),
             _set("value", 1, "properties", "circuitBreaker", "rules", 0, "tripDuration", "PT1M")),
        named_values={"tpm": "45000"},
        kept=["include-fragment", "set-variable"],
    ),
    "bicep-copy-loop": Case(
        ["gateway.token_limit.token-quota=2000000"],
        [("llm-token-limit", "token-quota", "2000000")],
        lambda document: None,
    ),
}  # fmt: skip


def files(name: str) -> tuple[Path, Path, dict[str, str] | None]:
    named = FIXTURES / f"{name}.named-values.json"
    values = read_named_values(str(named)) if named.exists() else None
    return FIXTURES / f"{name}.backends.json", FIXTURES / f"{name}.policy.xml", values


def import_and_export(name: str, tmp_path: Path, overrides: list[str]) -> Exported:
    backends, policy, values = files(name)
    imported = from_apim(backends, policy, named_values=values)
    scenario_file = tmp_path / "imported.yaml"
    scenario_file.write_text(scenario_text(imported, DEFAULT_DEPLOYMENT), encoding="utf-8")
    scenario = load_scenario(str(scenario_file), overrides, workload=False)
    return to_apim(scenario, None, backends, policy, values)


def canonical(element: ET.Element) -> str:
    return ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_untuned_the_export_is_the_input_byte_for_byte(tmp_path: Path, name: str) -> None:
    backends, policy, _ = files(name)
    exported = import_and_export(name, tmp_path, [])
    assert exported.policy == policy.read_text(encoding="utf-8")
    assert exported.backends == {backends.name: json.loads(backends.read_text(encoding="utf-8"))}
    assert exported.changes == [] and exported.notes == [] and exported.named_values == {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tuned_the_export_differs_from_the_input_only_in_the_tuned_attributes(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    backends, policy, _ = files(name)
    exported = import_and_export(name, tmp_path, case.tuning)
    expected = parse_policy(policy.read_text(encoding="utf-8"), policy)
    for tag, attribute, value in case.policy_edits:
        element = next(expected.iter(tag))
        assert element.get(attribute) != value  # the edit is a change
        element.set(attribute, value)
    assert canonical(parse_policy(exported.policy, policy)) == canonical(expected)
    document = json.loads(backends.read_text(encoding="utf-8"))
    wanted = copy.deepcopy(document)
    case.backends_edit(wanted)
    assert exported.backends[backends.name] == wanted
    assert exported.named_values == case.named_values
    # every change is listed, one line each, and nothing else is
    edits = len(case.policy_edits) + len(case.named_values) + _differences(document, wanted)
    assert len(exported.changes) == edits
    root = parse_policy(exported.policy, policy)
    for path in case.kept:
        assert root.findall(f".//{path}"), f"{path} was lost"


def _differences(a: Any, b: Any) -> int:
    if isinstance(a, dict) and isinstance(b, dict):
        return sum(_differences(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return sum(_differences(x, y) for x, y in zip(a, b, strict=True))
    return int(a != b)


def test_a_member_without_a_breaker_has_none_after_the_round_trip(tmp_path: Path) -> None:
    backends, _, _ = files("ptu-payg-spill")
    exported = import_and_export("ptu-payg-spill", tmp_path, [])
    payg = exported.backends[backends.name]["resources"][1]["properties"]
    assert "circuitBreaker" not in payg
    scenario_file = tmp_path / "imported.yaml"
    scenario = load_scenario(str(scenario_file), [], workload=False)
    members = scenario.gateway.pool_members(b.name for b in scenario.backends)
    made: list[tuple[str, str]] = []
    breakers = build_breakers(scenario.gateway, members, None, None, lambda n, r, c, lis: made.append((n, r.name)))  # type: ignore[arg-type,return-value]
    assert made == [("ptu-backend-1", "ptuSpillRule")] and set(breakers) == {"ptu-backend-1"}


def test_the_retry_interval_and_estimate_prompt_tokens_survive(tmp_path: Path) -> None:
    exported = import_and_export("ptu-payg-spill", tmp_path, ["gateway.token_limit.tokens-per-minute=60000"])
    root = parse_policy(exported.policy, Path("p.xml"))
    retry = root.find(".//retry")
    limit = root.find(".//llm-token-limit")
    assert retry is not None and retry.get("interval") == "1" and retry.get("first-fast-retry") == "false"
    assert limit is not None and limit.get("estimate-prompt-tokens") == "true"
    assert limit.get("counter-key") == (
        '@(context.Subscription.Id + "-" + context.Request.Headers.GetValueOrDefault("x-team",""))'
    )  # the user's expression, verbatim
    metric = root.find(".//llm-emit-token-metric")
    assert metric is not None and metric.get("namespace") == "ptu-spillover"
    assert [d.get("name") for d in metric] == ["Team", "Backend ID"]


def test_the_cli_writes_the_edit_and_lists_every_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backends, policy, _ = files("priority-weight-pool")
    imported = tmp_path / "mine.yaml"
    assert main(["scenario", "from-apim", "--backends", str(backends), "--policy", str(policy),
                 "--out", str(imported)]) == 0  # fmt: skip
    out = tmp_path / "tuned"
    code = main(["scenario", "to-apim", "--scenario", str(imported), "--backends", str(backends), "--policy",
                 str(policy), "--set", "gateway.token_limit.tokens-per-minute=25000", "--out", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    changes = (out / "changes.txt").read_text(encoding="utf-8").splitlines()
    assert changes == [
        "change: priority-weight-pool.policy.xml: <azure-openai-token-limit> tokens-per-minute: 20000 -> 25000"
    ]
    assert f"harness scenario to-apim: {changes[0]}" in err
    written = (out / "policy.xml").read_text(encoding="utf-8")
    assert written == policy.read_text(encoding="utf-8").replace(
        'tokens-per-minute="20000"', 'tokens-per-minute="25000"'
    )
    assert json.loads((out / "backends.json").read_text(encoding="utf-8")) == json.loads(backends.read_text())
    assert "openai-backend-pool" in written and "aoai-pool" not in written


def test_without_an_input_policy_a_fresh_one_is_written_and_said(tmp_path: Path) -> None:
    backends, _, _ = files("priority-weight-pool")
    imported = from_apim(backends)
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(scenario_text(imported, DEFAULT_DEPLOYMENT), encoding="utf-8")
    exported = to_apim(load_scenario(str(scenario_file), [], workload=False), None, backends)
    assert exported.notes == ["no --policy given: wrote a fresh policy (sending to 'openai-backend-pool')"]
    assert 'backend-id="openai-backend-pool"' in exported.policy


def test_more_than_five_token_metric_dimensions_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backends, policy, _ = files("landing-zone-fragments")
    imported = tmp_path / "mine.yaml"
    assert main(["scenario", "from-apim", "--backends", str(backends), "--policy", str(policy), "--named-values",
                 str(FIXTURES / "landing-zone-fragments.named-values.json"), "--out", str(imported)]) == 0  # fmt: skip
    capsys.readouterr()
    dimensions = "gateway.metrics.dimensions=[header:x-user-id, app_id, subscription, operation, backend, client_ip]"
    code = main(["scenario", "to-apim", "--scenario", str(imported), "--policy", str(policy), "--set", dimensions,
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "6 custom dimensions on the token metric: APIM allows at most 5" in err[0]
    assert not (tmp_path / "out" / "policy.xml").exists()


def test_a_dimension_the_scenario_adds_or_drops_is_one_element_and_the_rest_stay(tmp_path: Path) -> None:
    _, policy, _ = files("priority-weight-pool")
    tuning = ["gateway.metrics.dimensions=[subscription, header:x-user-id]"]  # Client IP out, a header in
    exported = import_and_export("priority-weight-pool", tmp_path, tuning)
    metric = parse_policy(exported.policy, policy).find(".//azure-openai-emit-token-metric")
    assert metric is not None and metric.get("namespace") == "openai"
    assert [(d.get("name"), d.get("value")) for d in metric] == [
        ("Subscription ID", None),
        ("API ID", None),  # not the harness's: kept as it was
        ("x-user-id", '@(context.Request.Headers.GetValueOrDefault("x-user-id", ""))'),
    ]
    assert exported.changes == [
        'priority-weight-pool.policy.xml: <azure-openai-emit-token-metric>: removed <dimension name="Client IP">',
        'priority-weight-pool.policy.xml: <azure-openai-emit-token-metric>: added <dimension name="x-user-id">',
    ]
    original = policy.read_text(encoding="utf-8")
    assert exported.policy.replace(
        '\n            <dimension name="x-user-id" value="@(context.Request.Headers.GetValueOrDefault("x-user-id", ""))" />',
        "",
    ) == original.replace('\n            <dimension name="Client IP" value="@(context.Request.IpAddress)" />', "")


def test_a_folder_of_backend_files_is_edited_file_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "backends"
    folder.mkdir()
    document = json.loads((FIXTURES / "priority-weight-pool.backends.json").read_text(encoding="utf-8"))
    for resource in document["value"]:
        (folder / f"{resource['name']}.json").write_text(json.dumps(resource), encoding="utf-8")
    imported = from_apim(folder, FIXTURES / "priority-weight-pool.policy.xml")
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(scenario_text(imported, DEFAULT_DEPLOYMENT), encoding="utf-8")
    scenario = load_scenario(str(scenario_file), ["gateway.pool.members[2].priority=3"], workload=False)
    exported = to_apim(scenario, None, folder, FIXTURES / "priority-weight-pool.policy.xml")
    pool = exported.backends["openai-backend-pool.json"]["properties"]["pool"]["services"]
    assert [s["priority"] for s in pool] == [1, 1, 3]
    assert exported.backends["openai-swc-1.json"] == document["value"][0]
    out = tmp_path / "out"
    code = main(["scenario", "to-apim", "--scenario", str(scenario_file), "--set", "gateway.pool.members[2].priority=3",
                 "--backends", str(folder), "--out", str(out)])  # fmt: skip
    assert code == 0 and sorted(p.name for p in (out / "backends").iterdir()) == sorted(
        p.name for p in folder.iterdir()
    )


def test_a_policy_saved_with_a_byte_order_mark_and_windows_line_ends_round_trips(tmp_path: Path) -> None:
    _, policy, _ = files("semantic-cache-global")
    text = "\ufeff" + policy.read_text(encoding="utf-8").replace("\n", "\r\n")
    mine = tmp_path / "policy.xml"
    mine.write_bytes(text.encode("utf-8"))
    backends = FIXTURES / "semantic-cache-global.backends.json"
    imported = from_apim(backends, mine)
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(scenario_text(imported, DEFAULT_DEPLOYMENT), encoding="utf-8")
    scenario = load_scenario(str(scenario_file), ["gateway.token_limit.tokens-per-minute=1234"], workload=False)
    exported = to_apim(scenario, None, backends, mine)
    assert exported.policy == text.replace('tokens-per-minute="100000"', 'tokens-per-minute="1234"')


def test_a_fresh_policy_with_more_than_five_dimensions_is_refused(tmp_path: Path) -> None:
    dimensions = ["subscription", "backend", "operation", "client_ip", "app_id", "deployment"]
    scenario = validate_scenario(
        {"backends": [{"name": "a"}], "gateway": {"metrics": {"dimensions": dimensions}}}, "x", workload=False
    )
    with pytest.raises(HarnessError, match="6 custom dimensions on the token metric: APIM allows at most 5"):
        to_apim(scenario)
    assert "<dimension" in to_apim(validate_scenario(
        {"backends": [{"name": "a"}], "gateway": {"metrics": {"dimensions": dimensions[:5]}}}, "x", workload=False
    )).policy  # fmt: skip


def test_what_the_edit_cannot_write_is_listed_as_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backends, policy, _ = files("bicep-copy-loop")
    imported = tmp_path / "mine.yaml"
    assert (
        main(["scenario", "from-apim", "--backends", str(backends), "--policy", str(policy), "--out", str(imported)])
        == 0
    )
    out = tmp_path / "out"
    tuning = ["gateway.circuit_breaker.tripDuration=PT2M", "gateway.retry.enabled=true"]
    args = ["scenario", "to-apim", "--scenario", str(imported), "--backends", str(backends), "--policy", str(policy)]
    assert main([*args, *[x for t in tuning for x in ("--set", t)], "--out", str(out)]) == 0
    lines = (out / "changes.txt").read_text(encoding="utf-8").splitlines()
    made_by_loop = [line for line in lines if "set it to PT2M in the template yourself" in line]
    assert len(made_by_loop) == 3 and all(line.startswith("not written: ") for line in made_by_loop)
    assert "not written: bicep-copy-loop.policy.xml: has no <retry>" in "\n".join(lines)
    assert not any(line.startswith("change: ") for line in lines)
    assert json.loads((out / "backends.json").read_text(encoding="utf-8")) == json.loads(backends.read_text())
    assert (out / "policy.xml").read_text(encoding="utf-8") == policy.read_text(encoding="utf-8")
    assert capsys.readouterr().err.count("harness scenario to-apim: not written: ") == len(
        [line for line in lines if line.startswith("not written: ")]
    )
