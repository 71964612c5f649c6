"""An API's APIM policy XML: the parts the reference gateway models, read and written.

Read: `llm-token-limit` / `azure-openai-token-limit`, `llm-emit-token-metric` / `azure-openai-emit-token-metric`
with their dimensions, `retry` around `forward-request`, `set-backend-service`, and the `set-variable`s a
counter key reads. Every other element or attribute is one warning naming it. The XML is parsed with
defusedxml (no entity expansion, no external references); a malformed file is one line naming the file and
where it broke.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from harness.apim import expressions
from harness.errors import ScenarioError
from harness.inputs import POLICY_LIMIT, read_text

TOKEN_LIMITS = ("llm-token-limit", "azure-openai-token-limit")
TOKEN_METRICS = ("llm-emit-token-metric", "azure-openai-emit-token-metric")
# token-limit attributes the harness models (the scenario's gateway.token_limit uses the same names)
TOKEN_LIMIT_ATTRIBUTES = (
    "tokens-per-minute", "token-quota", "token-quota-period", "estimate-prompt-tokens", "retry-after-header-name",
    "remaining-tokens-header-name", "remaining-quota-tokens-header-name", "tokens-consumed-header-name",
)  # fmt: skip
_INTEGERS = ("tokens-per-minute", "token-quota")
_SECTIONS = ("policies", "fragment", "inbound", "backend", "outbound", "on-error", "base")
_STATUS_TEST = re.compile(r"context\.Response\.StatusCode\s*(==|>=|<=|>|<)\s*(\d{3})")


@dataclass
class Policy:
    """What the policy says, in the scenario's terms (`token_limit` uses the policy's own attribute names)."""

    token_limit: dict[str, Any] | None = None
    dimensions: list[str] | None = None
    retry: dict[str, Any] | None = None
    backend_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    variables_read: set[str] = field(default_factory=set)  # those a counter key reads
    named_values: dict[str, str] | None = None  # `{{name}}` -> value, from --named-values
    unresolved: list[str] = field(default_factory=list)  # attributes whose named value is not known


NAMED_VALUE = re.compile(r"\{\{([^{}]+)\}\}")


def resolve_named(value: str, named_values: dict[str, str] | None) -> str | None:
    """`value` with its `{{name}}` references replaced from `named_values`; None when one is not there.

    >>> resolve_named("{{tpm}}", {"tpm": "5000"}), resolve_named("{{tpm}}", None), resolve_named("7", None)
    ('5000', None, '7')
    """
    missing = False

    def replace(found: re.Match[str]) -> str:
        nonlocal missing
        name = found.group(1).strip()
        if named_values is None or name not in named_values:
            missing = True
            return found.group(0)
        return str(named_values[name])

    resolved = NAMED_VALUE.sub(replace, value)
    return None if missing else resolved


def read_policy(path: Path, warn: list[str], named_values: dict[str, str] | None = None) -> Policy:
    return policy_of(parse_policy(read_text(path, "policy", POLICY_LIMIT), path), path, warn, named_values)


def policy_of(root: ET.Element, path: Path, warn: list[str], named_values: dict[str, str] | None = None) -> Policy:
    """What a parsed policy says, in the scenario's terms; what it does not model is one warning each."""
    policy = Policy(named_values=named_values)
    policy.variables = {
        str(e.get("name")): str(e.get("value", "")) for e in root.iter("set-variable") if e.get("name") is not None
    }
    for element in root.iter():
        tag = element.tag
        where = f"{path}: <{tag}>"
        if tag in TOKEN_LIMITS:
            if policy.token_limit is not None:
                warn.append(f"{where}: a second token limit is not modelled: ignored")
                continue
            policy.token_limit = _token_limit(element, where, policy, warn)
        elif tag in TOKEN_METRICS:
            policy.dimensions = _dimensions(element, where, policy, warn)
        elif tag == "retry":
            policy.retry = _retry(element, where, warn)
        elif tag == "set-backend-service":
            policy.backend_id = element.get("backend-id")
            _unmodelled_attributes(element, where, {"backend-id"}, warn)
        elif tag not in (*_SECTIONS, "set-variable", "dimension", "forward-request"):
            warn.append(f"{where} is not modelled: ignored")
    for name in sorted(set(policy.variables) - policy.variables_read):
        warn.append(f'{path}: <set-variable name="{name}"> is not modelled: ignored')
    return policy


WRAPPER = "fragment"


