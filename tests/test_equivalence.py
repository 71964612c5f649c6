"""The live stack and the simulator run the same steps: every kind of request, sent through both, leaves the
same gateway.jsonl and backend.jsonl rows apart from ids and times.

Live: the gateway's ASGI app in front of the mock pool's apps (over httpx.ASGITransport, on one virtual
clock). Simulated: the simulator's gateway and resources on its scheduler. Each kind is a scenario and a
sequence of requests (with pauses between them); the rows of both are compared field by field, so a step
missing from either driver (a policy, a header read, a count) shows up as the first field that differs.

Not in the table: a stream cut mid-way and a 429 without Retry-After. The mock never sends either (AOAI
always advertises its wait; a cut is a network fault), so the simulator has no such answers to model;
the live gateway's handling of them is covered in tests/test_wire_quirks.py against a quirky backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway_helpers import API_VERSION, INSTANT, START, bearer, gateway_stack

from harness.aoai.validation import check_request
from harness.clock import VirtualClock
from harness.gateway.log import GatewayLog
from harness.mock.log import MemoryLog
from harness.records.outcomes import GatewayOutcome
from harness.scenario import load_scenario_text
from harness.scenario.workload import App
from harness.sim.backend import SimBackend
from harness.sim.engine import Scheduler
from harness.sim.gateway import GatewayCall, GatewayReply, SimReplicas
from harness.tokens import admission_estimate, count_prompt_tokens
from harness.workload.requests import RequestPlan

# Fields that differ between two runs of the same thing: ids minted per run, and times.
VARYING = {
    "t",
    "t_wall",
    "duration_s",
    "ttft_s",
    "gateway_request_id",
    "backend_request_id",
    "request_id",
    "client_request_id",
}

SMALL = f"{{gpt-4o: {{tpm: 1000, latency: {INSTANT}}}}}"  # one request per 10 s
LARGE = f"{{gpt-4o: {{tpm: 10000000, latency: {INSTANT}}}}}"
LONG_ANSWERS = f"{{gpt-4o: {{tpm: 10000000, latency: {INSTANT}, completion_tokens: 150}}}}"  # 162 tokens each
STREAMING = "{gpt-4o: {tpm: 10000000, latency: {ttft: 0.2, per_token: 0.01}}}"
BREAKER = "circuit_breaker: {failureCondition: {count: 1, interval: PT1M}, tripDuration: PT1M, acceptRetryAfter: false}"
TOKEN_LIMIT = "token_limit: {tokens_per_minute: 200, counter_key: appid}"
PROMPT_TOKENS = 12
OK = GatewayOutcome.OK
SETTLE = 5.0  # scenario seconds each request is given to finish, in both drivers, before the next pause
QUOTA = "token_limit: {tokens_per_minute: 100000, token_quota: 60, token_quota_period: Hourly, counter_key: appid}"


@dataclass(frozen=True)
class Send:
    """One request: a chat body's options, the caller, and the scenario seconds to wait before it."""

    after: float = 0.0
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = 5
    app: str | None = "app-1"
    body: dict[str, Any] | None = None  # sent as is instead (an invalid one)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    name: str
    scenario: str
    sends: tuple[Send, ...]
    shows: tuple[str, ...]  # the gateway outcomes the requests must end in, in order: the kind really happened
    retried: bool = False  # a request went on to a second member


def _backends(**deployments: str) -> str:
    items = ", ".join(f"{{name: {name}, region: {name}-region, deployments: {d}}}" for name, d in deployments.items())
    return f"backends: [{items}]\n"


