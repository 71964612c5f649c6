"""APIM policy expressions (`@(...)`) the harness can model: counter keys and token-metric dimensions.

The harness does not evaluate C#: it recognises the few forms whose meaning it models, and writes those same
forms back. Anything else is reported as not evaluated.

    >>> counter_key_of('@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims'
    ...                '.GetValueOrDefault("appid", "none"))')
    'appid'
    >>> counter_key_of("@(context.Subscription.Id)"), counter_key_of('@(context.Request.Headers.GetValueOrDefault("x-team",""))')
    ('subscription', 'header:x-team')
    >>> escape_expressions('<a k="@(x.Get<string>("y"))"/>')
    '<a k="@(x.Get&lt;string&gt;(&quot;y&quot;))"/>'
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.scenario.gateway import counter_key_parts

# How the harness writes each counter key as an APIM expression (and reads it back).
APPID_EXPRESSION = (
    '@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims'
    '.GetValueOrDefault("appid", "00000000-0000-0000-0000-000000000000"))'
)
SUBSCRIPTION_EXPRESSION = "@(context.Subscription.Id)"
IP_EXPRESSION = "@(context.Request.IpAddress)"
DEPLOYMENT_EXPRESSION = '@(context.Request.MatchedParameters.GetValueOrDefault("deployment-id", ""))'


def header_expression(name: str) -> str:
    return f'@(context.Request.Headers.GetValueOrDefault("{name}", ""))'


_APPID = re.compile(r'AsJwt\(\)\??\.Claims\.GetValueOrDefault\(\s*"(appid|azp)"', re.IGNORECASE)
_SUBSCRIPTION = re.compile(r"^@\(\s*context\.Subscription\??\.(Id|Key)\s*\)$")
_IP = re.compile(r"^@\(\s*context\.Request\.IpAddress\s*\)$")
_HEADER = re.compile(r'^@\(\s*context\.Request\.Headers\.GetValueOrDefault\(\s*"([^"]+)"\s*(,\s*"[^"]*"\s*)?\)\s*\)$')
_DEPLOYMENT = re.compile(r'^@\(\s*context\.Request\.MatchedParameters\.GetValueOrDefault\(\s*"deployment-id"')
_VARIABLE = re.compile(r'^@\(\s*context\.Variables\.GetValueOrDefault(<string>)?\(\s*"([^"]+)"')


def is_expression(value: str) -> bool:
    return value.strip().startswith(("@(", "@{"))


def variable_read(value: str) -> str | None:
    """The variable an expression only reads (`context.Variables.GetValueOrDefault("x", ...)`), if that is all."""
    found = _VARIABLE.match(value.strip())
    return found.group(2) if found else None


_STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
_CONSTANT_TEXT = re.compile(r"^[^+]*$")  # a constant part of a harness counter key holds no `+`


_VARIABLE_ANYWHERE = re.compile(r'context\.Variables\.GetValueOrDefault(?:<string>)?\(\s*"([^"]+)"')


def variables_read(value: str) -> list[str]:
    """Every variable an expression reads."""
    return _VARIABLE_ANYWHERE.findall(value)


def counter_key_of(value: str, variables: dict[str, str] | None = None) -> str | None:
    """The harness's counter key for an APIM counter-key value, or None when it is not a form the harness
    evaluates: a literal (one counter for every caller), the JWT's appid, the subscription's id, the client
    IP, a request header, a variable set from one of these, or a concatenation (`+`) of them.

    >>> counter_key_of('@(context.Subscription.Id + "-" + context.Request.Headers.GetValueOrDefault("x-team",""))')
    'subscription + constant:- + header:x-team'
    >>> counter_key_of("global"), counter_key_of('@("all")'), counter_key_of("@(context.User.Email)")
    ('constant:global', 'constant:all', None)
    """
    value = value.strip()
    if not is_expression(value):
        return f"constant:{value}" if value and _CONSTANT_TEXT.match(value) and "{{" not in value else None
    if not (value.startswith("@(") and value.endswith(")")):
        return None  # a multi-statement @{ ... } block
    parts = []
    for term in _terms(value[2:-1]):
        part = _key_term(term, variables or {})
        if part is None:
            return None
        parts.append(part)
    return " + ".join(parts) if parts else None


def _key_term(term: str, variables: dict[str, str]) -> str | None:
    term = " ".join(term.split())
    literal = _STRING.match(term)
    if literal:
        text = literal.group(1)
        return f"constant:{text}" if text and _CONSTANT_TEXT.match(text) and text.strip() == text else None
    expression = f"@({term})"
    read = variable_read(expression)
    if read is not None:
        return counter_key_of(variables[read], None) if read in variables else None
    if _APPID.search(term):
        return "appid"
    if _SUBSCRIPTION.match(expression):
        return "subscription"
    if _IP.match(expression):
        return "ip"
    header = _HEADER.match(expression)
    if header and header.group(1).lower() != "authorization":
        return f"header:{header.group(1).lower()}"
    return None


def _terms(body: str) -> list[str]:
    """`body` split at the `+` signs outside strings and brackets."""
    terms, depth, start = [], 0, 0
    for i, char in _outside_strings(body):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "+" and depth == 0:
            terms.append(body[start:i].strip())
            start = i + 1
    terms.append(body[start:].strip())
    return terms


def _outside_strings(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) of `text` from `start`, C# string literals (and their escapes) skipped."""
    quoted, i = False, start
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        else:
            yield i, char
        i += 1


