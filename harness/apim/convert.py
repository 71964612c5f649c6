"""APIM configuration <-> scenario: the backends and gateway sections of a scenario say what APIM's backend
resources and an API's policy say, in the harness's (APIM-named) fields.

`from_apim` -> (scenario data, warnings); `to_apim` -> the backends and policy to deploy, every change it made,
and warnings. Given the user's own policy and backends, `to_apim` edits them (only what the scenario tuned
changes); without them it writes fresh ones and says so. What one side has and the other cannot say is a
warning line each, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.apim.backends import Backend, arm_template, read_backend_files, read_backends
from harness.apim.backends_edit import choose_pool, edit_backends, rule_json
from harness.apim.expressions import dimension_element
from harness.apim.policy import TOKEN_LIMIT_ATTRIBUTES, Policy, policy_xml, read_policy
from harness.apim.policy_edit import edit_policy
from harness.errors import ScenarioError
from harness.inputs import POLICY_LIMIT, read_text
from harness.scenario import Scenario, validate_scenario
from harness.scenario.gateway import Metrics, TokenLimit

DEFAULT_DEPLOYMENT = "gpt-4o"
DEFAULT_TPM = 50_000
POOL_NAME = "aoai-pool"


@dataclass
class Imported:
    data: dict[str, Any]  # the scenario, validated
    warnings: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def from_apim(
    backends_path: Path,
    policy_path: Path | None = None,
    *,
    deployment: str = DEFAULT_DEPLOYMENT,
    tpm: int = DEFAULT_TPM,
    keep_urls: bool = False,
    named_values: dict[str, str] | None = None,
) -> Imported:
    """A scenario (data) from APIM backend resources and, optionally, the API's policy."""
    warn: list[str] = []
    backends = read_backends(backends_path, warn)
    policy = read_policy(policy_path, warn, named_values) if policy_path is not None else Policy()
    if (
        policy.token_limit is not None
        and policy.unresolved
        and not ({"tokens-per-minute", "token-quota"} & set(policy.token_limit))
    ):
        raise ScenarioError(
            str(policy_path), f"the token limit's {', '.join(policy.unresolved)}: give --named-values FILE with it"
        )
    members, pool_rules = _pool(backends, policy, warn)
    gateway: dict[str, Any] = {"pool": {"members": members}, "circuit_breaker": _first_rule(pool_rules, "pool", warn)}
    _member_rules(members, backends, gateway, warn)
    if policy.token_limit is not None:
        gateway["token_limit"] = policy.token_limit
    if policy.dimensions is not None:
        gateway["metrics"] = {"dimensions": policy.dimensions}
    else:
        # the gateway counts tokens whatever the policy says: by the default dimensions APIM can also express
        dimensions = [d for d in Metrics().dimensions if dimension_element(d) is not None]
        gateway["metrics"] = {"dimensions": dimensions}
        warn.append(f"no token-metric policy: the gateway still counts tokens, by {', '.join(dimensions)}")
    if policy.retry is not None:
        gateway["retry"] = policy.retry
    instances = []
    for member in members:
        instance: dict[str, Any] = {"name": member["backend"], "deployments": {deployment: {"tpm": tpm}}}
        url = backends[member["backend"]].url if member["backend"] in backends else None
        if keep_urls and url:
            instance["url"] = url
        instances.append(instance)
    warn.append(
        f"backends: APIM does not describe deployments or their quota: each backend gets {deployment} at "
        f"{tpm:,} TPM (set backends[].deployments to yours)"
    )
    data = {"description": f"imported from APIM ({backends_path.name})", "backends": instances, "gateway": gateway}
    validate_scenario(data, str(backends_path), workload=False)
    sources = [str(backends_path)] + ([str(policy_path)] if policy_path is not None else [])
    return Imported(data=data, warnings=warn, sources=sources)


def _pool(backends: dict[str, Backend], policy: Policy, warn: list[str]) -> tuple[list[dict[str, Any]], list[dict]]:
    """The pool the API sends to (its set-backend-service, else the only pool), its members and the pool
    resource's own breaker rules."""
    pools = [b for b in backends.values() if b.is_pool]
    if policy.backend_id is not None:
        if policy.backend_id not in backends:
            raise ScenarioError("set-backend-service", f"backend-id '{policy.backend_id}' is not in the backends")
        chosen = backends[policy.backend_id]
    elif len(pools) == 1:
        chosen = pools[0]
    elif not pools:
        singles = list(backends.values())
        for b in singles[1:]:
            warn.append(f"{b.source}: no pool and no set-backend-service: also added at priority 1")
        return [{"backend": b.name, "priority": 1, "weight": 1} for b in singles], []
    else:
        names = ", ".join(sorted(p.name for p in pools))
        raise ScenarioError("backends", f"several pools ({names}) and no policy naming one (set-backend-service)")
    named = {m["backend"] for m in chosen.members} | {chosen.name}
    for name in sorted(set(backends) - named):
        warn.append(f"{backends[name].source}: not in the pool the API uses: left out")
    if not chosen.members:
        return [{"backend": chosen.name, "priority": 1, "weight": 1}], []
    for member in chosen.members:
        if member["backend"] not in backends:
            warn.append(
                f"pool member {member['backend']}: its backend resource is not in the files (url, breaker unknown)"
            )
    return [dict(m) for m in chosen.members], list(chosen.rules)


