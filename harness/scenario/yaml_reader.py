"""YAML as the harness reads it: PyYAML's safe loader with aliases bounded in count and in what they expand to.

An anchor and its aliases share one value, so a few lines can name a billion (`a: &a [x, x]`, `b: &b [*a, *a]`,
...). PyYAML builds that graph quickly, but everything that walks it afterwards (the value checks, a copy,
validation) walks the expansion and never ends. The graph is measured before any value is built: more than
`MAX_ALIASES` aliases, or aliases that add more than `MAX_ALIAS_EXPANSION` values, or an alias inside the
node it names, is one `YamlLimit` line.

    >>> read_yaml("base: &b {tpm: 1000}\\nother: *b")
    {'base': {'tpm': 1000}, 'other': {'tpm': 1000}}
    >>> bomb = "a: &a [x, x]\\n" + "".join(f"{n}: &{n} [*{p}, *{p}]\\n" for p, n in zip("abcdefghijklmnopqrs", "bcdefghijklmnopqrst"))
    >>> read_yaml(bomb)
    Traceback (most recent call last):
    ...
    harness.scenario.yaml_reader.YamlLimit: aliases expand to more than 100000 values (an alias bomb?)
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

# A scenario names a shared block a handful of times; these are far above that and far below what hangs.
MAX_ALIASES = 1_000
MAX_ALIAS_EXPANSION = 100_000  # values the aliases may add to the document once expanded


class YamlLimit(ValueError):
    """A YAML document whose aliases go past the limits (the message says which)."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting aliases as it composes and measuring the expansion before constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlLimit(f"line {mark.line + 1}: more than {MAX_ALIASES} aliases (*name) in one document")
        return super().compose_node(parent, index)

    def construct_document(self, node: Node) -> Any:
        if self.aliases:
            _check_expansion(node)
        return super().construct_document(node)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: Node) -> None:
    """Count the values of the document with every alias expanded, without expanding it (each shared node is
    counted once and its count reused), iteratively: a deep document must not exhaust the stack here."""
    sizes: dict[int, int] = {}  # id(node) -> values in it, expanded
    open_nodes: set[int] = set()  # entered, not finished: the path from the root
    distinct: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = size
            if size - len(distinct) > MAX_ALIAS_EXPANSION:
                raise YamlLimit(f"aliases expand to more than {MAX_ALIAS_EXPANSION} values (an alias bomb?)")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise YamlLimit(f"line {line}: an alias refers to a node that contains it (a value cannot hold itself)")
        open_nodes.add(key)
        distinct.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                line = child.start_mark.line + 1
                raise YamlLimit(f"line {line}: an alias refers to a node that contains it (a value cannot hold itself)")
            if id(child) not in sizes:
                stack.append((child, False))


def read_yaml(text: str) -> Any:
    """`yaml.safe_load(text)` with the alias limits; PyYAML's own errors pass through as they are."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
