"""The live stack and the simulator run the same steps: every kind of request, sent through both, leaves the
same records.csv, gateway.jsonl and backend.jsonl rows apart from ids and times.

Live: the load generator's own `execute` (the Locust user's driver of the client's steps) sends each
request with its real `Transport` (geventhttpclient) over a loopback socket to the gateway, served by uvicorn
on 127.0.0.1, which forwards over loopback to the mock resources, also served by uvicorn; every server and
the client read one virtual clock, and each request is sent only once the previous one has been logged by
every server, so the run is the same every time. Simulated: the simulator's client (`sim.client`), gateway
and resources on its scheduler. Each kind is a scenario, a client retry profile and a sequence of requests
(with pauses between them); the rows of both are compared field by field, so a step missing from either
driver (a policy, a header read, a count, a retry) shows up as the first field that differs.

A body no `RequestPlan` makes (a malformed one) is sent as is, outside the client's steps: it leaves gateway
and backend rows but no attempt record. The cut stream is cut by the mock server for real (uvicorn drops the
connection mid-body), and the gateway relays the cut by aborting the client's connection.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gateway_helpers import API_VERSION, INSTANT, START
from quirky_backend import LoopbackServers

from harness.aoai.routes import deployment_path
from harness.aoai.validation import check_request
from harness.clock import VirtualClock
from harness.gateway.app import build_gateway_app
from harness.gateway.log import GatewayLog
from harness.loadgen.transport import Transport
from harness.mock.log import MemoryLog
from harness.mock.pool import build_pool
from harness.records.outcomes import BackendDecision, Decision, ErrorKind, GatewayOutcome, WaitSource
from harness.scenario import Scenario, load_scenario_text
from harness.scenario.workload import App
from harness.sim.backend import SimBackend
from harness.sim.client import Callers, SimUser
from harness.sim.engine import Scheduler
from harness.sim.gateway import GatewayCall, GatewayReply, SimReplicas
from harness.tokens import admission_estimate, count_prompt_tokens
from harness.workload.requests import RequestPlan, auth_headers, user_name
from harness.workload.session import RunSettings, base_headers_for, execute, header_names_for

Rows = list[dict[str, Any]]

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
# an attempt record's times, and the ids the servers minted (its own are the run's, the user's and the
# sequence's: the same in both)
RECORD_VARYING = {
    "t_scenario",
    "t_wall",
    "ttft_s",
    "latency_s",
    "inter_token_s",
    "gateway_request_id",
    "backend_request_id",
}

SMALL = f"{{gpt-4o: {{tpm: 1000, latency: {INSTANT}}}}}"  # one request per 10 s
LARGE = f"{{gpt-4o: {{tpm: 10000000, latency: {INSTANT}}}}}"
LONG_ANSWERS = f"{{gpt-4o: {{tpm: 10000000, latency: {INSTANT}, completion_tokens: 150}}}}"  # 162 tokens each
STREAMING = "{gpt-4o: {tpm: 10000000, latency: {ttft: 0.2, per_token: 0.01}}}"
CUT = "{tpm: 10000000, latency: {ttft: 0.2, per_token: 0.01}, completion_tokens: 40}"  # cut at max_tokens / 2
BREAKER = "circuit_breaker: {failureCondition: {count: 1, interval: PT1M}, tripDuration: PT1M, acceptRetryAfter: false}"
TOKEN_LIMIT = "token_limit: {tokens_per_minute: 200, counter_key: appid}"
PROMPT_TOKENS = 12
OK = GatewayOutcome.OK
SETTLE = 5.0  # scenario seconds each request is given to finish, in both drivers, before the next pause
QUOTA = "token_limit: {tokens_per_minute: 100000, token_quota: 60, token_quota_period: Hourly, counter_key: appid}"
APP = App(id="app-1")
USER = user_name(0, 0)  # the simulator's first user, whose draws (retry jitter) the live client makes too
RUN_ID = "equivalence"
PATH = deployment_path("chat", "gpt-4o", API_VERSION)


@dataclass(frozen=True)
class Send:
    """One logical request: a chat plan's options and its app, and the scenario seconds to wait before it."""

    after: float = 0.0
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = 5
    app: App = field(default_factory=lambda: APP)
    body: dict[str, Any] | None = None  # sent as is, once, instead of the plan's (a body no plan makes)

    def plan(self) -> RequestPlan:
        return RequestPlan(
            self.app, "chat", "chat", "gpt-4o", PROMPT_TOKENS, self.max_tokens, self.stream, self.include_usage
        )


