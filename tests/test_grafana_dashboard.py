"""The shipped Grafana dashboard: a valid dashboard document, and every metric it queries is one the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway_helpers import gateway_stack
from test_gateway_metrics import THROTTLING

DASHBOARD = Path(__file__).resolve().parents[1] / "reports" / "grafana" / "harness-dashboard.json"
PANEL_KINDS = {"row", "timeseries", "stat", "state-timeline", "bargauge", "table"}
METRIC = re.compile(r"\b(gateway_[a-z_]+)\b")


def _dashboard() -> dict:
    dashboard: dict = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    dashboard = _dashboard()
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_KINDS, panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert METRIC.search(target["expr"]), target["expr"]


async def test_every_metric_the_dashboard_queries_is_exported_by_the_gateway() -> None:
    queried = {
        re.sub(r"_bucket$", "", name)  # a histogram's buckets are its family's samples
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
        for name in METRIC.findall(target["expr"])
    }
    stack = gateway_stack(THROTTLING)
    try:
        await stack.chat(headers={"x-caller": "a"})
        exposition = (await stack.client.get("/metrics")).text
    finally:
        await stack.aclose()
    exported = set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))
    assert queried - exported == set()
    # and the dashboard shows every throttling, breaker and remaining-quota family the gateway has
    assert {n for n in exported if re.search("throttled|breaker|remaining|evicted|duration|utilization", n)} <= queried


def test_every_rate_is_per_scenario_second_unless_the_time_scale_cancels() -> None:
    """Prometheus's rate() is per wall second: at time scale 10 a deployment's 100,000 tokens per scenario minute
    read as 1,000,000 a minute. The dashboard divides by gateway_time_scale, except where a ratio or a quantile
    of rates cancels it."""
    checked = 0
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "rate(" not in expr or "histogram_quantile(" in expr:
                continue
            rates = expr.count("rate(")
            if rates == 2 and ") / sum(rate(" in expr:  # a share: one rate over another
                continue
            assert expr.endswith("/ scalar(max(gateway_time_scale))"), (panel["title"], expr)
            assert "scenario" in panel["title"], panel["title"]
            checked += 1
    assert checked >= 5
