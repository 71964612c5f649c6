"""`to-apim` over the user's own backend resources: change only the pool's priorities and weights and the
breaker rules the scenario tuned, in the documents as they were read (REST list, ARM template, one resource),
keeping every other property, resource and name.

A member's breaker rule is written where the import found it: on the member's own resource, or on the pool's
(the rule of every member without one of its own). A value that is an ARM expression, or a resource a copy
loop or nested deployment made, is not rewritten: a warning gives the new value to set in the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.apim import arm
from harness.apim.backends import Backend, BackendFiles
from harness.errors import ScenarioError
from harness.scenario import format_duration
from harness.scenario.gateway import CircuitBreakerRule, GatewayConfig, PoolMember


@dataclass
class BackendsEdit:
    documents: dict[Path, Any]
    changes: list[str] = field(default_factory=list)


def choose_pool(backends: dict[str, Backend], backend_id: str | None, pool_name: str | None) -> Backend | None:
    """The pool the export edits: the policy's set-backend-service, else --pool-name, else the only pool."""
    for name in (backend_id, pool_name):
        if name is not None and name in backends and backends[name].is_pool:
            return backends[name]
    pools = [b for b in backends.values() if b.is_pool]
    return pools[0] if len(pools) == 1 else None


def edit_backends(
    files: BackendFiles, gateway: GatewayConfig, members: list[PoolMember], pool: Backend | None, left: list[str]
) -> BackendsEdit:
    """The documents with the pool's priorities and weights and the breaker rules written in; what could not be
    written goes to `left`."""
    editor = _Editor(files, left)
    if pool is not None:
        editor.pool(pool, members)
    done: set[str] = set()
    for member in members:
        backend = files.backends.get(member.backend)
        if backend is None:
            left.append(f"pool member {member.backend}: not in the backend files: its breaker is not written")
            continue
        rule = gateway.breaker_rule(member)
        if backend.rules or pool is None or not pool.rules or member.circuit_breaker is not None:
            editor.rule(backend, rule)
        elif pool.name not in done:  # the pool's rule is every member's without one: written once
            done.add(pool.name)
            editor.rule(pool, gateway.circuit_breaker)
    return BackendsEdit(files.documents, editor.changes)


class _Editor:
    def __init__(self, files: BackendFiles, warn: list[str]) -> None:
        self.files, self.warn = files, warn
        self.changes: list[str] = []

    def where(self, backend: Backend) -> str:
        return f"{backend.file.name if backend.file else ''}: backend {backend.name}"

    def write(self, backend: Backend, holder: dict[str, Any], key: str, new: Any, label: str) -> None:
        old = holder.get(key)
        if backend.generated or arm.is_expression(old):
            how = "a copy loop or nested deployment made it" if backend.generated else f"it is {old}"
            self.warn.append(f"{self.where(backend)}: {label}: {how}: set it to {new} in the template yourself")
            return
        holder[key] = new
        self.changes.append(f"{self.where(backend)}: {label}: {_show(old)} -> {_show(new)}")

    def properties(self, backend: Backend) -> dict[str, Any]:
        if backend.flattened:
            return backend.resource
        properties = backend.resource.get("properties")
        if not isinstance(properties, dict):
            raise ScenarioError(self.where(backend), "has no properties object")
        return properties

    def pool(self, pool: Backend, members: list[PoolMember]) -> None:
        services = (self.properties(pool).get("pool") or {}).get("services")
        if not isinstance(services, list) or len(services) != len(pool.members):
            self.warn.append(
                f"{self.where(pool)}: pool.services is built by a loop: priorities and weights not written"
            )
            return
        index = {m["backend"]: i for i, m in enumerate(pool.members)}
        for member in members:
            i = index.get(member.backend)
            if i is None:
                self.warn.append(f"{self.where(pool)}: {member.backend} is not a member of this pool: not added")
                continue
            for key in ("priority", "weight"):
                if getattr(member, key) != pool.members[i][key]:
                    self.write(pool, services[i], key, getattr(member, key), f"pool.services[{i}].{key}")
        wanted = {m.backend for m in members}
        for name in index:
            if name not in wanted:
                self.warn.append(f"{self.where(pool)}: member {name} is not in the scenario's pool: kept")

    def rule(self, backend: Backend, rule: CircuitBreakerRule | None) -> None:
        properties = self.properties(backend)
        if not backend.rules:
            if rule is None:
                return
            if backend.flattened or backend.generated:
                self.warn.append(
                    f"{self.where(backend)}: circuitBreaker: not in this file's shape: add rule {rule_json(rule)}"
                )
                return
            properties["circuitBreaker"] = {"rules": [rule_json(rule)]}
            self.changes.append(f"{self.where(backend)}: circuitBreaker: added rule '{rule.name}'")
            return
        if rule is None:
            if backend.generated:
                self.warn.append(f"{self.where(backend)}: circuitBreaker: remove it in the template yourself")
                return
            del properties["circuitBreaker"]
            self.changes.append(f"{self.where(backend)}: circuitBreaker: removed")
            return
        raw = properties["circuitBreaker"]["rules"][0]
        old = CircuitBreakerRule.model_validate(backend.rules[0])
        label = "circuitBreaker.rules[0]"
        for key in ("name", "acceptRetryAfter"):
            if getattr(rule, key) != getattr(old, key):
                self.write(backend, raw, key, getattr(rule, key), f"{label}.{key}")
        if rule.tripDuration != old.tripDuration:
            self.write(backend, raw, "tripDuration", format_duration(rule.tripDuration), f"{label}.tripDuration")
        new_condition, old_condition = rule.failureCondition, old.failureCondition
        condition = raw.setdefault("failureCondition", {})
        label += ".failureCondition"
        for key in ("count", "percentage"):
            value = getattr(new_condition, key)
            if value != getattr(old_condition, key):
                if value is None:
                    condition.pop(key, None)
                    self.changes.append(f"{self.where(backend)}: {label}.{key}: removed")
                else:
                    self.write(backend, condition, key, value, f"{label}.{key}")
        if new_condition.interval != old_condition.interval:
            self.write(backend, condition, "interval", format_duration(new_condition.interval), f"{label}.interval")
        ranges = [r.model_dump() for r in new_condition.statusCodeRanges]
        if ranges != [r.model_dump() for r in old_condition.statusCodeRanges]:
            self.write(backend, condition, "statusCodeRanges", ranges, f"{label}.statusCodeRanges")
        if list(new_condition.errorReasons) != list(old_condition.errorReasons):
            self.write(backend, condition, "errorReasons", list(new_condition.errorReasons), f"{label}.errorReasons")


def rule_json(rule: CircuitBreakerRule, warn: list[str] | None = None) -> dict[str, Any]:
    """A breaker rule in APIM's JSON (harness-only fields warned and left out)."""
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
        if warn is not None and name not in apim_fields and value not in (None, default):
            warn.append(f"gateway.circuit_breaker.{name}: APIM has no such setting: left out")
    return {
        "name": rule.name,
        "failureCondition": failure,
        "tripDuration": format_duration(rule.tripDuration),
        "acceptRetryAfter": rule.acceptRetryAfter,
    }


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "(none)" if value is None else str(value)
