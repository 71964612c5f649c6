"""One client request through the gateway, written once as steps: credentials, body, deployment, validation,
token admission, the walk over the pool, the answer relayed or refused, tokens settled, one log row.

The steps are a generator that yields what it needs done in the world and is sent back what came of it (the
way h11 keeps a protocol's rules in one object with no I/O): read the request's body, send it to a member,
read or drop the member's answer, relay its stream. Two drivers carry those out: the ASGI app over HTTP
(`harness.gateway.exchange`) and the simulator on its virtual clock (`harness.sim.gateway`). Neither decides
anything: a policy added here is in both, and `tests/test_equivalence.py` fails when they drift.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from harness.aoai.errors import JSON, apim_error_body, error_body
from harness.aoai.headers import BACKEND, CLIENT_REQUEST_ID, GATEWAY_REPLICA
from harness.aoai.refusals import BAD_REQUEST, REFUSAL_HEADER, UNAUTHORIZED, UPSTREAM_ERROR
from harness.aoai.retry_after import advised_wait, retry_after_s
from harness.aoai.sse import Usage
from harness.aoai.validation import Invalid
from harness.clock import Clock
from harness.gateway.breaker import CircuitBreaker
from harness.gateway.forwarding import (
    DeploymentRoute,
    Forwarding,
    Refusal,
    add_identity_headers,
    admit_tokens,
    consumed_when_stream_starts,
    counts_prompt,
    outcome_of_backend,
    pool_closed,
    refusal_headers,
    settle_tokens,
    stream_usage,
    token_headers,
    token_refusal,
)
from harness.gateway.identity import Caller, Denied, Identifier, counter_key
from harness.gateway.log import GatewayLog
from harness.gateway.token_limit import Ticket, TokenLimiter
from harness.records import gateway_request_row
from harness.records.outcomes import CLIENT_CLOSED_STATUS, GatewayOutcome
from harness.scenario.gateway import GatewayConfig

# -- what the steps ask of a driver, and what they are sent back ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read the client's body: sent back a `RequestBody`, or the `Invalid` AOAI would answer for it."""


READ_BODY = ReadBody()


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Send:
    """Send the request to pool member `member`: sent back its `Upstream` answer (headers) or a `Failure`."""

    member: str


@dataclass(frozen=True, slots=True)
class Discard:
    """Drop the answer last sent back, unread: another member gets the request."""


DISCARD = Discard()


@dataclass(frozen=True, slots=True)
class ReadAnswer:
    """Read the member's whole answer: sent back an `AnswerBody`, or a `Failure` when it broke off."""


READ_ANSWER = ReadAnswer()


@dataclass(frozen=True, slots=True)
class AwaitFirstChunk:
    """Wait for the stream's first chunk before any header goes out: sent back a `FirstChunk`, or a `Failure`."""


AWAIT_FIRST_CHUNK = AwaitFirstChunk()


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Relay:
    """Answer 200 with `headers` and relay the member's stream to its end: sent back a `StreamEnd`."""

    headers: dict[str, str]


Effect = ReadBody | Send | Discard | ReadAnswer | AwaitFirstChunk | Relay


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class RequestBody:
    """The client's parsed body; for a model, how its prompt counts and why AOAI would refuse it (None: it
    would not). The simulator caches both per body shape; the server works them out per request."""

    payload: Mapping[str, Any]
    prompt_tokens: Callable[[str], int]
    invalid: Callable[[str], Invalid | None]


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Upstream:
    """A member's answer as far as its headers: `headers` as received (lower-case names, its own `Date`
    included, to read an HTTP-date Retry-After against), `relayed` those that go on to the client."""

    status: int
    headers: Mapping[str, str]
    relayed: dict[str, str]


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Failure:
    """No usable answer from a member: `reason` for its breaker, `status` (502/504) for the client."""

    reason: str
    status: int
    detail: str


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class FirstChunk:
    """The first bytes of an answer to a stream request: `plain_json` when they open a JSON object, not events
    (some servers answer a stream request whole; a stream's content type alone does not tell)."""

    plain_json: bool


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class AnswerBody:
    """A member's whole answer and the usage it reports (None when it reports none)."""

    content: bytes
    usage: Usage | None


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class StreamEnd:
    """How a relayed stream ended: what the gateway measured of it, a cut, or a client that left first."""

    measured: Callable[[int, str], Usage]  # (prompt estimate, model) -> the tokens counted on the way
    cut: Failure | None = None
    client_gone: bool = False


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Reply:
    """The answer to send the client (a relayed stream's was sent by `Relay`)."""

    status: int
    headers: dict[str, str]
    body: bytes
    media_type: str | None = None