@dataclass(frozen=True)
class Kind:
    name: str
    scenario: str
    sends: tuple[Send, ...]
    shows: tuple[str, ...]  # the gateway outcomes the attempts must end in, in order: the kind really happened
    retried: bool = False  # a request went on to a second member
    client: str = "none"  # the apps' client retry profile
    check: Callable[[Rows, Rows, Rows], None] | None = None  # more the kind must show (gateway, backend, records)


def _backends(**deployments: str) -> str:
    items = ", ".join(f"{{name: {name}, region: {name}-region, deployments: {d}}}" for name, d in deployments.items())
    return f"backends: [{items}]\n"


def _requests(gateway: Rows) -> Rows:
    return [r for r in gateway if r["kind"] == "request"]


def _cut_mid_way(gateway: Rows, backend: Rows, records: Rows) -> None:
    """Cut by the backend after 15 of 30 tokens: logged and charged as 15, relayed as a truncated stream."""
    assert [r["decision"] for r in backend] == [BackendDecision.CUT_STREAM] * 2
    assert [(r["status"], r["completion_tokens"]) for r in backend] == [(200, 15)] * 2
    assert [(r["status"], r["completion_tokens"]) for r in _requests(gateway)] == [(200, 15)] * 2
    assert [(r["error_kind"], r["decision"]) for r in records] == [(ErrorKind.TRUNCATED_STREAM, Decision.FAIL)] * 2
    assert [r["usage_completion"] for r in records] == [15, 15]  # what reached the client, counted


def _no_wait_told(gateway: Rows, backend: Rows, records: Rows) -> None:
    """No Retry-After anywhere: the client backs off on its own, twice, then gives up."""
    assert all(r["retry_after"] is None for r in backend + _requests(gateway))
    assert [r["decision"] for r in records] == [Decision.RETRY, Decision.RETRY, Decision.GIVE_UP]
    assert all("retry_after_s" not in r and "retry_after_ms" not in r for r in records)
    assert {r["retry_wait_source"] for r in records[:2]} == {WaitSource.BACKOFF}


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
        "stream cut mid-way",
        "backends: [{name: east, deployments: {gpt-4o: "
        + CUT
        + "}, faults: {cut_streams: {probability: 1, after: 0.5}}}]",
        (Send(stream=True, include_usage=True, max_tokens=30), Send(stream=True, max_tokens=30)),
        (GatewayOutcome.UPSTREAM_ERROR, GatewayOutcome.UPSTREAM_ERROR),
        client="openai-python",
        check=_cut_mid_way,
    ),
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
        "backend 429 without Retry-After",
        "backends: [{name: east, deployments: " + LARGE + ", faults: {error_rates: {429: 1.0}, "
        "injected_429: {retry_after: null}}}]",
        (Send(),),
        (GatewayOutcome.BACKEND_429,) * 3,
        client="openai-python",
        check=_no_wait_told,
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
        (Send(),) * 4,
        (),  # which attempts are struck is the seed's draw: at least one of them, checked below
        client="openai-python",  # the client retries a 500 after its own backoff
    ),
    Kind(
        "validation 400",
        _backends(east=LARGE),
        (Send(body={"messages": "not a list"}), Send(max_tokens=-1)),
        (GatewayOutcome.BAD_REQUEST, GatewayOutcome.BAD_REQUEST),
    ),
    Kind(
        "auth 401",
        _backends(east=LARGE) + "gateway: {auth: {subscriptions: [{id: team-a, key: key-of-team-a}]}}",
        (
            Send(app=App(id="app-1", send_token=False)),
            Send(app=App(id="app-1", api_key="a-forged-key")),
            Send(app=App(id="app-1", api_key="key-of-team-a")),
        ),
        (GatewayOutcome.UNAUTHORIZED, GatewayOutcome.UNAUTHORIZED, OK),
    ),
]


def _settings(kind: Kind, scenario: Scenario, clock: Any) -> RunSettings:
    return RunSettings(run_id=RUN_ID, clock=clock, client_profile=kind.client, header_names=header_names_for(scenario))


def _raw_headers(send: Send) -> dict[str, str]:
    return {"content-type": "application/json", **auth_headers(send.app, None, None)}


def _logged(log: GatewayLog, count: int) -> None:
    """Wait (a few ms of wall time at most) until the gateway has logged `count` requests: its row of a stream
    is written once the member's stream ended, which can be just after the client read the last chunk. The
    members log theirs before the gateway reads the end of their body."""
    deadline = time.monotonic() + 10
    while len(_requests(log.rows)) < count:
        assert time.monotonic() < deadline, "the gateway did not log the request"
        time.sleep(0.002)


