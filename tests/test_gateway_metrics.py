"""Token metrics: Prometheus counters by dimension, and the same numbers as log rows."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from harness.clock import VirtualClock
from harness.gateway.metrics import TokenMetrics


def _samples(metrics: TokenMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counters_split_by_dimensions_including_the_backend_and_a_header() -> None:
    metrics = TokenMetrics(["app_id", "backend", "header:x-team"], VirtualClock(5))
    metrics.record({"app_id": "a", "backend": "east", "header:x-team": "blue"}, prompt=10, completion=5)
    metrics.record({"app_id": "a", "backend": "east", "header:x-team": "blue"}, prompt=1, completion=2)
    metrics.record({"app_id": "a", "backend": "west", "header:x-team": "blue"}, prompt=7, completion=0)
    samples = _samples(metrics)
    east = (("app_id", "a"), ("backend", "east"), ("header_x_team", "blue"))
    west = (("app_id", "a"), ("backend", "west"), ("header_x_team", "blue"))
    assert samples[("gateway_prompt_tokens_total", east)] == 11
    assert samples[("gateway_completion_tokens_total", east)] == 7
    assert samples[("gateway_total_tokens_total", east)] == 18
    assert samples[("gateway_total_tokens_total", west)] == 7
    rows = metrics.drain()
    assert len(rows) == 6  # three metrics for each of two sets of dimension values
    assert rows[2] == {
        "kind": "metric",
        "t": 5.0,
        "t_wall": 5.0,
        "name": "total_tokens",
        "value": 18,
        "requests": 2,
        "dimensions": {"app_id": "a", "backend": "east", "header:x-team": "blue"},
    }
    assert metrics.drain() == []  # each drain reports only what came since the last one
    metrics.record({"app_id": "a", "backend": "west", "header:x-team": "blue"}, prompt=1, completion=1)
    assert [r["value"] for r in metrics.drain()] == [1, 1, 2]
    assert _samples(metrics)[("gateway_total_tokens_total", west)] == 9


def test_each_gateway_has_its_own_registry() -> None:
    one = TokenMetrics(["model"], VirtualClock())
    two = TokenMetrics(["model"], VirtualClock())
    one.record({"model": "m"}, 3, 4)
    assert b"gateway_prompt_tokens_total" not in two.exposition().split(b"# TYPE")[-1] or not _samples(two)
