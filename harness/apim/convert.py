"""APIM configuration <-> scenario: the backends and gateway sections of a scenario say what APIM's backend
resources and an API's policy say, in the harness's (APIM-named) fields.

`from_apim` -> (scenario data, warnings); `to_apim` -> (ARM template, policy XML, warnings). What one side
has and the other cannot say is a warning line each, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.apim.backends import Backend, arm_template, read_backends
from harness.apim.expressions import dimension_element
from harness.apim.policy import TOKEN_LIMIT_ATTRIBUTES, Policy, policy_xml, read_policy
from harness.errors import ScenarioError
from harness.scenario import Scenario, format_duration, validate_scenario
from harness.scenario.gateway import CircuitBreakerRule, Metrics, TokenLimit

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
) -> Imported:
    """A scenario (data) from APIM backend resources and, optionally, the API's policy."""
    warn: list[str] = []
    backends = read_backends(backends_path, warn)
    policy = read_policy(policy_path, warn) if policy_path is not None else Policy()
    members, rules = _pool(backends, policy, warn)
    gateway: dict[str, Any] = {"pool": {"members": members}, "circuit_breaker": _one_rule(rules, warn)}
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
    """The pool the API sends to (its set-backend-service, else the only pool), its members and breaker rules."""
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
        return [{"backend": b.name, "priority": 1, "weight": 1} for b in singles], [r for b in singles for r in b.rules]
    else:
        names = ", ".join(sorted(p.name for p in pools))
        raise ScenarioError("backends", f"several pools ({names}) and no policy naming one (set-backend-service)")
    members = chosen.members or [{"backend": chosen.name, "priority": 1, "weight": 1}]
    named = {m["backend"] for m in members} | {chosen.name}
    for name in sorted(set(backends) - named):
        warn.append(f"{backends[name].source}: not in the pool the API uses: left out")
    rules = list(chosen.rules)
    for member in members:
        backend = backends.get(member["backend"])
        if backend is None:
            warn.append(
                f"pool member {member['backend']}: its backend resource is not in the files (url, breaker unknown)"
            )
        elif backend is not chosen:
            rules += backend.rules
            if (
                not backend.rules
                and not chosen.rules
                and any(backends[m["backend"]].rules for m in members if m["backend"] in backends)
            ):
                warn.append(
                    f"{backend.source}: has no circuit breaker rule while other members have one: the harness "
                    "applies one rule to every pool member"
                )
    return members, rules


def _one_rule(rules: list[dict[str, Any]], warn: list[str]) -> dict[str, Any] | None:
    """The harness applies one breaker rule to every member: the first, with a warning for any that differs."""
    if not rules:
        return None
    for rule in rules[1:]:
        if rule != rules[0]:
            warn.append(
                f"circuitBreaker rule '{rule.get('name', '?')}' differs from '{rules[0].get('name', '?')}': the "
                "harness applies one rule to every pool member: using the first"
            )
    return rules[0]


def to_apim(
    scenario: Scenario, pool_name: str = POOL_NAME, originals: Path | None = None
) -> tuple[dict[str, Any], str, list[str]]:
    """(ARM template of the backends and pool, policy XML, warnings) for a scenario's gateway.

    With `originals` (the backend resources the scenario was imported from), each member keeps its own
    url and every property the harness does not model; only the pool and the breaker come from the scenario.
    """
    warn: list[str] = []
    known = read_backends(originals, []) if originals is not None else {}
    gateway = scenario.gateway
    members = [m.model_dump() for m in gateway.pool_members(b.name for b in scenario.backends)]
    urls = {}
    for backend in scenario.backends:
        original = known.get(backend.name)
        urls[backend.name] = (
            backend.url or (original.url if original else None) or f"https://{backend.name}.openai.azure.com/openai"
        )
        if not backend.url and original is None:
            warn.append(f"backends {backend.name}: no url (a mock): the template says {urls[backend.name]}")
    if gateway.pool.selection != "weighted":
        warn.append(f"gateway.pool.selection {gateway.pool.selection}: APIM pools pick by weight: left out")
    if gateway.all_tripped_response != 503:
        warn.append("gateway.all_tripped_response 429: APIM answers 503; rewrite it in the policy's on-error")
    rule = _rule_json(gateway.circuit_breaker, warn) if gateway.circuit_breaker is not None else None
    template = arm_template(pool_name, members, rule, urls, known)
    limit = _token_limit_attributes(gateway.token_limit, warn) if gateway.token_limit is not None else None
    retry = gateway.retry.model_dump() if gateway.retry.enabled else None
    xml = policy_xml(limit, list(gateway.metrics.dimensions), retry, pool_name, warn)
    return template, xml, warn


def _rule_json(rule: CircuitBreakerRule, warn: list[str]) -> dict[str, Any]:
    condition = rule.failureCondition
    failure: dict[str, Any] = (
        {"count": condition.count} if condition.percentage is None else {"percentage": condition.percentage}
    )
    failure["interval"] = format_duration(condition.interval)
    failure["statusCodeRanges"] = [{"min": r.min, "max": r.max} for r in condition.statusCodeRanges]
    if condition.errorReasons:
        failure["errorReasons"] = list(condition.errorReasons)
    apim_fields = {"name", "failureCondition", "tripDuration", "acceptRetryAfter"}
    for name, value in rule.model_dump().items():
        default = CircuitBreakerRule.model_fields[name].default
        if name not in apim_fields and value not in (None, default):
            warn.append(f"gateway.circuit_breaker.{name}: APIM has no such setting: left out")
    return {
        "name": rule.name,
        "failureCondition": failure,
        "tripDuration": format_duration(rule.tripDuration),
        "acceptRetryAfter": rule.acceptRetryAfter,
    }


def _token_limit_attributes(limit: TokenLimit, warn: list[str]) -> dict[str, Any]:
    """The policy's attributes that differ from their defaults, and the counter key."""
    changed = limit.model_dump(by_alias=True, exclude_defaults=True)
    for name in sorted(set(changed) - {*TOKEN_LIMIT_ATTRIBUTES, "counter-key"}):
        warn.append(f"gateway.token_limit.{name}: not an attribute of APIM's llm-token-limit: left out")
    return {"counter-key": limit.counter_key} | {k: v for k, v in changed.items() if k in TOKEN_LIMIT_ATTRIBUTES}
