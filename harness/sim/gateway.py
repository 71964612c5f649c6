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

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from harness.aoai.headers import CLIENT_REQUEST_ID
from harness.aoai.sse import COUNTED_DELTAS, STREAM_USAGE, USAGE, Usage
from harness.aoai.validation import Invalid
from harness.clock import Clock
from harness.gateway.breaker import BACKEND_PROTOCOL_ERROR, BACKEND_TIMEOUT, CircuitBreaker, Transition
from harness.gateway.forwarding import DeploymentRoute, build_breakers, deployment_routes
from harness.gateway.identity import Identifier
from harness.gateway.log import GatewayLog
from harness.gateway.steps import (
    AnswerBody,
    AwaitFirstChunk,
    Discard,
    ExchangeSteps,
    Failure,
    FirstChunk,
    ReadAnswer,
    ReadBody,
    Reply,
    RequestBody,
    Send,
    StreamEnd,
    Upstream,
)
from harness.gateway.token_limit import Ticket, TokenLimiter
from harness.scenario import Scenario
from harness.sim.backend import BackendAnswer, BackendCall, SimBackend
from harness.sim.engine import Scheduler

CLIENT_IP = "127.0.0.1"  # every simulated caller, as on loopback


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class GatewayCall:
    """One client request as the gateway sees it: what the body says, already counted (the same for each of
    its attempts; their headers come with each)."""

    deployment: str
    operation: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    body: dict[str, Any]  # the request's JSON body, parsed (shared between calls of one shape: never changed)
    prompt_tokens: Callable[[str], int]  # tokenizer count of the prompt for a model
    invalid: Callable[[str], Invalid | None]  # why AOAI would refuse the body for a model (None: it would not)
    estimate: Callable[[str, int], int]  # AOAI's admission estimate for a model and its default max_tokens


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
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
    cut: bool = False  # the stream broke off before its end (the client's connection is aborted)


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
    """Pools, breakers and token limiter of the scenario's gateway, in front of `backends` (the steps'
    `GatewayParts`).

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
        self.clock: Clock = scheduler.clock
        self.backends = backends
        self.log = log
        self.wall = wall
        self.replica = None if replica is None else str(replica)
        if state is None:
            state = GatewayState(scenario, self.clock, log, wall, self.replica)
        self.breakers: Mapping[str, CircuitBreaker] = state.breakers
        self.deployments: Mapping[str, DeploymentRoute] = state.routes
        self.limiter = state.limiter
        self.regions = {b.name: b.region for b in scenario.backends}
        self.identifier = Identifier(self.config.auth, self.clock)
        self._id_prefix = "gw-" if replica is None else f"gw{replica}-"
        self._handled = 0

    def wall_now(self) -> float:
        return self.wall.wall()

    def region_of(self, member: str) -> str | None:
        return self.regions[member]

    def read_shared_trips(self, ticket: Ticket | None) -> None:
        return None  # replicas that share state share the very breakers here: nothing to read

    def handle(self, call: GatewayCall, headers: Mapping[str, str], reply: Callable[[GatewayReply], None]) -> None:
        """An attempt at `call` with `headers` (lower-cased names); `reply` gets the answer when it is complete."""
        self._handled += 1
        SimExchange(self, call, headers, f"{self._id_prefix}{self._handled}", reply).run()


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

    def handle(
        self, call: GatewayCall, headers: Mapping[str, str], reply: Callable[[GatewayReply], None], user: str
    ) -> None:
        if self.sticky:
            replica = self._by_user.get(user)
            if replica is None:
                replica = self._by_user[user] = self._pick()
        else:
            replica = self._pick()
        replica.handle(call, headers, reply)

    def _pick(self) -> SimGateway:
        replica = self.replicas[self._next % len(self.replicas)]
        self._next += 1
        return replica


class SimExchange:
    """One request through the simulated gateway: the gateway's steps (`harness.gateway.steps`) carried out
    with events: a member is "sent" the request and answers through a callback, its body costs nothing, and
    a stream is relayed by waiting for its end."""

    def __init__(
        self,
        gateway: SimGateway,
        call: GatewayCall,
        headers: Mapping[str, str],
        request_id: str,
        reply: Callable[[GatewayReply], None],
    ):
        self.gateway = gateway
        self.call = call
        self.reply = reply
        self.clock = gateway.clock
        self.steps = ExchangeSteps(gateway, request_id, call.operation, headers, CLIENT_IP)
        self._run = self.steps.run(call.deployment)
        self._answer: BackendAnswer | None = None  # the member's answer being relayed
        self._read: BackendAnswer | None = None  # the member's answer read whole

    def run(self) -> None:
        self._step(None)

    def _step(self, result: Any) -> None:
        """Send `result` into the steps and carry out what they ask next, until they wait on an event."""
        while True:
            try:
                effect = self._run.send(result)
            except StopIteration as done:
                if done.value is not None:
                    self._reply_whole(done.value)
                return
            if isinstance(effect, ReadBody):
                result = RequestBody(self.call.body, self.call.prompt_tokens, self.call.invalid)
            elif isinstance(effect, Send):
                self._send(effect.member)
                return
            elif isinstance(effect, Discard):
                result = None
            elif isinstance(effect, ReadAnswer):
                answer = self._read = self._answer
                assert answer is not None
                result = AnswerBody(b"", self._usage(answer, USAGE) if answer.status == 200 else None)
            elif isinstance(effect, AwaitFirstChunk):
                result = FirstChunk(plain_json=False)  # the simulated members always stream a stream request
            else:
                answer = self._answer
                assert answer is not None
                self.gateway.scheduler.at(answer.end_at, self._stream_ended, effect.headers, answer)
                return

    def _send(self, member: str) -> None:
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
            client_request_id=self.steps.headers.get(CLIENT_REQUEST_ID),
            gateway_request_id=self.steps.id,
        )
        attempt = _Attempt()
        backend.request(call, lambda answer: self._answered(attempt, answer))
        self.gateway.scheduler.after(self.gateway.config.timeout, self._timed_out, attempt)

    def _timed_out(self, attempt: _Attempt) -> None:
        if not attempt.done:
            attempt.done = True  # the answer, when it comes, is no longer read
            self._step(Failure(BACKEND_TIMEOUT, 504, "the backend did not answer in time"))

    def _answered(self, attempt: _Attempt, answer: BackendAnswer) -> None:
        if not attempt.done:
            attempt.done = True
            self._answer = answer
            self._step(Upstream(answer.status, answer.headers, dict(answer.headers)))

    def _stream_ended(self, headers: dict[str, str], answer: BackendAnswer) -> None:
        measured = partial(self._stream_usage, answer)
        # a cut: the member's connection broke off, as the live relay reads it (its breaker counts it)
        cut = Failure(BACKEND_PROTOCOL_ERROR, 502, "the backend's answer broke off") if answer.cut else None
        with contextlib.suppress(StopIteration):  # the steps settle and log at the end of the stream
            self._run.send(StreamEnd(measured, cut))
        completion = answer.completion_tokens or 0
        usage = self._body_usage(answer) if self.call.include_usage and not answer.cut else None
        first_token = answer.first_token_at if answer.first_token_at is not None else answer.headers_at
        self.reply(
            GatewayReply(
                200, headers, b"", first_token, answer.end_at, usage, answer.inter_token_s, completion, answer.cut
            )
        )

    def _reply_whole(self, reply: Reply) -> None:
        """A whole answer, at the time it is complete: a member's (with its usage when a 200) or the gateway's."""
        now = self.clock.now()
        usage = self._body_usage(self._read) if self._read is not None and reply.status == 200 else None
        self.reply(GatewayReply(reply.status, reply.headers, reply.body, now, now, usage))

    def _usage(self, answer: BackendAnswer, counted_by: str) -> Usage:
        return Usage(answer.prompt_tokens or 0, answer.completion_tokens or 0, counted_by)

    def _stream_usage(self, answer: BackendAnswer, prompt_estimate: int, model: str) -> Usage:
        """What the gateway counts of a stream: its usage chunk, else the deltas with its own prompt count."""
        if self.call.include_usage and not answer.cut:  # a cut stream never got to its usage chunk
            return self._usage(answer, STREAM_USAGE)
        return Usage(prompt_estimate, answer.completion_tokens or 0, COUNTED_DELTAS)

    @staticmethod
    def _body_usage(answer: BackendAnswer) -> dict[str, int]:
        prompt, completion = answer.prompt_tokens or 0, answer.completion_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass(slots=True)
class _Attempt:
    done: bool = False