def counter_key_expression(key: str) -> str:
    """The APIM value for a harness counter key: one expression, a literal for a constant.

    >>> counter_key_expression("constant:everyone"), counter_key_expression("subscription + constant:-a")
    ('everyone', '@(context.Subscription.Id + "-a")')
    """
    parts = counter_key_parts(key)
    if len(parts) == 1 and parts[0].startswith("constant:"):
        return parts[0].removeprefix("constant:")
    return "@(" + " + ".join(_part_expression(part) for part in parts) + ")"


def _part_expression(part: str) -> str:
    if part.startswith("constant:"):
        return '"' + part.removeprefix("constant:").replace("\\", "\\\\").replace('"', '\\"') + '"'
    if part == "appid":
        expression = APPID_EXPRESSION
    elif part == "subscription":
        expression = SUBSCRIPTION_EXPRESSION
    elif part == "ip":
        expression = IP_EXPRESSION
    else:
        expression = header_expression(part.removeprefix("header:"))
    return expression[2:-1]


# token-metric dimensions: (harness dimension, APIM dimension name, value expression or None for APIM's default)
DIMENSIONS = (
    ("subscription", "Subscription ID", None),
    ("backend", "Backend ID", None),
    ("operation", "Operation ID", None),
    ("client_ip", "Client IP", IP_EXPRESSION),
    ("app_id", "App ID", APPID_EXPRESSION),
    ("deployment", "Deployment", DEPLOYMENT_EXPRESSION),
)


def dimension_of(name: str, value: str | None) -> str | None:
    """The harness dimension an APIM `<dimension name= value=>` fills, or None when the harness has none."""
    if value:
        value = " ".join(value.split())
        if _APPID.search(value):
            return "app_id"
        if _IP.match(value):
            return "client_ip"
        if _DEPLOYMENT.match(value):
            return "deployment"
        if _SUBSCRIPTION.match(value):
            return "subscription"
        header = _HEADER.match(value)
        return f"header:{header.group(1).lower()}" if header else None
    defaults = {apim.lower(): harness for harness, apim, expression in DIMENSIONS if expression is None}
    return defaults.get(name.strip().lower())


def dimension_element(dimension: str) -> tuple[str, str | None] | None:
    """(name, value) of the APIM `<dimension>` for a harness dimension; None when APIM cannot express it."""
    if dimension.startswith("header:"):
        name = dimension.removeprefix("header:")
        return name, header_expression(name)
    for harness, apim, expression in DIMENSIONS:
        if harness == dimension:
            return apim, expression
    return None


_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")


def escape_expressions(text: str) -> str:
    """APIM policy text with every `@(...)` / `@{...}` made well-formed XML.

    APIM accepts expressions with raw quotes and generics inside double-quoted attributes
    (`counter-key="@(x.Get<string>("appId"))"`), which no XML parser does. Inside each expression, `"`,
    `<`, `>` and a bare `&` become entities; nothing else moves, so line and column numbers still hold.
    """
    out: list[str] = []
    i = 0
    while True:
        start = next_expression(text, i)
        if start < 0:
            out.append(text[i:])
            return "".join(out)
        end = expression_end(text, start)
        out.append(text[i : start + 2])
        out.append(_escape(text[start + 2 : end]))
        i = end


def next_expression(text: str, i: int) -> int:
    candidates = [k for k in (text.find("@(", i), text.find("@{", i)) if k >= 0]
    return min(candidates) if candidates else -1


def expression_end(text: str, start: int) -> int:
    """Index of the bracket closing the expression that opens at `start` (C# strings skipped), or the text's end."""
    opening = text[start + 1]
    closing = ")" if opening == "(" else "}"
    depth = 0
    for i, char in _outside_strings(text, start + 1):
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def _escape(body: str) -> str:
    out: list[str] = []
    for i, char in enumerate(body):
        if char == "&" and _ENTITY.match(body, i):
            out.append(char)
        else:
            out.append({'"': "&quot;", "<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(char, char))
    return "".join(out)
