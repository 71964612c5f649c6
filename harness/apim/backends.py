"""APIM backend resources (`Microsoft.ApiManagement/service/backends`) as JSON: read, and written fresh.

Read: one file or a folder of them (regular `.json` files only, each through the bounded reader), as the REST
API lists them (`{"value": [...]}`), as one resource, as `az apim backend list` prints them (flattened, with no
pool or breaker: one line says how to get them whole), or as an ARM template (`{"resources": [...]}`, e.g. a
Bicep build), whose names, pool ids and copy loops are evaluated (`harness.apim.arm`), nested deployments
included. Every property the harness does not model is one warning naming it. Each backend remembers where it
was read, so an export can edit it in place (`harness.apim.backends_edit`).
"""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.apim import arm
from harness.errors import ScenarioError
from harness.inputs import BACKENDS_LIMIT, InputError, read_text

BACKEND_TYPE = "Microsoft.ApiManagement/service/backends"
DEPLOYMENT_TYPE = "Microsoft.Resources/deployments"
API_VERSION = "2024-05-01"
# properties the harness reads; anything else is reported (`properties.tls`, `properties.credentials`, ...)
_MODELLED = {"url", "protocol", "type", "pool", "circuitBreaker", "description", "title"}
_RULE_KEYS = {"name", "failureCondition", "tripDuration", "acceptRetryAfter"}
_CONDITION_KEYS = {"count", "percentage", "interval", "statusCodeRanges", "errorReasons"}


@dataclass
class Backend:
    """One backend resource: a single endpoint or a pool of them."""

    name: str
    source: str  # file it came from, for messages
    url: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)  # pool: [{backend, priority, weight}]
    rules: list[dict[str, Any]] = field(default_factory=list)  # circuitBreaker.rules, harness field names
    properties: dict[str, Any] = field(default_factory=dict)  # as read (expressions evaluated), unmodelled too
    resource: dict[str, Any] = field(default_factory=dict)  # the object in the file, for an edit in place
    generated: bool = False  # built by a copy loop or a nested deployment: no single place to edit
    flattened: bool = False  # `az apim backend list`: properties at the top level
    file: Path | None = None

    @property
    def is_pool(self) -> bool:
        return bool(self.members)


@dataclass
class BackendFiles:
    """The backend resources read, and each file's parsed document (what an export edits)."""

    backends: dict[str, Backend]
    documents: dict[Path, Any]


def read_backends(path: Path, warn: list[str]) -> dict[str, Backend]:
    """Every backend resource under `path` (a JSON file, or a folder of them), by name."""
    return read_backend_files(path, warn).backends


def backend_files(path: Path) -> list[Path]:
    """`path`, or the regular `.json` files of the folder `path` (anything else there is never opened)."""
    if not path.is_dir():
        return [path]
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise InputError(path, f"cannot list the folder ({exc.__class__.__name__})") from None
    files = []
    for entry in entries:
        if entry.suffix.lower() != ".json":
            continue
        try:
            kind = entry.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(kind) or stat.S_ISLNK(kind):
            files.append(entry)  # a FIFO or device named *.json is not a file to read: left out
    if not files:
        raise ScenarioError(str(path), "no .json files")
    return files


def read_backend_files(path: Path, warn: list[str]) -> BackendFiles:
    found: dict[str, Backend] = {}
    documents: dict[Path, Any] = {}
    skipped: Counter[str] = Counter()
    flattened: list[Backend] = []
    for file in backend_files(path):
        documents[file] = data = _document(file)
        for where, resource, context, generated in _resources(data, str(file)):
            backend = _backend(resource, where, context, warn, skipped)
            if backend is not None:
                backend.generated, backend.file = generated, file
                found[backend.name] = backend
                if backend.flattened:
                    flattened.append(backend)
    if skipped:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        warn.append(f"{path}: resources that are not backends skipped ({kinds})")
    if flattened:
        warn.append(_az_list_hint(flattened))
    if not found:
        raise ScenarioError(str(path), f"no {BACKEND_TYPE} resources")
    return BackendFiles(found, documents)


def _az_list_hint(flattened: list[Backend]) -> str:
    ids = [str(b.resource.get("id", "")) for b in flattened]
    service = next((i.rsplit("/backends/", 1)[0] for i in ids if "/backends/" in i), None)
    url = (
        f"https://management.azure.com{service}/backends?api-version={API_VERSION}"
        if service
        else "https://management.azure.com/subscriptions/{sub}/resourceGroups/{rg}/providers/"
        f"Microsoft.ApiManagement/service/{{apim}}/backends?api-version={API_VERSION}"
    )
    return (
        f"{flattened[0].source.split(': ')[0]}: `az apim backend list` output has no pools or circuit breakers: "
        f'read them with: az rest --method get --url "{url}"'
    )


def _document(file: Path) -> Any:
    text = read_text(file, "backends", BACKENDS_LIMIT, encoding="utf-8-sig")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{file}: line {exc.lineno}", f"not JSON: {exc.msg}") from None
    except RecursionError:
        raise ScenarioError(str(file), "nested too deeply") from None


def _resources(data: Any, file: str) -> Iterator[tuple[str, dict[str, Any], arm.Context, bool]]:
    """(where, resource, the context its expressions are evaluated in, made by a loop) of every resource."""
    if isinstance(data, dict) and isinstance(data.get("resources"), list | dict):
        try:
            yield from _template_resources(data, arm.template_context(data), file, False, 0)
        except arm.ArmError as exc:
            raise ScenarioError(file, f"ARM template: {exc}") from None
        except RecursionError:
            raise ScenarioError(file, "ARM template: nested too deeply") from None
        return
    if isinstance(data, dict) and isinstance(data.get("value"), list):
        resources = data["value"]
    else:
        resources = data if isinstance(data, list) else [data]
    context = arm.Context({}, {})
    for i, resource in enumerate(resources):
        yield f"{file}: resource {i}", resource, context, False