def _member_rules(
    members: list[dict[str, Any]], backends: dict[str, Backend], gateway: dict[str, Any], warn: list[str]
) -> None:
    """Each member's own breaker rule, as APIM keeps one per backend resource: the same rule on every member
    (and none on the pool) is the gateway's rule; otherwise each member with a rule gets it and a member
    without one has none."""
    own = {m["backend"]: _first_rule(backends[m["backend"]].rules, m["backend"], warn)
           for m in members if m["backend"] in backends}  # fmt: skip
    rules = [r for r in own.values() if r is not None]
    if not rules:
        return
    if gateway["circuit_breaker"] is None and len(rules) == len(members) and all(r == rules[0] for r in rules):
        gateway["circuit_breaker"] = rules[0]
        return
    for member in members:
        rule = own.get(member["backend"])
        if rule is not None:
            member["circuit_breaker"] = rule


def _first_rule(rules: list[dict[str, Any]], owner: str, warn: list[str]) -> dict[str, Any] | None:
    """A backend's breaker rule: its first, with a warning for each further one (the harness models one)."""
    for rule in rules[1:]:
        warn.append(
            f"backend {owner}: circuitBreaker rule '{rule.get('name', '?')}' after '{rules[0].get('name', '?')}': "
            "one rule per backend is modelled: using the first"
        )
    return rules[0] if rules else None


@dataclass
class Exported:
    """What `to_apim` writes: backends documents (file name -> JSON), the policy XML, and what it did."""

    backends: dict[str, Any]
    policy: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fresh documents written, and why
    not_written: list[str] = field(default_factory=list)  # what the scenario says that the edit left to the user
    named_values: dict[str, str] = field(default_factory=dict)  # named values to set in APIM


def to_apim(
    scenario: Scenario,
    pool_name: str | None = None,
    originals: Path | None = None,
    policy_path: Path | None = None,
    named_values: dict[str, str] | None = None,
) -> Exported:
    """The scenario's gateway in APIM's shapes: edits of the user's own policy and backends when given,
    fresh documents otherwise."""
    warn: list[str] = []
    gateway = scenario.gateway
    members = gateway.pool_members(b.name for b in scenario.backends)
    if gateway.pool.selection != "weighted":
        warn.append(f"gateway.pool.selection {gateway.pool.selection}: APIM pools pick by weight: left out")
    if gateway.all_tripped_response != 503:
        warn.append("gateway.all_tripped_response 429: APIM answers 503; rewrite it in the policy's on-error")
    if gateway.token_limit is not None:
        _harness_only_limit_fields(gateway.token_limit, warn)
    for rule in {id(r): r for r in [gateway.circuit_breaker, *(m.circuit_breaker for m in members)] if r}.values():
        rule_json(rule, warn)
    out = Exported(backends={}, policy="")
    backend_id = None
    if policy_path is not None:
        text = read_text(policy_path, "policy", POLICY_LIMIT)
        edited = edit_policy(text, policy_path, gateway, named_values, out.not_written)
        out.policy, backend_id = edited.text, edited.backend_id
        out.changes += edited.changes
        out.named_values = edited.named_values
    if originals is not None:
        files = read_backend_files(originals, [])
        pool = choose_pool(files.backends, backend_id, pool_name)
        if pool is None and any(b.is_pool for b in files.backends.values()):
            raise ScenarioError(str(originals), "several pools: name the one to edit with --pool-name")
        edit = edit_backends(files, gateway, members, pool, out.not_written)
        out.changes += edit.changes
        out.backends = {path.name: document for path, document in edit.documents.items()}
        backend_id = backend_id or (pool.name if pool is not None else None)
    else:
        name = backend_id or pool_name or POOL_NAME
        out.backends = {"backends.json": _fresh_template(scenario, members, name, warn)}
        out.notes.append(f"no --backends given: wrote a fresh ARM template (pool '{name}')")
    if policy_path is None:
        limit = _token_limit_attributes(gateway.token_limit) if gateway.token_limit is not None else None
        retry = gateway.retry.model_dump() if gateway.retry.enabled else None
        name = backend_id or pool_name or POOL_NAME
        out.policy = policy_xml(limit, list(gateway.metrics.dimensions), retry, name, warn)
        out.notes.append(f"no --policy given: wrote a fresh policy (sending to '{name}')")
    out.warnings = warn
    return out


def _fresh_template(scenario: Scenario, members: list[Any], pool_name: str, warn: list[str]) -> dict[str, Any]:
    urls = {}
    for backend in scenario.backends:
        urls[backend.name] = backend.url or f"https://{backend.name}.openai.azure.com/openai"
        if not backend.url:
            warn.append(f"backends {backend.name}: no url (a mock): the template says {urls[backend.name]}")
    rules = {m.backend: _json_or_none(scenario.gateway.breaker_rule(m)) for m in members}
    return arm_template(pool_name, [m.model_dump(exclude={"circuit_breaker"}) for m in members], rules, urls)


def _json_or_none(rule: Any) -> dict[str, Any] | None:
    return rule_json(rule) if rule is not None else None


def _harness_only_limit_fields(limit: TokenLimit, warn: list[str]) -> None:
    changed = limit.model_dump(by_alias=True, exclude_defaults=True)
    for name in sorted(set(changed) - {*TOKEN_LIMIT_ATTRIBUTES, "counter-key"}):
        warn.append(f"gateway.token_limit.{name}: not an attribute of APIM's llm-token-limit: left out")


def _token_limit_attributes(limit: TokenLimit) -> dict[str, Any]:
    """The policy's attributes that differ from their defaults, and the counter key."""
    changed = limit.model_dump(by_alias=True, exclude_defaults=True)
    return {"counter-key": limit.counter_key} | {k: v for k, v in changed.items() if k in TOKEN_LIMIT_ATTRIBUTES}
