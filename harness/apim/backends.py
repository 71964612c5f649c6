"""APIM backend resources (`Microsoft.ApiManagement/service/backends`) as ARM JSON: read and write.

Read: one file or a folder of them, each as `az apim backend show/list` prints it, as the REST API lists it
(`{"value": [...]}`) or as an ARM template (`{"resources": [...]}`, e.g. a Bicep build), names and pool ids
given plainly or as ARM expressions (`[format('{0}/{1}', parameters('apim'), 'openai-1')]`). Every property
the harness does not model is one warning naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ScenarioError

BACKEND_TYPE = "Microsoft.ApiManagement/service/backends"
API_VERSION = "2024-05-01"
# properties the harness reads; anything else is reported (`properties.tls`, `properties.credentials`, ...)
_MODELLED = {"url", "protocol", "type", "pool", "circuitBreaker", "description", "title"}
_RULE_KEYS = {"name", "failureCondition", "tripDuration", "acceptRetryAfter"}
_CONDITION_KEYS = {"count", "percentage", "interval", "statusCodeRanges", "errorReasons"}
_LITERAL = re.compile(r"'([^']*)'")


@dataclass
class Backend:
    """One backend resource: a single endpoint or a pool of them."""

    name: str
    source: str  # file it came from, for messages
    url: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)  # pool: [{backend, priority, weight}]
    rules: list[dict[str, Any]] = field(default_factory=list)  # circuitBreaker.rules, harness field names
    properties: dict[str, Any] = field(default_factory=dict)  # as read, unmodelled ones included

    @property
    def is_pool(self) -> bool:
        return bool(self.members)


def read_backends(path: Path, warn: list[str]) -> dict[str, Backend]:
    """Every backend resource under `path` (a JSON file, or a folder of them), by name."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ScenarioError(str(path), "no .json files")
    found: dict[str, Backend] = {}
    for file in files:
        for i, resource in enumerate(_resources(file)):
            backend = _backend(resource, f"{file}: resource {i}", warn)
            if backend is not None:
                found[backend.name] = backend
    if not found:
        raise ScenarioError(str(path), f"no {BACKEND_TYPE} resources")
    return found