def _template_resources(
    template: dict[str, Any], context: arm.Context, file: str, generated: bool, depth: int
) -> Iterator[tuple[str, dict[str, Any], arm.Context, bool]]:
    if depth > 8:
        raise arm.ArmError("nested deployments deeper than 8")
    resources = template.get("resources")
    if isinstance(resources, dict):  # languageVersion 2.0: resources by symbolic name
        resources = list(resources.values())
    for i, resource in enumerate(resources or []):
        where = f"{file}: resource {i}" if depth == 0 else f"{file}: nested deployment resource {i}"
        if not isinstance(resource, dict):
            raise ScenarioError(where, "not a JSON object")
        looped = "copy" in resource
        for copy, inner in arm.copies(resource, context):
            if str(copy.get("type", "")).lower() == DEPLOYMENT_TYPE.lower():
                yield from _nested(copy, inner, file, depth)
            else:
                yield where, copy, inner, generated or looped


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _nested(
    deployment: dict[str, Any], context: arm.Context, file: str, depth: int
) -> Iterator[tuple[str, dict[str, Any], arm.Context, bool]]:
    properties: dict[str, Any] = _object(deployment.get("properties"))
    template = properties.get("template")
    if not isinstance(template, dict):
        link = "templateLink" if "templateLink" in properties else "template"
        raise arm.ArmError(f"nested deployment '{deployment.get('name')}' has no inline template ({link})")
    scope = _object(properties.get("expressionEvaluationOptions")).get("scope", "outer")
    if str(scope).lower() == "inner":
        given = {
            name: arm.evaluate(spec.get("value"), context)
            for name, spec in _object(properties.get("parameters")).items()
            if isinstance(spec, dict) and "value" in spec
        }
        inner = arm.template_context(template, given)
    else:
        inner = context
    yield from _template_resources(template, inner, file, True, depth + 1)


def _backend(resource: Any, where: str, context: arm.Context, warn: list[str], skipped: Counter[str]) -> Backend | None:
    if not isinstance(resource, dict):
        raise ScenarioError(where, "not a JSON object")
    kind = str(resource.get("type", BACKEND_TYPE))
    flattened = not isinstance(resource.get("properties"), dict) and ("url" in resource or "protocol" in resource)
    if not kind.lower().startswith(BACKEND_TYPE.lower()) and kind not in ("Single", "Pool"):
        skipped[kind] += 1
        return None
    try:
        name = resource_name(arm.evaluate(resource.get("name"), context), where)
        raw = resource.get("properties") if not flattened else _flat_properties(resource)
        where = f"{where.split(': ')[0]}: backend {name}"
        if not isinstance(raw, dict):
            raise ScenarioError(where, "has no properties object")
        properties = {}
        for key, value in raw.items():
            try:
                properties[key] = arm.expand_property_copies(value, context)
            except arm.ArmError:
                if key in _MODELLED:
                    raise
                properties[key] = value  # an unmodelled property (credentials from listKeys(), ...) kept as is
    except arm.ArmError as exc:
        raise ScenarioError(where, f"ARM template: {exc}") from None
    except RecursionError:
        raise ScenarioError(where, "nested too deeply") from None
    for key in sorted(set(properties) - _MODELLED):
        warn.append(f"{where}: properties.{key} is not modelled: ignored")
    backend = Backend(
        name=name, source=where, url=_text(properties.get("url")), properties=properties, resource=resource,
        flattened=flattened,
    )  # fmt: skip
    pool = properties.get("pool")
    if pool is not None:
        backend.members = _members(pool, where)
    breaker = properties.get("circuitBreaker")
    if breaker is not None:
        backend.rules = _rules(breaker, where, warn)
    return backend


# what `az apim backend list` prints around a backend's own properties
_AZ_ENVELOPE = {"id", "name", "type", "resourceGroup", "properties"}


def _flat_properties(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in _AZ_ENVELOPE and v is not None}


def resource_name(value: Any, where: str) -> str:
    """A backend's own name from `name` or an id: the last segment (`apim/openai-1`, a resource id, or an ARM
    expression once evaluated)."""
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(where, "has no name")
    name = value.strip().rstrip("/").rsplit("/", 1)[-1]
    if "{" in name or not name:
        raise ScenarioError(where, f"name {value} depends on a template parameter without a default")
    return name


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
    pool_name: str, members: list[dict[str, Any]], rules: dict[str, dict[str, Any] | None], urls: dict[str, str]
) -> dict:
    """A fresh ARM template: one backend per pool member (each with its breaker rule, if any) and the pool.

    Deployable as is, given the API Management service's name (parameter `apimServiceName`).
    """

    def name(backend: str) -> str:
        return f"[format('{{0}}/{{1}}', parameters('apimServiceName'), '{backend}')]"

    def resource_id(backend: str) -> str:
        return f"[resourceId('{BACKEND_TYPE}', parameters('apimServiceName'), '{backend}')]"

    resources: list[dict[str, Any]] = []
    for member in members:
        properties: dict[str, Any] = {"type": "Single", "protocol": "http", "url": urls[member["backend"]]}
        rule = rules.get(member["backend"])
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
