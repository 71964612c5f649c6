"""Wiring for in-process gateway tests: mock apps behind the gateway over httpx.ASGITransport, one VirtualClock.

stack = gateway_stack("backends: [{name: east}]")
response = await stack.chat("gpt-4o", app_id="app-1")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from starlette.applications import Starlette

from harness.clock import VirtualClock
from harness.gateway.app import Gateway, build_gateway_app
from harness.mock.log import MemoryLog
from harness.mock.pool import build_pool
from harness.scenario import Scenario, load_scenario_text

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: calendar windows line up with round numbers
API_VERSION = "2024-10-21"
# Zero latency keeps scenario time still unless a test moves it.
INSTANT = "{ttft: 0, per_token: 0}"
SIGNING_KEY = "a-signing-key-the-gateway-never-verifies"


def bearer(app_id: str) -> str:
    return "Bearer " + jwt.encode({"appid": app_id}, SIGNING_KEY, algorithm="HS256")


@dataclass
class Stack:
    scenario: Scenario
    clock: VirtualClock
    app: Starlette
    mocks: dict[str, Starlette]
    backend_log: MemoryLog
    client: httpx.AsyncClient
    upstream: httpx.AsyncClient

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    @property
    def rows(self) -> list[dict[str, Any]]:
        self.gateway.log.flush()  # aggregated metric rows join the log at each flush
        return self.gateway.log.rows

    def requests(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "request"]

    def breaker_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "breaker"]

    async def chat(
        self,
        deployment: str = "gpt-4o",
        *,
        app_id: str | None = None,
        content: str = "Say hello to the gateway.",
        max_tokens: int | None = 5,
        stream: bool = False,
        include_usage: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            if include_usage:
                body["stream_options"] = {"include_usage": True}
        sent = dict(headers or {})
        if app_id is not None:
            sent["authorization"] = bearer(app_id)
        return await self.client.post(
            f"/openai/deployments/{deployment}/chat/completions",
            params={"api-version": API_VERSION},
            json=body,
            headers=sent,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.upstream.aclose()
        await self.gateway.aclose()


def gateway_stack(text: str, start: float = START, client_ip: str = "10.1.2.3") -> Stack:
    scenario = load_scenario_text(text)
    clock = VirtualClock(start)
    backend_log = MemoryLog()
    mocks = build_pool(scenario, clock, backend_log)
    upstream = httpx.AsyncClient(mounts={f"http://{name}": httpx.ASGITransport(app) for name, app in mocks.items()})
    upstreams = {b.name: b.url or f"http://{b.name}" for b in scenario.backends}
    app = build_gateway_app(scenario, clock, upstreams, None, upstream, keep_log_rows=True)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=(client_ip, 50_000)), base_url="http://gateway", timeout=30
    )
    return Stack(scenario, clock, app, mocks, backend_log, client, upstream)


def sse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            events.append(json.loads(line[6:]))
    return events