def _resources(file: Path) -> list[Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(str(file), "no such file") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(file), f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{file}: line {exc.lineno}", f"not JSON: {exc.msg}") from None
    except RecursionError:
        raise ScenarioError(str(file), "nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("resources"), list):
        return data["resources"]
    if isinstance(data, dict) and isinstance(data.get("value"), list):
        return data["value"]
    return data if isinstance(data, list) else [data]


def _backend(resource: Any, where: str, warn: list[str]) -> Backend | None:
    if not isinstance(resource, dict):
        raise ScenarioError(where, "not a JSON object")
    kind = str(resource.get("type", BACKEND_TYPE))
    if not kind.lower().startswith(BACKEND_TYPE.lower()):
        warn.append(f"{where}: {kind} is not a backend resource: skipped")
        return None
    name = resource_name(resource.get("name"), where)
    where = f"{where.split(': ')[0]}: backend {name}"
    properties = resource.get("properties")
    if not isinstance(properties, dict):
        raise ScenarioError(where, "has no properties object")
    for key in sorted(set(properties) - _MODELLED):
        warn.append(f"{where}: properties.{key} is not modelled: ignored")
    backend = Backend(name=name, source=where, url=_text(properties.get("url")), properties=properties)
    pool = properties.get("pool")
    if pool is not None:
        backend.members = _members(pool, where)
    breaker = properties.get("circuitBreaker")
    if breaker is not None:
        backend.rules = _rules(breaker, where, warn)
    return backend


def resource_name(value: Any, where: str) -> str:
    """A backend's own name from `name` (`apim/openai-1`, `openai-1`, or an ARM expression ending in a literal)."""
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(where, "has no name")
    value = value.strip()
    if value.startswith("["):
        literals = _LITERAL.findall(value)
        if not literals or not literals[-1]:
            raise ScenarioError(where, f"name {value} is an ARM expression without the backend's name in it")
        value = literals[-1]
    return value.rstrip("/").rsplit("/", 1)[-1]


def _members(pool: Any, where: str) -> list[dict[str, Any]]:
    services = pool.get("services") if isinstance(pool, dict) else None
    if not isinstance(services, list) or not services:
        raise ScenarioError(f"{where}: pool.services", "must be a non-empty list")
    members = []
    for i, service in enumerate(services):
        if not isinstance(service, dict) or "id" not in service:
            raise ScenarioError(f"{where}: pool.services[{i}]", "needs an id")
        members.append(
            {
                "backend": resource_name(service["id"], f"{where}: pool.services[{i}].id"),
                "priority": service.get("priority", 1),
                "weight": service.get("weight", 1),
            }
        )
    return members


def _rules(breaker: Any, where: str, warn: list[str]) -> list[dict[str, Any]]:
    rules = breaker.get("rules") if isinstance(breaker, dict) else None
    if not isinstance(rules, list):
        raise ScenarioError(f"{where}: circuitBreaker.rules", "must be a list")
    out = []
    for i, rule in enumerate(rules):
        at = f"{where}: circuitBreaker.rules[{i}]"
        if not isinstance(rule, dict):
            raise ScenarioError(at, "must be an object")
        for key in sorted(set(rule) - _RULE_KEYS):
            warn.append(f"{at}.{key} is not modelled: ignored")
        kept = {k: v for k, v in rule.items() if k in _RULE_KEYS}
        condition = kept.get("failureCondition")
        if isinstance(condition, dict):
            for key in sorted(set(condition) - _CONDITION_KEYS):
                warn.append(f"{at}.failureCondition.{key} is not modelled: ignored")
            kept["failureCondition"] = {k: v for k, v in condition.items() if k in _CONDITION_KEYS}
        out.append(kept)
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def arm_template(
    pool_name: str,
    members: list[dict[str, Any]],
    rule: dict[str, Any] | None,
    urls: dict[str, str],
    originals: dict[str, Backend] | None = None,
) -> dict:
    """An ARM template with one backend per pool member (each with the breaker rule) and the pool itself.

    Deployable as is, given the API Management service's name (parameter `apimServiceName`). A member found
    in `originals` (the resources it was imported from) keeps its own properties (url, credentials, tls, ...);
    only its circuit breaker is replaced.
    """

    def name(backend: str) -> str:
        return f"[format('{{0}}/{{1}}', parameters('apimServiceName'), '{backend}')]"

    def resource_id(backend: str) -> str:
        return f"[resourceId('{BACKEND_TYPE}', parameters('apimServiceName'), '{backend}')]"

    resources: list[dict[str, Any]] = []
    for member in members:
        original = (originals or {}).get(member["backend"])
        properties: dict[str, Any] = {"type": "Single", "protocol": "http", "url": urls[member["backend"]]}
        if original is not None:
            properties = {k: v for k, v in original.properties.items() if k not in ("circuitBreaker", "pool")}
        if rule is not None:
            properties["circuitBreaker"] = {"rules": [rule]}
        resources.append(
            {"type": BACKEND_TYPE, "apiVersion": API_VERSION, "name": name(member["backend"]), "properties": properties}
        )
    resources.append(
        {
            "type": BACKEND_TYPE,
            "apiVersion": API_VERSION,
            "name": name(pool_name),
            "dependsOn": [resource_id(m["backend"]) for m in members],
            "properties": {
                "type": "Pool",
                "pool": {
                    "services": [
                        {"id": resource_id(m["backend"]), "priority": m["priority"], "weight": m["weight"]}
                        for m in members
                    ]
                },
            },
        }
    )
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"apimServiceName": {"type": "string"}},
        "resources": resources,
    }