KINDS = [
    Kind("plain", _backends(east=LARGE), (Send(), Send(after=1, max_tokens=None)), (OK, OK)),
    Kind(
        "stream with usage",
        _backends(east=STREAMING),
        (Send(stream=True, include_usage=True, max_tokens=30),),
        (OK,),
    ),
    Kind("stream without usage", _backends(east=STREAMING), (Send(stream=True, max_tokens=30),), (OK,)),
    Kind(
        "token-limit 429",
        _backends(east=LONG_ANSWERS) + f"gateway: {{{TOKEN_LIMIT}}}",
        (Send(max_tokens=150),) * 3,
        (OK, OK, GatewayOutcome.TOKEN_LIMIT),
    ),
    Kind(
        "backend 429 with Retry-After",
        _backends(east=SMALL),
        (Send(), Send(after=1), Send(after=10)),
        (OK, GatewayOutcome.BACKEND_429, OK),
    ),
    Kind(
        "backend 429, gateway retry to another member",
        _backends(east=SMALL, west=LARGE)
        + "gateway: {pool: {members: [{backend: east, priority: 1}, {backend: west, priority: 2}]}, "
        "retry: {enabled: true}}",
        (Send(), Send(after=1), Send(after=1)),
        (OK, OK, OK),
        retried=True,
    ),
    Kind(
        "breaker open",
        _backends(east=SMALL) + f"gateway: {{{BREAKER}}}",
        (Send(), Send(after=1), Send(after=1), Send(after=61)),
        (OK, GatewayOutcome.BACKEND_429, GatewayOutcome.BREAKER_OPEN, OK),
    ),
    Kind(
        "quota 403",
        _backends(east=LARGE) + f"gateway: {{{QUOTA}}}",
        (Send(max_tokens=20),) * 4,
        (OK, OK, GatewayOutcome.QUOTA, GatewayOutcome.QUOTA),
    ),
    Kind(
        "injected fault",
        "backends: [{name: east, deployments: " + LARGE + ", faults: {error_rates: {500: 0.5}}}]\n",
        (Send(),) * 6,
        (),  # which of the six are struck is the seed's draw: at least one of them, checked below
    ),
    Kind(
        "validation 400",
        _backends(east=LARGE),
        (Send(body={"messages": "not a list"}), Send(body={"messages": [], "max_tokens": -1})),
        (GatewayOutcome.BAD_REQUEST, GatewayOutcome.BAD_REQUEST),
    ),
    Kind(
        "auth 401",
        _backends(east=LARGE) + "gateway: {auth: {subscriptions: [{id: team-a, key: key-of-team-a}]}}",
        (Send(app=None), Send(headers={"api-key": "a-forged-key"}), Send(headers={"api-key": "key-of-team-a"})),
        (GatewayOutcome.UNAUTHORIZED, GatewayOutcome.UNAUTHORIZED, OK),
    ),
]


def _body(send: Send) -> dict[str, Any]:
    """The body the load generator would send for these options (or the given, invalid, one)."""
    if send.body is not None:
        return send.body
    plan = RequestPlan(App(), "chat", "chat", "gpt-4o", PROMPT_TOKENS, send.max_tokens, send.stream, send.include_usage)
    return plan.body("deployments")


def _headers(send: Send) -> dict[str, str]:
    headers = {"content-type": "application/json", **send.headers}
    if send.app is not None and "authorization" not in headers:
        headers["authorization"] = bearer(send.app)
    return headers


async def _live(kind: Kind) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stack = gateway_stack(kind.scenario, client_ip="127.0.0.1")
    try:
        for send in kind.sends:
            stack.clock.advance(send.after)
            sent = stack.clock.now()
            await stack.client.post(
                "/openai/deployments/gpt-4o/chat/completions",
                params={"api-version": API_VERSION},
                content=json.dumps(_body(send)).encode(),
                headers=_headers(send),
            )
            stack.clock.advance(max(0.0, sent + SETTLE - stack.clock.now()))
        return stack.rows, stack.backend_log.rows
    finally:
        await stack.aclose()


def _simulated(kind: Kind) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scenario = load_scenario_text(kind.scenario)
    scheduler = Scheduler(START)
    backend_log = MemoryLog()
    gateway_log = GatewayLog(None, keep=True)
    wall = VirtualClock(START)
    backends = {b.name: SimBackend(b, scheduler, backend_log, wall, scenario.run.seed) for b in scenario.backends}
    gateway = SimReplicas(scenario, scheduler, backends, gateway_log, wall)
    replies: list[GatewayReply] = []
    for send in kind.sends:
        scheduler.run(until=scheduler.clock.now() + send.after)
        body = _body(send)
        call = GatewayCall(
            deployment="gpt-4o",
            operation="chat",
            stream=body.get("stream") is True,
            include_usage=send.include_usage,
            max_tokens=body.get("max_tokens"),
            headers=_headers(send),
            body=body,
            prompt_tokens=lambda model, body=body: count_prompt_tokens("chat", body, model),
            invalid=lambda model, body=body: check_request(body, "chat", model),
            estimate=lambda model, default, body=body: admission_estimate("chat", body, model, default),
        )
        gateway.handle(call, replies.append, "u0-0")
        scheduler.run(until=scheduler.clock.now() + SETTLE)
    gateway_log.flush()
    return gateway_log.rows, backend_log.rows


def _comparable(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        if row.get("kind") in (None, "request", "breaker"):
            yield {k: v for k, v in row.items() if k not in VARYING}


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_the_live_stack_and_the_simulator_leave_the_same_rows(kind: Kind) -> None:
    live_gateway, live_backend = await _live(kind)
    sim_gateway, sim_backend = _simulated(kind)
    requests = [r for r in live_gateway if r["kind"] == "request"]
    outcomes = [r["outcome"] for r in requests]
    if kind.shows:
        assert outcomes == list(kind.shows)
    else:
        assert GatewayOutcome.UPSTREAM_ERROR in outcomes and OK in outcomes
    assert any(len(r["attempts"]) == 2 for r in requests) == kind.retried
    assert list(_comparable(sim_gateway)) == list(_comparable(live_gateway))
    assert list(_comparable(sim_backend)) == list(_comparable(live_backend))
