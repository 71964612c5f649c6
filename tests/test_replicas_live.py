"""`harness serve` with `gateway.replicas`: one gateway per port, each with its own counters (APIM's units)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e

API = "?api-version=2024-10-21"
SCENARIO = """
backends: [{name: east, deployments: {gpt-4o: {tpm: 1000000, latency: {ttft: 0, per_token: 0}}}}]
gateway:
  replicas: 3
  token_limit: {counter-key: ip, tokens-per-minute: 200}
"""


def chat(url: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 3}
    return httpx.post(f"{url}/openai/deployments/gpt-4o/chat/completions{API}", json=body, timeout=10)


def admitted_until_refused(url: str) -> int:
    for sent in range(1, 50):
        if chat(url).status_code == 429:
            return sent - 1
    raise AssertionError(f"{url} never refused")


def test_each_replica_listens_on_its_own_port_and_counts_on_its_own(serve_stack) -> None:
    stack = serve_stack(SCENARIO, only=None)
    gateways = [line for line in stack.ready if line["role"] == "gateway"]
    assert [(g["name"], g["replica"]) for g in gateways] == [("gateway-0", 0), ("gateway-1", 1), ("gateway-2", 2)]
    assert len({g["url"] for g in gateways}) == 3
    for i, gateway in enumerate(gateways):
        assert chat(gateway["url"]).headers["x-gateway-replica"] == str(i)
    # the caller used up replica 0's window; replicas 1 and 2 still admit it: per-gateway counters
    first = admitted_until_refused(gateways[0]["url"])
    assert first >= 1
    assert admitted_until_refused(gateways[1]["url"]) == first
    assert chat(gateways[2]["url"]).status_code == 200
    assert stack.stop() == 0
    rows = [row for row in stack.log_rows("gateway.jsonl") if row.get("kind") == "request"]
    assert {row["replica"] for row in rows} == {"0", "1", "2"}
