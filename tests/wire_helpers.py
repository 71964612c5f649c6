"""A quirky backend and the reference gateway in front of it, both served by uvicorn on loopback: the wire the
tests of stream endings and other backend quirks send over."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from quirky_backend import LoopbackServers, QuirkyBackend

from harness.clock import Clock, RealClock
from harness.gateway.app import build_gateway_app
from harness.scenario import load_scenario_text


class Wire:
    """A quirky backend and a gateway in front of it, both served by uvicorn on loopback."""

    def __init__(self, servers: LoopbackServers, gateway_yaml: str = "", clock: Clock | None = None) -> None:
        self.backend = QuirkyBackend()
        self.direct = servers.start(self.backend)
        scenario = load_scenario_text(
            f"backends: [{{name: quirky, url: '{self.direct}', deployments: {{gpt-4o: {{}}}}}}]\n{gateway_yaml}"
        )
        clock = clock or RealClock()
        self.app = build_gateway_app(scenario, clock, {"quirky": self.direct}, None, keep_log_rows=True)
        self.gateway = servers.start(self.app)

    def url(self, target: str) -> str:
        return self.direct if target == "direct" else self.gateway

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in self.app.state.gateway.log.rows if r["kind"] == "request"]

    def completion_tokens_metric(self) -> float:
        scraped = httpx.get(self.gateway + "/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(scraped)
            for sample in family.samples
            if sample.name == "gateway_completion_tokens_total"
        )
