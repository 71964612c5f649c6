"""`to-apim` over the user's own policy: change only what the scenario tuned, in place.

The policy is read as the import reads it; each modelled attribute whose scenario value differs from what
the policy says is rewritten in the policy's own text, and nothing else moves: comments, fragments, auth,
caches, on-error, expressions, names, quoting and indentation stay byte for byte. A policy the policy does not
hold (a retry, a token limit) is not added: a warning says what to add. An attribute given as a named value
(`{{tpm}}`) keeps its reference; the new value is listed for the named value instead.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.apim import expressions
from harness.apim.policy import (
    NAMED_VALUE,
    TOKEN_LIMIT_ATTRIBUTES,
    TOKEN_LIMITS,
    TOKEN_METRICS,
    WRAPPER,
    Policy,
    check_dimension_count,
    dimension_of_element,
    parse_policy,
    policy_of,
    retry_condition,
)
from harness.apim.xml_scan import Edits, ScanError, StartTag, quoted, start_tags
from harness.errors import ScenarioError
from harness.scenario.gateway import GatewayConfig, TokenLimit


@dataclass
class PolicyEdit:
    text: str
    changes: list[str] = field(default_factory=list)
    named_values: dict[str, str] = field(default_factory=dict)  # named values the export would change
    backend_id: str | None = None  # the pool the policy sends to


@dataclass
class _Element:
    element: ET.Element
    tag: StartTag


def edit_policy(
    text: str, path: Path, gateway: GatewayConfig, named_values: dict[str, str] | None, left: list[str]
) -> PolicyEdit:
    """The policy text with the scenario's tuned values written in; what it could not write goes to `left`."""
    root = parse_policy(text, path)
    policy = policy_of(root, path, [], named_values)
    elements = list(root.iter())
    if root.tag == WRAPPER and not text.removeprefix("\ufeff").lstrip().startswith(f"<{WRAPPER}"):
        elements = elements[1:]
    try:
        tags = start_tags(text)
    except ScanError as exc:
        raise ScenarioError(str(path), f"cannot edit in place ({exc})") from None
    if [t.name for t in tags] != [e.tag for e in elements]:
        raise ScenarioError(str(path), "cannot edit in place (its elements could not be located in the text)")
    found = [_Element(e, t) for e, t in zip(elements, tags, strict=True)]
    editor = _Editor(Edits(text), path.name, found, named_values or {})
    editor.token_limit(policy, gateway.token_limit, left)
    editor.dimensions(policy, list(gateway.metrics.dimensions), left)
    editor.retry(policy, gateway, left)
    return PolicyEdit(editor.edits.apply(), editor.changes, editor.named_changes, policy.backend_id)


