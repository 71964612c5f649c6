"""Nested data as dotted paths to leaf values, spelled as scenario overrides and sweep metrics spell them.

>>> flatten({"gateway": {"pool": [{"weight": 2}]}, "run": {"seed": 1}})
{'gateway.pool[0].weight': 2, 'run.seed': 1}
"""

from __future__ import annotations

from typing import Any


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values (lists of dicts or lists get `[i]`; lists of plain values are one leaf)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list) and data and any(isinstance(v, dict | list) for v in data):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: data}
