"""Secrets never ride on a command line, and a subscription key may ride in the query string as APIM takes it.

A child process the harness starts (`harness serve` under the load generator, a sweep's Locust runs) gets its
scenario overrides, api keys included, in its environment: /proc/<pid>/cmdline (what `ps` shows any user)
never holds them. A `subscription-key` query parameter is read like the header, and a checked key is taken
off the target the backend receives.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI
from quirky_backend import LoopbackServers, QuirkyBackend

from harness.clock import ScaledClock
from harness.gateway.app import build_gateway_app
from harness.loadgen.stack import EmbeddedStack
from harness.scenario import load_scenario_text
from harness.scenario.handoff import OVERRIDES_ENV

SECRET = "backend-key-" + "7f3a9c" * 4
SUBSCRIPTION_SECRET = "subscription-key-" + "b2e4d6" * 4
API_VERSION = "2024-10-21"
SCENARIO = """
backends:
  - name: east
    deployments:
      gpt-4o: {tpm: 100000, latency: {ttft: 0, per_token: 0}, completion_tokens: 2}
"""


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


@pytest.mark.e2e
def test_an_api_key_set_for_the_embedded_stack_is_not_on_its_command_line(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    overrides = [f"backends[0].api_key={SECRET}", "run.seed=3"]
    stack = EmbeddedStack.start(str(scenario), overrides, tmp_path / "run", origin=0.0, clock=ScaledClock(1.0))
    try:
        pid = stack.process.pid
        cmdline = _cmdline(pid)
        assert SECRET not in cmdline and "--set " not in cmdline, cmdline
        assert f"--set-env {OVERRIDES_ENV}" in cmdline
        assert SECRET in _environ(pid)  # readable by its owner only (mode 0400), never by `ps`
        # ... and it reached the mock: the key opens it, another does not
        url = next(line["url"] for line in stack.ready if line["role"] == "mock")
        path = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(url + path, json=body, headers={"api-key": SECRET}, timeout=20).status_code == 200
        assert httpx.post(url + path, json=body, headers={"api-key": "wrong"}, timeout=20).status_code == 401
    finally:
        stack.stop()


class Gateway:
    """The reference gateway with one subscription, in front of a backend that records what it receives."""

    def __init__(self, servers: LoopbackServers) -> None:
        self.backend = QuirkyBackend()
        direct = servers.start(self.backend)
        scenario = load_scenario_text(
            f"backends: [{{name: quirky, url: '{direct}', deployments: {{gpt-4o: {{}}}}}}]\n"
            "gateway:\n"
            "  auth: {subscriptions: [{id: team-a, key: " + SUBSCRIPTION_SECRET + "}]}\n"
            "  token_limit: {counter-key: subscription, tokens-per-minute: 100000}\n"
        )
        self.app = build_gateway_app(scenario, ScaledClock(1.0), {"quirky": direct}, None, keep_log_rows=True)
        self.url = servers.start(self.app)

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in self.app.state.gateway.log.rows if r["kind"] == "request"]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with LoopbackServers(lifetime=60) as servers:
        yield Gateway(servers)


def test_a_subscription_key_in_the_query_string_is_accepted_and_goes_no_further(gateway: Gateway) -> None:
    def sdk(query: dict[str, str]) -> AzureOpenAI:
        # a Bearer token, not an api-key header: the key is in the query string alone
        return AzureOpenAI(
            azure_endpoint=gateway.url,
            azure_ad_token="not-checked-here",
            api_version=API_VERSION,
            default_query=query,
            max_retries=0,
            timeout=20,
        )

    with contextlib.ExitStack() as opened:
        good = opened.enter_context(sdk({"subscription-key": SUBSCRIPTION_SECRET}))
        answer = good.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.http_response.status_code == 200 and answer.parse().usage is not None
        for query in ({"subscription-key": "wrong"}, {}):
            with pytest.raises(openai.AuthenticationError):
                opened.enter_context(sdk(query)).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                )
    assert len(gateway.backend.seen) == 1  # the refused ones reached no backend
    forwarded = gateway.backend.seen[0]
    assert forwarded["query"] == f"api-version={API_VERSION}"
    assert SUBSCRIPTION_SECRET not in json.dumps(forwarded)
    rows = gateway.rows()
    assert [r["status"] for r in rows] == [200, 401, 401]
    assert rows[0]["counter_key"] == "team-a"  # named by its id
    assert SUBSCRIPTION_SECRET not in json.dumps(rows)