class GatewayParts(Protocol):
    """What the steps read and update of one gateway (a replica): its config, policies and log."""

    config: GatewayConfig
    clock: Clock
    replica: str | None
    identifier: Identifier
    limiter: TokenLimiter | None
    log: GatewayLog

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]: ...

    @property
    def deployments(self) -> Mapping[str, DeploymentRoute]: ...

    def wall_now(self) -> float: ...

    def region_of(self, member: str) -> str | None: ...

    def read_shared_trips(self, ticket: Ticket | None) -> None: ...


class Observer(Protocol):
    """What a driver does beside the steps (metrics, a span); the simulator observes nothing."""

    def backend_answered(self, deployment: str, member: str, headers: Mapping[str, str]) -> None: ...

    def finished(self, steps: ExchangeSteps, usage: Usage | None, member: str | None) -> None: ...


class Unobserved:
    def backend_answered(self, deployment: str, member: str, headers: Mapping[str, str]) -> None:
        return None

    def finished(self, steps: ExchangeSteps, usage: Usage | None, member: str | None) -> None:
        return None


UNOBSERVED = Unobserved()

Steps = Generator[Effect, Any, Reply | None]


class ExchangeSteps:
    """One client request on its way through the gateway; fills its log row as it goes."""

    def __init__(
        self,
        gateway: GatewayParts,
        request_id: str,
        operation: str,
        headers: Mapping[str, str],
        client_ip: str,
        observer: Observer = UNOBSERVED,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self.gateway = gateway
        self.id = request_id
        self.operation = operation
        self.headers = headers  # the client's, lower-case names
        self.query = query  # the query string's parameters, where APIM also takes a subscription key
        self.client_ip = client_ip
        self.observer = observer
        self.clock = gateway.clock
        self.started = self.clock.now()
        self.ticket: Ticket | None = None
        self.prompt_estimate = 0
        self.route: DeploymentRoute  # known once the deployment is
        self.caller: Caller  # known once the credentials are checked
        self.stream = False
        self.row: dict[str, Any] = gateway_request_row(
            t=self.started,
            t_wall=gateway.wall_now(),
            gateway_request_id=request_id,
            client_request_id=headers.get(CLIENT_REQUEST_ID),
            client_ip=client_ip,
            operation=operation,
            replica=gateway.replica,
        )

    def run(self, deployment_name: str | None) -> Steps:
        """The request's steps; `deployment_name` from the path, None when the body's `model` names it."""
        gateway = self.gateway
        identity = gateway.identifier.identify(self.headers, self.query)
        if isinstance(identity, Denied):
            self.row["app_id"] = None  # nobody the gateway could vouch for
            return self._answer(identity.status, apim_error_body(identity.status, identity.message), UNAUTHORIZED)
        self.caller = identity
        self.row["app_id"] = identity.app_id
        body = yield READ_BODY
        if isinstance(body, Invalid):
            return self._answer(body.status, body.body(), BAD_REQUEST)
        payload = body.payload
        if deployment_name is None:
            model = payload.get("model")
            deployment_name = model if isinstance(model, str) else ""
        route = gateway.deployments.get(deployment_name)
        if route is None:
            message = f"The gateway has no deployment named '{deployment_name}'."
            return self._error(404, "DeploymentNotFound", message, BAD_REQUEST)
        self.route = route
        self.row["deployment"] = route.name
        self.row["model"] = route.model
        invalid = body.invalid(route.model)
        if invalid is not None:  # refused here, as the backend would: no tokens charged, no member tried
            return self._answer(invalid.status, invalid.body(), BAD_REQUEST)
        self.stream = payload.get("stream") is True and self.operation != "embeddings"
        self.row["stream"] = self.stream
        refusal = self._admit(body)
        if refusal is not None:
            return self._refuse(refusal)
        return (yield from self._forward())

    def _admit(self, body: RequestBody) -> Refusal | None:
        gateway = self.gateway
        policy = gateway.config.token_limit
        # The count is also the prompt figure of streams without a usage chunk.
        if counts_prompt(policy, self.stream):
            self.prompt_estimate = body.prompt_tokens(self.route.model)
        if gateway.limiter is None or policy is None:
            return None
        key = counter_key(policy.counter_key, self.caller, self.headers, self.client_ip)
        self.row["counter_key"] = key
        ticket = self.ticket = admit_tokens(gateway.limiter, key, self.prompt_estimate, self.stream)
        return None if ticket.allowed else token_refusal(policy, ticket)

    def _forward(self) -> Steps:
        gateway = self.gateway
        gateway.read_shared_trips(self.ticket)  # a member another replica tripped is skipped from this request on
        walk = Forwarding(self.route.pool, gateway.breakers, gateway.config.retry)
        self.row["attempts"] = walk.tried
        failure: Failure | None = None
        while (member := walk.next_member()) is not None:
            sent = self.clock.now()
            answer = yield Send(member)
            if isinstance(answer, Failure):
                failure = answer
                if walk.failed(member, answer.reason):
                    continue
                return self._upstream_failed(member, answer)
            # APIM documents acceptRetryAfter with the Retry-After header (seconds), not retry-after-ms; an
            # HTTP date counts from the member's own Date
            advice = retry_after_s(answer.headers, gateway.wall_now()) if answer.status >= 400 else None
            if walk.answered(member, answer.status, advice, self.clock.now() - sent):
                yield DISCARD
                continue
            return (yield from self._relay(member, answer))
        if failure is not None:
            return self._upstream_failed(walk.tried[-1], failure)
        self._settle(None)  # admitted, then no member left to try: nothing was used
        return self._refuse(pool_closed(self.route.pool, gateway.config))

    def _relay(self, member: str, answer: Upstream) -> Steps:
        row = self.row
        headers = answer.relayed
        row["backend"] = member
        row["backend_request_id"] = headers.get("apim-request-id") or headers.get("x-request-id")
        row["region"] = headers.get("x-ms-region") or self.gateway.region_of(member)
        self.observer.backend_answered(self.route.name, member, headers)
        headers[BACKEND] = member
        status = answer.status
        if self.stream and status == 200:
            # The headers wait for the first chunk: a member silent past the timeout still gets a 504, not a 200.
            first = yield AWAIT_FIRST_CHUNK
            if isinstance(first, Failure):
                return self._member_broke_off(member, first)
            if not first.plain_json:
                return (yield from self._relay_stream(member, headers))
        # A whole answer: an error, a completion, or a plain JSON answer to a stream request (counted all the same)
        body = yield READ_ANSWER
        if isinstance(body, Failure):
            return self._member_broke_off(member, body)
        usage = body.usage if 200 <= status < 300 else None
        self._settle(usage)
        headers.update(self._token_headers(consumed=usage.total if usage else 0))
        if status == 429:
            row["retry_after"] = advised_wait(answer.headers, self.gateway.wall_now())
        self._finish(status, outcome_of_backend(status), usage, member)
        return Reply(status, self._identified(headers), body.content)

    def _relay_stream(self, member: str, headers: dict[str, str]) -> Steps:
        # Only the prompt is known when headers go out: tokens-consumed cannot include the completion.
        headers.update(self._token_headers(consumed=consumed_when_stream_starts(self.ticket, self.prompt_estimate)))
        self.row["status"] = 200
        self.row["ttft_s"] = self.clock.now() - self.started
        end: StreamEnd = yield Relay(self._identified(headers))
        outcome, status = GatewayOutcome.OK, 200
        if end.cut is not None:  # the member broke off mid-stream (or went silent past the timeout)
            outcome = GatewayOutcome.UPSTREAM_ERROR
            self._breaker_failure(member, end.cut)
        elif end.client_gone:  # an abandoned stream is not a finished one; its tokens so far still count
            outcome, status = GatewayOutcome.CLIENT_CLOSED, CLIENT_CLOSED_STATUS
        usage = stream_usage(
            self.gateway.config.apim_compat,
            self.prompt_estimate,
            lambda: end.measured(self.prompt_estimate, self.route.model),
        )
        self._settle(usage)
        self._finish(status, outcome, usage, member)
        return None

    # -- answers ---------------------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal) -> Reply:
        """A gateway-made answer (token limit, quota, closed pool), its Retry-After logged."""
        self.row["retry_after"] = refusal.retry_after
        return self._error(refusal.status, refusal.code, refusal.message, refusal.outcome, refusal_headers(refusal))

    def _upstream_failed(self, member: str, failure: Failure) -> Reply:
        self.row["backend"] = member
        self._settle(None)
        code = "GatewayTimeout" if failure.status == 504 else "BadGateway"
        return self._error(failure.status, code, f"Backend '{member}': {failure.detail}.", UPSTREAM_ERROR)

    def _member_broke_off(self, member: str, failure: Failure) -> Reply:
        """The member's answer failed before anything went to the client: a 502/504 it counts for."""
        self._breaker_failure(member, failure)
        return self._upstream_failed(member, failure)

    def _breaker_failure(self, member: str, failure: Failure) -> None:
        breaker = self.gateway.breakers.get(member)
        if breaker is not None:
            breaker.record(None, failure.reason)

    def _error(
        self, status: int, code: str, message: str, outcome: str, headers: dict[str, str] | None = None
    ) -> Reply:
        return self._answer(status, error_body(code, message), outcome, headers)

    def _answer(self, status: int, body: bytes, outcome: str, headers: dict[str, str] | None = None) -> Reply:
        """A gateway-made answer, with the token-limit headers and the refusal kind."""
        headers = dict(headers or {})
        headers.update(self._token_headers())
        headers[REFUSAL_HEADER] = outcome  # the kind, typed: clients never read the message
        self._finish(status, outcome, None, self.row["backend"])
        return Reply(status, self._identified(headers), body, JSON)

    # -- bookkeeping -----------------------------------------------------------------------------------------

    def _settle(self, usage: Usage | None) -> None:
        settle_tokens(self.gateway.limiter, self.ticket, usage)

    def _token_headers(self, consumed: int | None = None) -> dict[str, str]:
        return token_headers(self.gateway.config.token_limit, self.ticket, consumed)

    def _identified(self, headers: dict[str, str]) -> dict[str, str]:
        add_identity_headers(headers, self.id, self.row["client_request_id"])
        if self.gateway.replica is not None:
            headers[GATEWAY_REPLICA] = self.gateway.replica
        return headers

    def _finish(self, status: int, outcome: str, usage: Usage | None, member: str | None) -> None:
        row = self.row
        row["status"] = status
        row["outcome"] = outcome
        row["duration_s"] = self.clock.now() - self.started
        if usage is not None:
            row["prompt_tokens"] = usage.prompt
            row["completion_tokens"] = usage.completion
            row["total_tokens"] = usage.total
            row["tokens_counted_by"] = usage.counted_by
        self.observer.finished(self, usage, member)
        self.gateway.log.write(row)
