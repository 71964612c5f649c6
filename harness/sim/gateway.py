"""The simulated gateway: the reference gateway's rules (`harness.gateway.forwarding`, the token limiter,
breakers and pools) driven by events, in front of the simulated resources.

Like the ASGI gateway it writes one `gateway.jsonl` row per request and one per breaker transition, and
answers with the same headers (`x-backend`, `x-gateway-request-id`, the token-limit headers).

`gateway.replicas` runs several of them behind a load balancer (`SimReplicas`). With `shared_state: none`
each replica has its own token limiter and breakers, as APIM's gateway units do, so an app can get up to
`replicas` times its limit through; with `redis` they all read one set, as replicas sharing state do (the
simulator has no Redis round trip: the shared state is exact).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.aoai.errors import apim_error_body, error_body
from harness.aoai.headers import BACKEND, CLIENT_REQUEST_ID, GATEWAY_REPLICA
from harness.aoai.refusals import REFUSAL_HEADER, UNAUTHORIZED, UPSTREAM_ERROR
from harness.aoai.retry_after import advised_wait, retry_after_s
from harness.aoai.sse import COUNTED_DELTAS, STREAM_USAGE, USAGE, Usage
from harness.clock import Clock
from harness.gateway.breaker import BACKEND_TIMEOUT, Transition
from harness.gateway.forwarding import (
    OK,
    DeploymentRoute,
    Forwarding,
    Refusal,
    add_identity_headers,
    admit_tokens,
    build_breakers,
    consumed_when_stream_starts,
    counts_prompt,
    deployment_routes,
    outcome_of_backend,
    pool_closed,
    refusal_headers,
    settle_tokens,
    stream_usage,
    token_headers,
    token_refusal,
)
from harness.gateway.identity import Denied, Identifier, counter_key
from harness.gateway.log import GatewayLog
from harness.gateway.token_limit import Ticket, TokenLimiter
from harness.records import gateway_request_row
from harness.scenario import Scenario
from harness.sim.backend import BackendAnswer, BackendCall, SimBackend
from harness.sim.engine import Scheduler

CLIENT_IP = "127.0.0.1"  # every simulated caller, as on loopback


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One client attempt as the gateway sees it: headers, and what the body says, already counted."""

    deployment: str
    operation: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    headers: Mapping[str, str]  # lower-cased request headers
    prompt_tokens: Callable[[str], int]  # tokenizer count of the prompt for a model
    estimate: Callable[[str, int], int]  # AOAI's admission estimate for a model and its default max_tokens


@dataclass(frozen=True, slots=True)
class GatewayReply:
    """What the client gets, with the scenario times its headers, first token and end arrived."""

    status: int
    headers: dict[str, str]
    body: bytes
    first_token_at: float
    end_at: float
    usage: dict[str, int] | None = None  # in the body or a stream's usage chunk
    inter_token_s: float | None = None
    streamed_tokens: int = 0  # completion tokens a stream carried


class GatewayState:
    """The breakers (with the routes over them) and token limiter one replica reads, or all when shared."""

    def __init__(self, scenario: Scenario, clock: Clock, log: GatewayLog, wall: Clock, replica: str | None) -> None:
        config = scenario.gateway
        members = config.pool_members(b.name for b in scenario.backends)
        self.breakers = build_breakers(config, members, clock, self._on_transition)
        self.routes = deployment_routes(scenario, members, self.breakers)
        policy = config.token_limit
        self.limiter = TokenLimiter(policy, clock) if policy is not None else None
        self._log, self._wall, self._replica = log, wall, replica

    def _on_transition(self, transition: Transition) -> None:
        self._log.breaker(transition, self._wall.wall(), self._replica)


class SimGateway:
    """Pools, breakers and token limiter of the scenario's gateway, in front of `backends`.

    `replica` names this one among several (None when it is the only one); `state` is shared with the other
    replicas, or None for a state of its own.
    """

    def __init__(
        self,
        scenario: Scenario,
        scheduler: Scheduler,
        backends: dict[str, SimBackend],
        log: GatewayLog,
        wall: Clock,
        replica: int | None = None,
        state: GatewayState | None = None,
    ) -> None:
        self.config = scenario.gateway
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.backends = backends
        self.log = log
        self.wall = wall
        self.replica = None if replica is None else str(replica)
        if state is None:
            state = GatewayState(scenario, self.clock, log, wall, self.replica)
        self.breakers = state.breakers
        self.routes = state.routes
        self.limiter = state.limiter
        self.identifier = Identifier(self.config.auth, self.clock)
        self._id_prefix = "gw-" if replica is None else f"gw{replica}-"
        self._handled = 0

    def handle(self, call: GatewayCall, reply: Callable[[GatewayReply], None]) -> None:
        self._handled += 1
        SimExchange(self, call, f"{self._id_prefix}{self._handled}", reply).run()


