"""The part of ARM template expressions a backends template needs: names, pool ids and copy loops.

`bicep build` writes names as `[format('{0}/{1}', parameters('apim'), variables('backends')[copyIndex()].name)]`
and loops as `"copy": {"name": ..., "count": "[length(variables('backends'))]"}`. Those are evaluated here from
the template's own variables and parameter defaults: parameters, variables, format, concat, copyIndex, length,
resourceId, string, toLower, toUpper, property access and indexing. A parameter without a default stays a
placeholder (`{apimServiceName}`), fine inside a name's service part; anything else is an `ArmError` naming the
construct, never a guess.

    >>> context = Context(parameters={"apim": None}, variables={"names": ["a", "b"]}, index={"": 1})
    >>> evaluate("[format('{0}/{1}', parameters('apim'), variables('names')[copyIndex()])]", context)
    '{apim}/b'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[()\[\],.]))"
)
MAX_DEPTH = 32  # variables that refer to variables: deeper than this is a loop
MAX_COPIES = 800  # ARM's own limit on a copy loop's count


class ArmError(ValueError):
    """An ARM construct the harness does not evaluate (the message names it)."""


@dataclass
class Context:
    parameters: dict[str, Any]  # name -> value (None: no default, a placeholder)
    variables: dict[str, Any]
    index: dict[str, int] = field(default_factory=dict)  # copy loop name ("" for the resource's) -> index
    depth: int = 0


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and not value.startswith("[[") and value.endswith("]")


def evaluate(value: Any, context: Context) -> Any:
    """`value` with every ARM expression in it evaluated (strings, lists and objects, recursively)."""
    if context.depth > MAX_DEPTH:
        raise ArmError("variables refer to each other too deeply")
    if isinstance(value, dict):
        return {k: evaluate(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, context) for v in value]
    if not is_expression(value):
        return value[1:] if isinstance(value, str) and value.startswith("[[") else value
    parser = _Parser(value[1:-1], context)
    result = parser.expression()
    parser.expect_end()
    return result


class _Parser:
    def __init__(self, text: str, context: Context) -> None:
        self.text, self.context = text, context
        self.tokens: list[tuple[str, str]] = []
        i = 0
        while i < len(text):
            found = _TOKEN.match(text, i)
            if found is None or found.end() == i:
                if text[i:].strip():
                    raise ArmError(f"'{text}' is not an expression the harness reads (at '{text[i : i + 12]}')")
                break
            kind = found.lastgroup or "op"
            self.tokens.append((kind, found.group(kind)))
            i = found.end()
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (op is not None and token != ("op", op)):
            raise ArmError(f"'{self.text}' is not an expression the harness reads (expected {op or 'more'})")
        self.at += 1
        return token

    def expect_end(self) -> None:
        if self.peek() is not None:
            raise ArmError(f"'{self.text}' is not an expression the harness reads")

    def expression(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            value: Any = text[1:-1].replace("''", "'")
        elif kind == "number":
            value = int(text)
        elif kind == "name":
            self.take("(")
            args = []
            if self.peek() != ("op", ")"):
                args.append(self.expression())
                while self.peek() == ("op", ","):
                    self.take(",")
                    args.append(self.expression())
            self.take(")")
            try:
                value = self.call(text, args)
            except (IndexError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, ArmError):
                    raise
                raise ArmError(f"{text}() cannot be evaluated with these arguments (in '{self.text}')") from None
        else:
            raise ArmError(f"'{self.text}' is not an expression the harness reads")
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                member = self.take()[1]
                value = _member(value, member, self.text)
            else:
                key = self.expression()
                self.take("]")
                value = _member(value, key, self.text)
        return value

    def call(self, name: str, args: list[Any]) -> Any:
        context = self.context
        function = name.lower()
        if function == "parameters":
            if args[0] not in context.parameters:
                raise ArmError(f"parameters('{args[0]}') is not a parameter of the template")
            value = context.parameters[args[0]]
            return f"{{{args[0]}}}" if value is None else value
        if function == "variables":
            if args[0] not in context.variables:
                raise ArmError(f"variables('{args[0]}') is not a variable of the template")
            inner = Context(context.parameters, context.variables, context.index, context.depth + 1)
            return evaluate(context.variables[args[0]], inner)
        if function == "copyindex":
            offset = next((a for a in args if isinstance(a, int)), 0)
            loop = next((a for a in args if isinstance(a, str)), "")
            if loop not in context.index:
                raise ArmError(f"copyIndex({', '.join(map(repr, args))}) outside its copy loop")
            return context.index[loop] + offset
        if function == "format":
            return re.sub(r"\{(\d+)(:[^}]*)?\}", lambda m: str(args[1 + int(m.group(1))]), str(args[0]))
        if function == "concat":
            return [x for a in args for x in a] if args and isinstance(args[0], list) else "".join(map(str, args))
        if function == "length":
            return len(args[0])
        if function == "resourceid":
            return "/".join(str(a) for a in args)
        if function in ("string", "tolower", "toupper"):
            text = str(args[0])
            return text.lower() if function == "tolower" else text.upper() if function == "toupper" else text
        raise ArmError(f"{name}() is not an ARM function the harness evaluates (in '{self.text}')")


def _member(value: Any, key: Any, text: str) -> Any:
    try:
        return value[key]
    except (KeyError, IndexError, TypeError):
        raise ArmError(f"'{text}': no [{key!r}] in the value it reads") from None


def template_context(template: dict[str, Any], given: dict[str, Any] | None = None) -> Context:
    """The parameters (given values, else defaults, else placeholders) and variables of a template."""
    declared = template.get("parameters") if isinstance(template.get("parameters"), dict) else {}
    parameters: dict[str, Any] = {}
    for name, spec in (declared or {}).items():
        value = spec.get("defaultValue") if isinstance(spec, dict) else None
        parameters[name] = (given or {}).get(name, value)
    variables = template.get("variables") if isinstance(template.get("variables"), dict) else {}
    if isinstance(variables, dict) and "copy" in variables:
        raise ArmError("a variables copy loop is not evaluated: deploy the template and read the backends back")
    context = Context(parameters, dict(variables or {}))
    context.parameters = {k: None if is_expression(v) else v for k, v in parameters.items()}
    for name, value in parameters.items():
        if is_expression(value):  # a default built from other parameters
            context.parameters[name] = evaluate(value, context)
    return context


def copies(resource: dict[str, Any], context: Context) -> list[tuple[dict[str, Any], Context]]:
    """The resource once, or once per index of its copy loop, each with the context it is evaluated in."""
    loop = resource.get("copy")
    if loop is None:
        return [(resource, context)]
    if not isinstance(loop, dict):
        raise ArmError("copy is not an object with name and count")
    count = evaluate(loop.get("count"), context)
    if not isinstance(count, int) or not 0 <= count <= MAX_COPIES:
        raise ArmError(f"copy loop '{loop.get('name')}' count {loop.get('count')!r} is not a number of copies")
    out = []
    for i in range(count):
        index = context.index | {"": i, str(loop.get("name", "")): i}
        out.append((resource, Context(context.parameters, context.variables, index, context.depth)))
    return out


def expand_property_copies(value: Any, context: Context) -> Any:
    """Objects with a property copy loop (`"copy": [{"name": "services", "count": N, "input": {...}}]`) with
    the loop written out, evaluated; anything else evaluated as it is."""
    if isinstance(value, dict):
        loops = value.get("copy") if isinstance(value.get("copy"), list) else None
        out = {k: expand_property_copies(v, context) for k, v in value.items() if not (loops and k == "copy")}
        for loop in loops or []:
            if not isinstance(loop, dict) or "name" not in loop or "input" not in loop:
                raise ArmError("a property copy loop needs name, count and input")
            count = evaluate(loop.get("count"), context)
            if not isinstance(count, int) or not 0 <= count <= MAX_COPIES:
                raise ArmError(f"copy loop '{loop['name']}' count {loop.get('count')!r} is not a number of copies")
            out[loop["name"]] = [
                expand_property_copies(
                    loop["input"], Context(context.parameters, context.variables, context.index | {loop["name"]: i})
                )
                for i in range(count)
            ]
        return out
    if isinstance(value, list):
        return [expand_property_copies(v, context) for v in value]
    return evaluate(value, context)
