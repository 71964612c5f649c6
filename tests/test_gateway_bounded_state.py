"""Per-caller state stays bounded: 50,000 distinct counter keys against a real gateway process on loopback.

The requests take the gateway's cheapest path that still creates a key's state: the token limit admits each
one (without estimating the prompt, it charges nothing at admission) and the backend's port refuses the
connection (502), so each key is held with windows that hold nothing and may be forgotten beyond the cap.
(A request the token limit refuses makes no state at all.) Memory is the
gateway process's own VmRSS, /metrics is scraped over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.gateway.throttle_metrics import KEYS_SHOWN

pytestmark = pytest.mark.e2e

KEYS = 50_000
CAP = 2_000
CONNECTIONS = 8
PIPELINED = 32  # requests written at once on a connection (HTTP/1.1 pipelining), then their answers read
BODY = b'{"messages": [{"role": "user", "content": "Count me, please."}], "max_tokens": 5}'
SCENARIO = f"""
backends: [{{name: east, url: "http://127.0.0.1:9", deployments: {{gpt-4o: {{}}}}}}]
gateway:
  token_limit: {{counter-key: "header:x-caller", tokens-per-minute: 1, estimate-prompt-tokens: false,
                 max-counter-keys: {CAP}}}
  metrics: {{dimensions: [model, "header:x-caller"], max_series: {CAP}}}
"""
# What 48,000 keys past the cap would cost if they were kept: a key's windows, its entry and its string are
# about 400 bytes (measured: ~20 MiB for 48,000), and its /metrics line about 60 bytes.
RSS_GROWTH_LIMIT_MIB = 8.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def request(caller: int) -> bytes:
    return (
        b"POST /openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"
        b"host: gateway\r\ncontent-type: application/json\r\n"
        + f"x-caller: caller-{caller}\r\ncontent-length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )


async def send_callers(url: str, first: int, count: int) -> dict[int, int]:
    """One request per caller `first` .. `first + count - 1`, pipelined over keep-alive connections; statuses counted."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    statuses: dict[int, int] = {}
    batches = iter(range(first, first + count, PIPELINED))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for batch in batches:
                callers = range(batch, min(batch + PIPELINED, first + count))
                writer.write(b"".join(request(caller) for caller in callers))
                for _ in callers:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                    status = int(head[9:12])
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return statuses


def scrape(url: str) -> tuple[int, dict[str, list[Any]]]:
    text = httpx.get(url + "/metrics", timeout=30).text
    families = {family.name: family.samples for family in text_string_to_metric_families(text)}
    return len(text.encode()), families


def test_fifty_thousand_counter_keys_keep_memory_and_the_scrape_within_the_caps(
    serve_stack: Callable[..., Any],
) -> None:
    gateway = serve_stack(SCENARIO, only="gateway")
    url, pid = gateway.ready[-1]["url"], gateway.proc.pid
    # Fill the caps (and the server's buffers and caches) first, then measure what the remaining keys add.
    assert asyncio.run(send_callers(url, 0, 2 * CAP)) == {502: 2 * CAP}
    size_at_cap, _ = scrape(url)
    rss_at_cap = rss_mib(pid)

    assert asyncio.run(send_callers(url, 2 * CAP, KEYS - 2 * CAP)) == {502: KEYS - 2 * CAP}

    growth = rss_mib(pid) - rss_at_cap
    assert growth < RSS_GROWTH_LIMIT_MIB, f"gateway RSS grew {growth:.1f} MiB over {KEYS - 2 * CAP} new keys"
    size, families = scrape(url)
    keys = [s.labels["counter_key"] for s in families["gateway_rate_limit_key_remaining_tokens"]]
    # the gauges show the keys with the fewest tokens left, a fixed number of them; the limiter holds the newest
    assert len(keys) == KEYS_SHOWN and "caller-0" not in keys
    assert families["gateway_rate_limit_keys"][0].value == CAP
    assert families["gateway_rate_limit_keys_evicted"][0].value == KEYS - CAP
    assert size <= size_at_cap + 5_000  # the scrape stops growing at the cap (counts get longer, lines do not)
    assert size < CAP * 120 + 20_000
    assert families["gateway_rate_limit_keys_past_cap"][0].value == 0  # every key forgotten had emptied windows