class _Editor:
    def __init__(self, edits: Edits, name: str, found: list[_Element], named_values: dict[str, str]) -> None:
        self.edits, self.name, self.found, self.named_values = edits, name, found, named_values
        self.changes: list[str] = []
        self.named_changes: dict[str, str] = {}

    def first(self, tags: tuple[str, ...]) -> _Element | None:
        return next((f for f in self.found if f.element.tag in tags), None)

    def set(self, at: _Element, attribute: str, old: Any, new: str) -> None:
        """Write `attribute="new"` (replacing its value, or adding it after the last attribute)."""
        where = f"{self.name}: <{at.tag.name}> {attribute}"
        present = at.tag.attributes.get(attribute)
        if present is not None and NAMED_VALUE.search(present.value):
            names = [m.strip() for m in NAMED_VALUE.findall(present.value)]
            if present.value.strip() == "{{" + names[0] + "}}" and len(names) == 1:
                self.named_changes[names[0]] = new
                self.changes.append(f"{where}: kept {present.value}; set named value {names[0]} to {new} (was {old})")
                return
            raise ScenarioError(where, f"{present.value} mixes named values and text: set it to {new} yourself")
        if present is not None:
            quote = self.edits.text[present.start - 1]
            self.edits.replace(present.start, present.end, quoted(new, quote))
            self.changes.append(f"{where}: {present.value} -> {new}")
        else:
            last = max((a.end + 1 for a in at.tag.attributes.values()), default=at.tag.start + 1 + len(at.tag.name))
            self.edits.replace(last, last, f' {attribute}="{quoted(new)}"')
            self.changes.append(f"{where}: added {new} (was {old}, the default)")

    def remove(self, at: _Element, attribute: str) -> None:
        present = at.tag.attributes[attribute]
        self.edits.replace(present.span_start, present.end + 1, "")
        self.changes.append(f"{self.name}: <{at.tag.name}> {attribute}: removed (was {present.value})")

    def token_limit(self, policy: Policy, limit: TokenLimit | None, warn: list[str]) -> None:
        at = self.first(TOKEN_LIMITS)
        if limit is None:
            if at is not None:
                warn.append(f"{self.name}: the scenario has no token limit: <{at.tag.name}> kept as it is")
            return
        if at is None or policy.token_limit is None:
            warn.append(f"{self.name}: has no token limit policy: the scenario's is not added (add llm-token-limit)")
            return
        imported = policy.token_limit
        if limit.counter_key != imported["counter-key"]:
            self.set(at, "counter-key", imported["counter-key"], expressions.counter_key_expression(limit.counter_key))
        wanted = limit.model_dump(by_alias=True)
        unresolved = {item.split("=", 1)[0] for item in policy.unresolved}
        for name in TOKEN_LIMIT_ATTRIBUTES:
            new, old = wanted[name], imported.get(name, TokenLimit.model_fields[_field(name)].default)
            if name in unresolved:
                if new != TokenLimit.model_fields[_field(name)].default:
                    warn.append(f"{self.name}: <{at.tag.name}> {name} is a named value not resolved: kept as it is")
                continue
            if new == old:
                continue
            if new is None:
                self.remove(at, name)
            else:
                self.set(at, name, _text(old), _text(new))

    def dimensions(self, policy: Policy, wanted: list[str], warn: list[str]) -> None:
        at = self.first(TOKEN_METRICS)
        expressible = [d for d in wanted if expressions.dimension_element(d) is not None]
        if at is None:
            if policy.dimensions is None and expressible:
                warn.append(f"{self.name}: has no token-metric policy: none added (dimensions {', '.join(wanted)})")
            return
        for dimension in wanted:
            if dimension not in expressible:
                warn.append(f"gateway.metrics.dimensions: {dimension} has no APIM equivalent: left out")
        children = [f for f in self.found if f.element in list(at.element) and f.element.tag == "dimension"]
        had = {dimension_of_element(c.element, policy): c for c in children}
        removed = [c for d, c in had.items() if d is not None and d not in expressible]
        added = [d for d in expressible if d not in had]
        check_dimension_count(
            len(children) - len(removed) + len(added), f"{self.name}: <{at.tag.name}> (with the scenario's dimensions)"
        )
        for child in removed:
            line_start = self.edits.text.rfind("\n", 0, child.tag.start) + 1
            before = self.edits.text[line_start : child.tag.start]
            start = line_start - 1 if not before.strip() and line_start > 0 else child.tag.start
            end = child.tag.end if child.tag.self_closing else self._end_of(child)
            self.edits.replace(start, end, "")
            self.changes.append(f'{self.name}: <{at.tag.name}>: removed <dimension name="{child.element.get("name")}">')
        if added:
            anchor = children[-1] if children else None
            if anchor is None or not anchor.tag.self_closing:
                names = ", ".join(added)
                warn.append(f"{self.name}: <{at.tag.name}>: dimensions {names} not added (add them yourself)")
                return
            line_start = self.edits.text.rfind("\n", 0, anchor.tag.start) + 1
            indent = self.edits.text[line_start : anchor.tag.start]
            indent = indent if not indent.strip() else ""
            text = ""
            for dimension in added:
                named = expressions.dimension_element(dimension)
                assert named is not None
                value = f' value="{named[1]}"' if named[1] else ""
                text += f'\n{indent}<dimension name="{named[0]}"{value} />'
                self.changes.append(f'{self.name}: <{at.tag.name}>: added <dimension name="{named[0]}">')
            self.edits.replace(anchor.tag.end, anchor.tag.end, text)

    def _end_of(self, child: _Element) -> int:
        closing = child.tag.closing_start
        if closing is None:
            raise ScenarioError(self.name, f"<{child.tag.name}> has no end tag")
        return self.edits.text.index(">", closing) + 1

    def retry(self, policy: Policy, gateway: GatewayConfig, warn: list[str]) -> None:
        at = self.first(("retry",))
        retry = gateway.retry
        if not retry.enabled:
            if at is not None:
                warn.append(f"{self.name}: the scenario's gateway does not retry: <retry> kept as it is")
            return
        if at is None or policy.retry is None:
            warn.append(
                f"{self.name}: has no <retry>: the scenario's retry is not added (add one around forward-request)"
            )
            return
        if retry.max_attempts != policy.retry["max_attempts"]:
            self.set(at, "count", policy.retry["max_attempts"] - 1, str(retry.max_attempts - 1))
        ranges = [{"min": r.min, "max": r.max} for r in retry.on]
        old = policy.retry.get("on")
        if old is None:
            default = [{"min": r.min, "max": r.max} for r in type(retry)().on]
            if ranges != default:
                self.set(at, "condition", at.element.get("condition"), retry_condition(ranges))
        elif ranges != old:
            self.set(at, "condition", at.element.get("condition"), retry_condition(ranges))


def _field(alias: str) -> str:
    return alias.replace("-", "_")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