class SimReplicas:
    """`gateway.replicas` gateways behind a load balancer that spreads requests round-robin or sticky per user."""

    def __init__(
        self, scenario: Scenario, scheduler: Scheduler, backends: dict[str, SimBackend], log: GatewayLog, wall: Clock
    ) -> None:
        config = scenario.gateway
        count = config.replicas
        if count == 1:
            self.replicas = [SimGateway(scenario, scheduler, backends, log, wall)]
        else:
            shared = GatewayState(scenario, scheduler.clock, log, wall, None) if config.shared_state != "none" else None
            self.replicas = [SimGateway(scenario, scheduler, backends, log, wall, i, shared) for i in range(count)]
        self.sticky = config.spread == "sticky"
        self._next = 0
        self._by_user: dict[str, SimGateway] = {}

    def handle(self, call: GatewayCall, reply: Callable[[GatewayReply], None], user: str) -> None:
        if self.sticky:
            replica = self._by_user.get(user)
            if replica is None:
                replica = self._by_user[user] = self._pick()
        else:
            replica = self._pick()
        replica.handle(call, reply)

    def _pick(self) -> SimGateway:
        replica = self.replicas[self._next % len(self.replicas)]
        self._next += 1
        return replica


class SimExchange:
    """One request through the simulated gateway; fills its log row as it goes (as `gateway.app.Exchange`)."""

    def __init__(self, gateway: SimGateway, call: GatewayCall, request_id: str, reply: Callable[[GatewayReply], None]):
        self.gateway = gateway
        self.call = call
        self.id = request_id
        self.reply = reply
        self.clock = gateway.clock
        self.started = self.clock.now()
        self.route: DeploymentRoute = gateway.routes[call.deployment]
        self.ticket: Ticket | None = None
        self.prompt_estimate = 0
        self.walk = Forwarding(self.route.pool, gateway.breakers, gateway.config.retry)
        self.row: dict[str, Any] = gateway_request_row(
            t=self.started,
            gateway_request_id=request_id,
            client_request_id=call.headers.get(CLIENT_REQUEST_ID),
            client_ip=CLIENT_IP,
            deployment=self.route.name,
            model=self.route.model,
            operation=call.operation,
            stream=call.stream,
            attempts=self.walk.tried,
            replica=gateway.replica,
        )

    def run(self) -> None:
        gateway, call = self.gateway, self.call
        caller = gateway.identifier.identify(call.headers)
        if isinstance(caller, Denied):
            self._answer(caller.status, apim_error_body(caller.status, caller.message), UNAUTHORIZED, {})
            return
        self.row["app_id"] = caller.app_id
        policy = gateway.config.token_limit
        if counts_prompt(policy, call.stream):
            self.prompt_estimate = call.prompt_tokens(self.route.model)
        if gateway.limiter is not None and policy is not None:
            key = counter_key(policy.counter_key, caller, call.headers, CLIENT_IP)
            self.row["counter_key"] = key
            self.ticket = admit_tokens(gateway.limiter, key, self.prompt_estimate, call.stream)
            if not self.ticket.allowed:
                self._refuse(token_refusal(policy, self.ticket))
                return
        self._forward()

    def _forward(self) -> None:
        member = self.walk.next_member()
        if member is None:
            self._refuse(pool_closed(self.route.pool, self.gateway.config))
            return
        backend = self.gateway.backends[member]
        state = backend.core.find(self.call.deployment)
        assert state is not None
        call = BackendCall(
            deployment=self.call.deployment,
            operation=self.call.operation,
            stream=self.call.stream,
            include_usage=self.call.include_usage,
            max_tokens=self.call.max_tokens,
            estimate=self.call.estimate(state.spec.model, state.quota.default_completion),
            prompt_tokens=self.call.prompt_tokens(state.spec.model),
            client_request_id=self.call.headers.get(CLIENT_REQUEST_ID),
            gateway_request_id=self.id,
        )
        attempt = _Attempt(member, self.clock.now())
        backend.request(call, lambda answer: self._answered(attempt, answer))
        timeout = self.gateway.config.timeout
        self.gateway.scheduler.after(timeout, self._timed_out, attempt)

    def _timed_out(self, attempt: _Attempt) -> None:
        if attempt.done:
            return
        attempt.done = True  # the answer, when it comes, is no longer read
        if self.walk.failed(attempt.member, BACKEND_TIMEOUT):
            self._forward()
            return
        self.row["backend"] = attempt.member
        self._settle(None)
        message = f"Backend '{attempt.member}': the backend did not answer in time."
        self._answer_error(504, "GatewayTimeout", message, UPSTREAM_ERROR, {})

    def _answered(self, attempt: _Attempt, answer: BackendAnswer) -> None:
        if attempt.done:
            return
        attempt.done = True
        status = answer.status
        advice = retry_after_s(answer.headers) if status >= 400 else None  # APIM: Retry-After, in seconds
        if self.walk.answered(attempt.member, status, advice, self.clock.now() - attempt.sent):
            self._forward()
            return
        self._relay(attempt.member, answer)

    def _relay(self, member: str, answer: BackendAnswer) -> None:
        row = self.row
        headers = dict(answer.headers)
        row["backend"] = member
        row["backend_request_id"] = headers.get("apim-request-id") or headers.get("x-request-id")
        row["region"] = headers.get("x-ms-region")
        headers[BACKEND] = member
        status = answer.status
        if status != 200:
            self._settle(None)
            headers.update(token_headers(self.gateway.config.token_limit, self.ticket, 0))
            if status == 429:
                row["retry_after"] = advised_wait(headers)
            self._finish(status, outcome_of_backend(status), None)
            self._send(GatewayReply(status, self._identity(headers), b"", answer.end_at, answer.end_at))
            return
        usage = self._usage(answer)
        if self.call.stream:
            # Only the prompt is known when a stream's headers go out: tokens-consumed cannot include the completion.
            consumed = consumed_when_stream_starts(self.ticket, self.prompt_estimate)
            headers.update(token_headers(self.gateway.config.token_limit, self.ticket, consumed))
            row["ttft_s"] = answer.headers_at - self.started
        else:
            self._settle(usage)
            headers.update(token_headers(self.gateway.config.token_limit, self.ticket, usage.total))
        body_usage = {
            "prompt_tokens": answer.prompt_tokens or 0,
            "completion_tokens": answer.completion_tokens or 0,
            "total_tokens": (answer.prompt_tokens or 0) + (answer.completion_tokens or 0),
        }
        reply = GatewayReply(
            200,
            self._identity(headers),
            b"",
            answer.first_token_at if self.call.stream and answer.first_token_at is not None else answer.headers_at,
            answer.end_at,
            body_usage if (not self.call.stream or self.call.include_usage) else None,
            answer.inter_token_s,
            (answer.completion_tokens or 0) if self.call.stream else 0,
        )
        self.gateway.scheduler.at(answer.end_at, self._complete, usage, member, reply)

    def _complete(self, usage: Usage, member: str, reply: GatewayReply) -> None:
        if self.call.stream:
            self._settle(usage)
        self._finish(200, OK, usage)
        self._send(reply)

    def _usage(self, answer: BackendAnswer) -> Usage:
        """What the gateway counts: the body's usage, a stream's usage chunk, else the streamed deltas."""
        prompt, completion = answer.prompt_tokens or 0, answer.completion_tokens or 0
        if not self.call.stream:
            return Usage(prompt, completion, USAGE)
        if self.call.include_usage:
            measured = Usage(prompt, completion, STREAM_USAGE)
        else:
            measured = Usage(self.prompt_estimate, completion, COUNTED_DELTAS)
        return stream_usage(self.gateway.config.apim_compat, self.prompt_estimate, lambda: measured)

    def _refuse(self, refusal: Refusal) -> None:
        self.row["retry_after"] = refusal.retry_after
        self._answer_error(refusal.status, refusal.code, refusal.message, refusal.outcome, refusal_headers(refusal))

    def _answer_error(self, status: int, code: str, message: str, outcome: str, headers: dict[str, str]) -> None:
        """A gateway-made error, with the token-limit headers, as `Exchange._finish_error` answers."""
        self._answer(status, error_body(code, message), outcome, headers)

    def _answer(self, status: int, body: bytes, outcome: str, headers: dict[str, str]) -> None:
        headers.update(token_headers(self.gateway.config.token_limit, self.ticket))
        headers[REFUSAL_HEADER] = outcome
        self._finish(status, outcome, None)
        now = self.clock.now()
        self._send(GatewayReply(status, self._identity(headers), body, now, now))

    def _identity(self, headers: dict[str, str]) -> dict[str, str]:
        add_identity_headers(headers, self.id, self.row["client_request_id"])
        if self.gateway.replica is not None:
            headers[GATEWAY_REPLICA] = self.gateway.replica
        return headers

    def _settle(self, usage: Usage | None) -> None:
        settle_tokens(self.gateway.limiter, self.ticket, usage)

    def _finish(self, status: int, outcome: str, usage: Usage | None) -> None:
        row = self.row
        row["status"] = status
        row["outcome"] = outcome
        row["duration_s"] = self.clock.now() - self.started
        row["t_wall"] = self.gateway.wall.wall()
        if usage is not None:
            row["prompt_tokens"] = usage.prompt
            row["completion_tokens"] = usage.completion
            row["total_tokens"] = usage.total
            row["tokens_counted_by"] = usage.counted_by
        self.gateway.log.write(row)

    def _send(self, reply: GatewayReply) -> None:
        self.reply(reply)


@dataclass(slots=True)
class _Attempt:
    member: str
    sent: float
    done: bool = False