def parse_policy(text: str, path: Path) -> ET.Element:
    """The policy's element tree (a bare fragment inside a `<fragment>` of its own); one line when it is not
    an APIM policy: empty, plain text, JSON, malformed XML, or a document type with entities."""
    text = expressions.escape_expressions(re.sub(r"^\s*<\?xml[^>]*\?>", "", text.removeprefix("\ufeff")))
    doctype = re.search(r"<!(DOCTYPE|ENTITY)", text)
    if doctype:  # APIM policies have none; entities are how expansion bombs work
        line = text.count("\n", 0, doctype.start()) + 1
        raise ScenarioError(f"{path}: line {line}", f"refused: a <!{doctype.group(1)}> has no place in an APIM policy")
    # a bare fragment (one policy or several, no <policies>) is read inside a root of its own
    wrapped = not text.lstrip().startswith(("<policies", f"<{WRAPPER}"))
    try:
        root = fromstring(f"<{WRAPPER}>{text}</{WRAPPER}>" if wrapped else text)
    except ET.ParseError as exc:
        line, column = exc.position
        column = column - len(f"<{WRAPPER}>") if wrapped and line == 1 else column
        message = str(exc).split(":")[0]
        raise ScenarioError(f"{path}: line {line}, column {column + 1}", f"not well-formed XML ({message})") from None
    except DefusedXmlException as exc:
        raise ScenarioError(str(path), f"refused: {exc}") from None
    except RecursionError:
        raise ScenarioError(str(path), "nested too deeply") from None
    if wrapped and (len(root) == 0 or (root.text or "").strip() or any((e.tail or "").strip() for e in root)):
        raise ScenarioError(
            str(path), "not an APIM policy: expected <policies>...</policies> or policy elements, found text"
        )
    return root


def _token_limit(element: ET.Element, where: str, policy: Policy, warn: list[str]) -> dict[str, Any]:
    _unmodelled_attributes(element, where, {"counter-key", *TOKEN_LIMIT_ATTRIBUTES}, warn)
    limit: dict[str, Any] = {"counter-key": _counter_key(element.get("counter-key", ""), where, policy, warn)}
    for name in TOKEN_LIMIT_ATTRIBUTES:
        value = element.get(name)
        if value is None:
            continue
        resolved = resolve_named(value, policy.named_values)
        if resolved is None:
            warn.append(f"{where} {name}: named value {value} not resolved (give --named-values FILE): ignored")
            policy.unresolved.append(f"{name}={value}")
            continue
        value = resolved
        if expressions.is_expression(value):
            warn.append(f"{where} {name}: policy expression not evaluated: attribute ignored")
        elif name in _INTEGERS:
            limit[name] = _integer(value, f"{where} {name}")
        elif name == "estimate-prompt-tokens":
            if value.lower() not in ("true", "false"):
                raise ScenarioError(f"{where} {name}", f"'{value}' is not true or false")
            limit[name] = value.lower() == "true"
        else:
            limit[name] = value
    return limit


def _counter_key(value: str, where: str, policy: Policy, warn: list[str]) -> str:
    key = counter_key(value, policy)
    if key is None:
        warn.append(
            f"{where} counter-key: policy expression not evaluated ({value or 'none'}): counting per appid; set "
            "gateway.token_limit.counter-key to appid, subscription, ip, header:<name>, constant:<text> or a + of them"
        )
        return "appid"
    return key


def counter_key(value: str, policy: Policy) -> str | None:
    """The harness counter key a policy's counter-key value is simulated by (None: not evaluated); the
    variables it reads are marked read."""
    resolved = resolve_named(value, policy.named_values)
    if resolved is None:
        return None
    for name in expressions.variables_read(resolved):
        if name in policy.variables:
            policy.variables_read.add(name)
    return expressions.counter_key_of(resolved, policy.variables)


def dimension_of_element(child: ET.Element, policy: Policy) -> str | None:
    """The harness dimension a `<dimension>` fills (a value reading a variable is read through it)."""
    if child.tag != "dimension":
        return None
    value = child.get("value")
    read = expressions.variable_read(value) if value else None
    if read is not None and read in policy.variables:
        policy.variables_read.add(read)
        value = policy.variables[read]
    return expressions.dimension_of(child.get("name", ""), value)


def _dimensions(element: ET.Element, where: str, policy: Policy, warn: list[str]) -> list[str]:
    _unmodelled_attributes(element, where, {"namespace"}, warn)
    found: list[str] = []
    for child in element:
        name = child.get("name", "")
        dimension = dimension_of_element(child, policy)
        if child.tag != "dimension" or dimension is None:
            warn.append(f'{where} <{child.tag} name="{name}">: not a dimension the gateway fills: ignored')
        elif dimension not in found:
            found.append(dimension)
    return found


def _retry(element: ET.Element, where: str, warn: list[str]) -> dict[str, Any]:
    _unmodelled_attributes(element, where, {"condition", "count", "interval", "first-fast-retry"}, warn)
    retry: dict[str, Any] = {"enabled": True, "max_attempts": _integer(element.get("count", "0"), f"{where} count") + 1}
    if element.get("interval", "0") != "0" and element.get("first-fast-retry", "false").lower() != "true":
        warn.append(f"{where} interval: the gateway retries at once on the next member: interval ignored")
    ranges = status_ranges(element.get("condition", ""))
    if ranges is None:
        warn.append(
            f"{where} condition: policy expression not evaluated ({element.get('condition')}): retrying on 429 and "
            "5xx, the gateway's default"
        )
    else:
        retry["on"] = ranges
    for child in element:
        if child.tag != "forward-request":
            warn.append(f"{where} <{child.tag}> inside retry is not modelled: ignored")
    return retry