def _live(kind: Kind) -> tuple[Rows, Rows, Rows]:
    scenario = load_scenario_text(kind.scenario)
    clock = VirtualClock(START)
    backend_log = MemoryLog()
    records: Rows = []
    settings = _settings(kind, scenario, clock)
    rng = random.Random(f"{scenario.run.seed}:{USER}")
    with LoopbackServers(lifetime=60) as servers:
        upstreams = {name: servers.start(app) for name, app in build_pool(scenario, clock, backend_log).items()}
        app = build_gateway_app(scenario, clock, upstreams, None, keep_log_rows=True)
        log: GatewayLog = app.state.gateway.log
        transport = Transport(servers.start(app), clock, settings.timeout_s)
        sequence = raw = 0
        try:
            for send in kind.sends:
                clock.advance(send.after)
                sent = clock.now()
                if send.body is None:
                    sequence += 1
                    execute(send.plan(), USER, sequence, transport, settings, rng, records.append)
                else:
                    raw += 1
                    transport.send(PATH, json.dumps(send.body).encode(), _raw_headers(send), stream=False)
                _logged(log, len(records) + raw)
                assert clock.now() <= sent + SETTLE, "the request took longer than the pause after it"
                clock.advance(sent + SETTLE - clock.now())
        finally:
            transport.close()
    log.flush()
    return log.rows, backend_log.rows, records


def _simulated(kind: Kind) -> tuple[Rows, Rows, Rows]:
    scenario = load_scenario_text(kind.scenario)
    scheduler = Scheduler(START)
    backend_log = MemoryLog()
    gateway_log = GatewayLog(None, keep=True)
    wall = VirtualClock(START)
    backends = {b.name: SimBackend(b, scheduler, backend_log, wall, scenario.run.seed) for b in scenario.backends}
    gateway = SimReplicas(scenario, scheduler, backends, gateway_log, wall)
    records: Rows = []
    settings = _settings(kind, scenario, scheduler.clock)
    # one simulated user whose run has ended: it sends what the test gives it, and nothing of its own
    callers = Callers(scenario, scheduler, gateway, settings, records.append, wall, started=START, ends=START)
    user = SimUser(callers, 0)
    assert user.name == USER
    ended: list[float] = []
    user.done = lambda: ended.append(scheduler.clock.now())  # type: ignore[method-assign]
    replies: list[GatewayReply] = []
    for send in kind.sends:
        scheduler.run(until=scheduler.clock.now() + send.after)
        sent = scheduler.clock.now()
        if send.body is None:
            plan = send.plan()
            user.base_headers = base_headers_for(plan, settings)  # as `execute` takes them from the plan's app
            user._send(plan)
            scheduler.run(until=sent + SETTLE)
            assert ended and ended[-1] <= sent + SETTLE, "the request took longer than the pause after it"
            continue
        body = send.body
        call = GatewayCall(
            deployment="gpt-4o",
            operation="chat",
            stream=body.get("stream") is True,
            include_usage=send.include_usage,
            max_tokens=body.get("max_tokens"),
            body=body,
            prompt_tokens=lambda model, body=body: count_prompt_tokens("chat", body, model),
            invalid=lambda model, body=body: check_request(body, "chat", model),
            estimate=lambda model, default, body=body: admission_estimate("chat", body, model, default),
        )
        gateway.handle(call, _raw_headers(send), replies.append, user.name)
        scheduler.run(until=sent + SETTLE)
    gateway_log.flush()
    return gateway_log.rows, backend_log.rows, records


def _comparable(rows: Rows) -> Iterator[dict[str, Any]]:
    for row in rows:
        if row.get("kind") in (None, "request", "breaker"):
            yield {k: v for k, v in row.items() if k not in VARYING}


def _comparable_records(records: Rows) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in RECORD_VARYING} for r in records]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_the_live_stack_and_the_simulator_leave_the_same_rows(kind: Kind) -> None:
    live_gateway, live_backend, live_records = _live(kind)
    sim_gateway, sim_backend, sim_records = _simulated(kind)
    requests = _requests(live_gateway)
    outcomes = [r["outcome"] for r in requests]
    if kind.shows:
        assert outcomes == list(kind.shows)
    else:
        assert GatewayOutcome.UPSTREAM_ERROR in outcomes and OK in outcomes
    assert any(len(r["attempts"]) == 2 for r in requests) == kind.retried
    if kind.check is not None:
        kind.check(live_gateway, live_backend, live_records)
    assert len(live_records) == sum(s.body is None for s in kind.sends) + sum(
        r["decision"] == Decision.RETRY for r in live_records
    )
    assert list(_comparable(sim_gateway)) == list(_comparable(live_gateway))
    assert list(_comparable(sim_backend)) == list(_comparable(live_backend))
    assert _comparable_records(sim_records) == _comparable_records(live_records)
