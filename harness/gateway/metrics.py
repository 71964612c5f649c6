"""Token metrics (APIM's `llm-emit-token-metric`): prompt, completion and total tokens by dimensions.

Exposed as Prometheus counters at `/metrics` and written as `kind: metric` rows to the gateway log.
Unlike APIM, the backend that served can be a dimension.

    >>> from harness.clock import VirtualClock
    >>> metrics = TokenMetrics(["model", "backend"], VirtualClock())
    >>> metrics.record({"model": "gpt-4o", "backend": "aoai-0"}, prompt=10, completion=5)
    >>> b'gateway_total_tokens_total{backend="aoai-0",model="gpt-4o"} 15.0' in metrics.exposition()
    True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, generate_latest

from harness.clock import Clock

__all__ = ["PROMETHEUS_CONTENT_TYPE", "TokenMetrics", "label_name"]

METRIC_NAMES = ("prompt_tokens", "completion_tokens", "total_tokens")


def label_name(dimension: str) -> str:
    """A Prometheus label for a dimension: `header:x-team` becomes `header_x_team`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", dimension)


class TokenMetrics:
    """Counts tokens per dimension values; `drain()` gives the log rows of what was counted since the last drain.

    Log rows are aggregated per drain (the log drains every wall second): one row per metric and set of
    dimension values, its `value` the tokens counted and `requests` how many requests they came from, as
    APIM's metrics reach Azure Monitor pre-aggregated. Summing `value` gives the same totals as the counters.
    """

    def __init__(self, dimensions: Sequence[str], clock: Clock) -> None:
        self.dimensions = list(dimensions)
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        labels = [label_name(d) for d in self.dimensions]
        self._counters = {
            name: Counter(
                f"gateway_{name}",
                f"{name.replace('_', ' ').capitalize()} counted by the gateway",
                labels,
                registry=self.registry,
            )
            for name in METRIC_NAMES
        }
        self._children: dict[tuple[str, ...], tuple[Any, ...]] = {}
        self._pending: dict[tuple[str, ...], list[int]] = {}  # values -> [prompt, completion, requests]

    def record(self, values: Mapping[str, str], prompt: int, completion: int) -> None:
        """Add one request's tokens under the dimension `values` (missing dimensions are empty strings)."""
        key = tuple(str(values.get(d, "")) for d in self.dimensions)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = tuple(
                self._counters[name].labels(*key) if key else self._counters[name] for name in METRIC_NAMES
            )
        prompt_child, completion_child, total_child = children
        prompt_child.inc(prompt)
        completion_child.inc(completion)
        total_child.inc(prompt + completion)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [prompt, completion, 1]
        else:
            pending[0] += prompt
            pending[1] += completion
            pending[2] += 1

    def drain(self) -> list[dict[str, Any]]:
        """`kind: metric` log rows for the tokens counted since the last drain."""
        if not self._pending:
            return []
        t, t_wall = self.clock.now(), self.clock.wall()
        rows = []
        for key, (prompt, completion, requests) in self._pending.items():
            dims = dict(zip(self.dimensions, key, strict=True))
            for name, value in zip(METRIC_NAMES, (prompt, completion, prompt + completion), strict=True):
                rows.append(
                    {
                        "kind": "metric",
                        "t": t,
                        "t_wall": t_wall,
                        "name": name,
                        "value": value,
                        "requests": requests,
                        "dimensions": dims,
                    }
                )
        self._pending = {}
        return rows

    def exposition(self) -> bytes:
        """The Prometheus text format of every counter."""
        return generate_latest(self.registry)