def status_ranges(condition: str) -> list[dict[str, int]] | None:
    """Status ranges from a condition made only of `context.Response.StatusCode` tests joined by || and &&.

    >>> status_ranges('@(context.Response.StatusCode == 429 || context.Response.StatusCode >= 500)')
    [{'min': 429, 'max': 429}, {'min': 500, 'max': 599}]
    """
    body = condition.strip()
    if not (body.startswith("@(") and body.endswith(")")):
        return None
    body = body[2:-1]
    ranges = []
    for alternative in body.split("||"):
        low, high = 100, 599
        tests = [t.strip().strip("()").strip() for t in alternative.split("&&")]
        for test in tests:
            found = _STATUS_TEST.fullmatch(test)
            if found is None:
                return None
            op, code = found.group(1), int(found.group(2))
            bounds = {
                "==": (code, code),
                ">=": (code, 599),
                ">": (code + 1, 599),
                "<=": (100, code),
                "<": (100, code - 1),
            }
            low, high = max(low, bounds[op][0]), min(high, bounds[op][1])
        if low > high:
            return None
        ranges.append({"min": low, "max": high})
    return ranges


def _integer(value: str, where: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ScenarioError(where, f"'{value}' is not a whole number") from None
    if number < 0:
        raise ScenarioError(where, f"{number} is negative")
    return number


def _unmodelled_attributes(element: ET.Element, where: str, known: set[str], warn: list[str]) -> None:
    for name in sorted(set(element.attrib) - known):
        warn.append(f"{where} {name}: attribute not modelled: ignored")


def policy_xml(
    token_limit: dict[str, Any] | None,
    dimensions: list[str],
    retry: dict[str, Any] | None,
    backend_id: str,
    warn: list[str],
) -> str:
    """A policy document with what the scenario's gateway does, ready to paste into an API's policy."""
    root = ET.Element("policies")
    inbound = ET.SubElement(root, "inbound")
    ET.SubElement(inbound, "base")
    if token_limit is not None:
        limit = ET.SubElement(inbound, "llm-token-limit")
        limit.set("counter-key", expressions.counter_key_expression(token_limit["counter-key"]))
        for name in TOKEN_LIMIT_ATTRIBUTES:
            value = token_limit.get(name)
            if value is not None:
                limit.set(name, str(value).lower() if isinstance(value, bool) else str(value))
    metric = ET.SubElement(inbound, "llm-emit-token-metric", {"namespace": "genai-gateway"})
    elements = apim_dimensions(dimensions, warn)
    check_dimension_count(len(elements), "gateway.metrics.dimensions")
    for name, value in elements:
        ET.SubElement(metric, "dimension", {"name": name} | ({"value": value} if value else {}))
    ET.SubElement(inbound, "set-backend-service", {"backend-id": backend_id})
    backend = ET.SubElement(root, "backend")
    if retry is not None and retry.get("enabled"):
        retrying = ET.SubElement(
            backend,
            "retry",
            {"condition": retry_condition(retry["on"]), "count": str(retry["max_attempts"] - 1), "interval": "0",
             "first-fast-retry": "true"},
        )  # fmt: skip
        ET.SubElement(retrying, "forward-request", {"buffer-request-body": "true"})
    else:
        ET.SubElement(backend, "base")
    for section in ("outbound", "on-error"):
        ET.SubElement(ET.SubElement(root, section), "base")
    ET.indent(root, space="    ")
    return ET.tostring(root, encoding="unicode") + "\n"


# APIM: "You can configure a maximum of 5 custom dimensions per policy" (llm-emit-token-metric; Azure Monitor's
# 10 dimension keys per metric, 5 of them taken by API Management's defaults)
MAX_APIM_DIMENSIONS = 5


def check_dimension_count(count: int, where: str) -> None:
    if count > MAX_APIM_DIMENSIONS:
        raise ScenarioError(
            where, f"{count} custom dimensions on the token metric: APIM allows at most {MAX_APIM_DIMENSIONS}"
        )


def apim_dimensions(dimensions: list[str], warn: list[str]) -> list[tuple[str, str | None]]:
    """(name, value) of the `<dimension>` of each harness dimension APIM can express; the others warned."""
    out = []
    for dimension in dimensions:
        named = expressions.dimension_element(dimension)
        if named is None:
            warn.append(f"gateway.metrics.dimensions: {dimension} has no APIM equivalent: left out")
        else:
            out.append(named)
    return out


def retry_condition(ranges: list[dict[str, int]]) -> str:
    """The retry policy's condition for status ranges (the form `status_ranges` reads back)."""
    return "@(" + " || ".join(_status_test(r["min"], r["max"]) for r in ranges) + ")"


def _status_test(low: int, high: int) -> str:
    if low == high:
        return f"context.Response.StatusCode == {low}"
    return f"(context.Response.StatusCode >= {low} && context.Response.StatusCode <= {high})"
