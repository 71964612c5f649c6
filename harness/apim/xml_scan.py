"""Where each element's start tag and attributes sit in a policy's own text, so an export can edit one
attribute value and leave every other byte (comments, quoting, indentation, expressions) as the user wrote it.

APIM policy text is not strict XML (`@(...)` expressions hold raw quotes and generics inside attributes), so
the text is scanned here with the same rule the reader uses to escape those expressions; the elements found
are checked against the parsed tree, in document order, before any edit is made.

    >>> tags = start_tags('<a x="1"><!-- <b/> --><c k="@(f("<"))" /></a>')
    >>> [(t.name, {n: a.value for n, a in t.attributes.items()}) for t in tags]
    [('a', {'x': '1'}), ('c', {'k': '@(f("<"))'})]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.apim.expressions import expression_end, next_expression

_NAME = re.compile(r"[^\s/>=]+")


@dataclass
class Attribute:
    name: str
    value: str  # as written, between the quotes
    start: int  # of the value (after the opening quote)
    end: int  # of the value (the closing quote)
    span_start: int  # of the whitespace before the name: removing the attribute removes [span_start, end + 1)


@dataclass
class StartTag:
    name: str
    start: int  # of `<`
    end: int  # after `>`
    self_closing: bool
    close_at: int  # where `/>` or `>` begins: new attributes go here
    attributes: dict[str, Attribute] = field(default_factory=dict)
    closing_start: int | None = None  # of the matching `</name>`, when not self-closing


class ScanError(ValueError):
    """The text's tags could not be told apart (the parse succeeded, so this is a policy the scan misreads)."""


def start_tags(text: str) -> list[StartTag]:
    """Every element's start tag, in document order (comments, CDATA, processing instructions skipped)."""
    tags: list[StartTag] = []
    open_tags: list[StartTag] = []
    i = 0
    while True:
        lt = text.find("<", i)
        at = next_expression(text, i)
        if at >= 0 and (lt < 0 or at < lt):
            i = expression_end(text, at) + 1
            continue
        if lt < 0:
            return tags
        for opening, closing in (("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>"), ("<!", ">")):
            if text.startswith(opening, lt):
                end = text.find(closing, lt + len(opening))
                if end < 0:
                    raise ScanError(f"{opening} at {lt} is not closed")
                i = end + len(closing)
                break
        else:
            if text.startswith("</", lt):
                end = text.find(">", lt)
                if end < 0 or not open_tags:
                    raise ScanError(f"end tag at {lt} without a start")
                open_tags.pop().closing_start = lt
                i = end + 1
            else:
                tag = _start_tag(text, lt)
                tags.append(tag)
                if not tag.self_closing:
                    open_tags.append(tag)
                i = tag.end


def _start_tag(text: str, start: int) -> StartTag:
    name = _NAME.match(text, start + 1)
    if name is None:
        raise ScanError(f"no element name at {start}")
    i = name.end()
    attributes: dict[str, Attribute] = {}
    while True:
        space = i
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("/>", i):
            return StartTag(name.group(), start, i + 2, True, i, attributes)
        if text.startswith(">", i):
            return StartTag(name.group(), start, i + 1, False, i, attributes)
        attribute = _NAME.match(text, i)
        if attribute is None:
            raise ScanError(f"no attribute name at {i}")
        i = attribute.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if not text.startswith("=", i):
            raise ScanError(f"attribute {attribute.group()} at {i} has no value")
        i += 1
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text) or text[i] not in "\"'":
            raise ScanError(f"attribute {attribute.group()} at {i} is not quoted")
        quote, value_start = text[i], i + 1
        i = value_start
        while i < len(text) and text[i] != quote:
            i = expression_end(text, i) + 1 if text.startswith(("@(", "@{"), i) else i + 1
        if i >= len(text):
            raise ScanError(f"attribute {attribute.group()} is not closed")
        attributes[attribute.group()] = Attribute(attribute.group(), text[value_start:i], value_start, i, space)
        i += 1


@dataclass
class Edits:
    """Replacements of spans of one text, applied together (they must not overlap)."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def replace(self, start: int, end: int, new: str) -> None:
        self.spans.append((start, end, new))

    def apply(self) -> str:
        out, last = [], 0
        for start, end, new in sorted(self.spans, key=lambda span: (span[0], span[1])):
            if start < last:
                raise ScanError(f"overlapping edits at {start}")
            out.append(self.text[last:start])
            out.append(new)
            last = end
        out.append(self.text[last:])
        return "".join(out)


def quoted(value: str, quote: str = '"') -> str:
    """`value` made safe inside an attribute of the given quote (expressions keep their raw quotes, as APIM
    writes them)."""
    if value.startswith(("@(", "@{")):
        return value
    escaped = value.replace("&", "&amp;").replace("<", "&lt;")
    return escaped.replace(quote, "&quot;" if quote == '"' else "&apos;")
