"""Token metrics (APIM's `llm-emit-token-metric`): prompt, completion and total tokens by dimensions.

Exposed as Prometheus counters at `/metrics` and written as `kind: metric` rows to the gateway log.
Unlike APIM, the backend that served can be a dimension.

A caller as a dimension (app id, subscription, client IP, a header) would grow /metrics with every caller
(10 MB a scrape at 20,000 callers), so at most `max_series` sets of dimension values have their own series:
the ones counted most recently. When a new set needs room, the least recently counted set's counts move
to `other`: the same labels with each caller dimension's value `other`. A series under `other` only grows
(Prometheus never sees a counter fall), the totals over all series stay exact, and a caller counted again
later starts a series of its own afresh. (Chosen by recency rather than volume: a counter ranked by
volume would move between its own series and `other` as ranks change, taking its count with it.)
`gateway_metric_series_evicted_total` counts the moves.

    >>> from harness.clock import VirtualClock
    >>> metrics = TokenMetrics(["model", "backend"], VirtualClock())
    >>> metrics.record({"model": "gpt-4o", "backend": "aoai-0"}, prompt=10, completion=5)
    >>> b'gateway_total_tokens_total{backend="aoai-0",model="gpt-4o"} 15.0' in metrics.exposition()
    True
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from harness import telemetry
from harness.clock import Clock
from harness.compact_json import to_text

__all__ = ["OPENMETRICS_CONTENT_TYPE", "PROMETHEUS_CONTENT_TYPE", "TokenMetrics", "label_name"]

METRIC_NAMES = ("prompt_tokens", "completion_tokens", "total_tokens")
SERIES = "gateway_metric_series"
SERIES_EVICTED = "gateway_metric_series_evicted"
OTHER = "other"  # a caller dimension's value for the callers without a series of their own
CALLER_DIMENSIONS = ("app_id", "client_ip", "subscription")  # and every header:<name>


def is_caller_dimension(dimension: str) -> bool:
    """A dimension whose values grow with the callers (not with the scenario's deployments and backends)."""
    return dimension in CALLER_DIMENSIONS or dimension.startswith("header:")


def label_name(dimension: str) -> str:
    """A Prometheus label for a dimension: `header:x-team` becomes `header_x_team`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", dimension)


class TokenMetrics:
    """Counts tokens per dimension values; `drain()` gives the log rows of what was counted since the last drain.

    Log rows are aggregated per drain (the log drains every wall second): one row per metric and set of
    dimension values, its `value` the tokens counted and `requests` how many requests they came from, as
    APIM's metrics reach Azure Monitor pre-aggregated. Summing `value` gives the same totals as the counters.
    `registry` serves /metrics; other collectors of the gateway register with it.
    """

    def __init__(self, dimensions: Sequence[str], clock: Clock, max_series: int = 1_000) -> None:
        self.dimensions = list(dimensions)
        self.clock = clock
        self.max_series = max_series
        self.evicted = 0
        self._labels = [label_name(d) for d in self.dimensions]
        # Counts are tuples of ints, replaced at each count: the collector stops tracking such a tuple (and the
        # key, a tuple of strings) at its first pass, so with one set of values per caller, thousands of sets add
        # nothing to its full passes (an array, or a list, is tracked as long as it lives). Counted without
        # prometheus_client's per-child objects and locks (the server is single-threaded asyncio).
        self._series: OrderedDict[tuple[str, ...], tuple[int, int]] = OrderedDict()  # values -> (prompt, completion)
        # values -> (prompt, completion, requests) since the last drain
        self._pending: dict[tuple[str, ...], tuple[int, int, int]] = {}
        # counts moved out of `_series`, by their values with every caller dimension `other` (bounded by the
        # other dimensions' values, which the scenario bounds)
        self._other: dict[tuple[str, ...], tuple[int, int]] = {}
        self._callers = [i for i, d in enumerate(self.dimensions) if is_caller_dimension(d)]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        # the same counts as OpenTelemetry metrics when telemetry is on (harness.telemetry)
        meter = telemetry.meter("harness-gateway")
        self._otel = None if meter is None else meter.create_counter(telemetry.GATEWAY_TOKENS, unit="{token}")

    def record(self, values: Mapping[str, str], prompt: int, completion: int) -> None:
        """Add one request's tokens under the dimension `values` (missing dimensions are empty strings)."""
        key = tuple(str(values.get(d, "")) for d in self.dimensions)
        series = self._series
        counts = series.get(key)
        if counts is None:
            series[key] = (prompt, completion)
            if len(series) > self.max_series:
                self._to_other(*series.popitem(last=False))
        else:
            series.move_to_end(key)
            series[key] = (counts[0] + prompt, counts[1] + completion)
        if self._otel is not None:
            attributes = dict(zip(self.dimensions, key, strict=True))
            self._otel.add(prompt, {**attributes, telemetry.GEN_AI_TOKEN_TYPE: "input"})
            self._otel.add(completion, {**attributes, telemetry.GEN_AI_TOKEN_TYPE: "output"})
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = (prompt, completion, 1)
        else:
            self._pending[key] = (pending[0] + prompt, pending[1] + completion, pending[2] + 1)

    def _to_other(self, key: tuple[str, ...], counts: tuple[int, int]) -> None:
        values = list(key)
        for i in self._callers:
            values[i] = OTHER
        other = tuple(values)
        before = self._other.get(other, (0, 0))
        self._other[other] = (before[0] + counts[0], before[1] + counts[1])
        self.evicted += 1

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

    def drain_lines(self) -> Iterator[str]:
        """The rows of `drain()` as the JSON lines the log writes (`to_text` of each): the counts are taken
        now, each line is built as it is iterated.

        With a caller as a dimension there are three rows a second per caller: the log (GatewayLog.add_source)
        takes them through this, a slice at a time between requests, rather than hold every request up while
        thousands of rows are built and passed to json.dumps at once.
        """
        if not self._pending:
            return iter(())
        pending, self._pending = self._pending, {}
        return self._lines(pending, self.clock.now(), self.clock.wall())

    def _lines(self, pending: dict[tuple[str, ...], tuple[int, int, int]], t: float, t_wall: float) -> Iterator[str]:
        # The parts every line shares are encoded once per drain, the dimensions once per set of values.
        head = f'{{"kind":"metric","t":{to_text(t)},"t_wall":{to_text(t_wall)},"name":"'
        for key, (prompt, completion, requests) in pending.items():
            tail = f',"requests":{requests},"dimensions":{to_text(dict(zip(self.dimensions, key, strict=True)))}}}'
            yield f'{head}prompt_tokens","value":{prompt}{tail}'
            yield f'{head}completion_tokens","value":{completion}{tail}'
            yield f'{head}total_tokens","value":{prompt + completion}{tail}'

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families (a custom collector of `registry`)."""
        families = [
            CounterMetricFamily(
                f"gateway_{name}", f"{name.replace('_', ' ').capitalize()} counted by the gateway", labels=self._labels
            )
            for name in METRIC_NAMES
        ]
        prompt_family, completion_family, total_family = families
        # a set of values can be both in `_series` and `_other` (no caller dimension, or a caller named
        # `other`): one sample of their sum, which only grows as counts move between them
        merged = dict(self._other)
        for key, (prompt, completion) in self._series.items():
            before = merged.get(key)
            merged[key] = (prompt, completion) if before is None else (before[0] + prompt, before[1] + completion)
        for key, (prompt, completion) in merged.items():
            values = list(key)
            prompt_family.add_metric(values, prompt)
            completion_family.add_metric(values, completion)
            total_family.add_metric(values, prompt + completion)
        yield from families
        yield GaugeMetricFamily(
            SERIES, "Sets of dimension values with a series of their own in the token metrics", value=len(self._series)
        )
        yield CounterMetricFamily(
            SERIES_EVICTED,
            "Sets of dimension values whose counts moved to the caller 'other' to stay within "
            "gateway.metrics.max_series",
            value=self.evicted,
        )

    def exposition(self, openmetrics: bool = False) -> bytes:
        """The Prometheus text format (or OpenMetrics, which alone carries exemplars) of every metric registered
        with `registry`."""
        return generate_openmetrics(self.registry) if openmetrics else generate_latest(self.registry)
