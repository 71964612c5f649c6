"""The gateway's rules for one request, without HTTP: token admission, the walk over the pool, the refusals.

Both drivers call this: the ASGI app (`harness.gateway.app`) around real requests and the discrete-event
simulator (`harness.sim`) around simulated ones, so a rule (which member next, when another member is
tried, what an open pool answers, which token headers go out) is written once.

    >>> from harness.gateway.pool import Member, Pool
    >>> from harness.scenario.gateway import GatewayRetry
    >>> walk = Forwarding(Pool([Member("a", 1), Member("b", 2)]), {}, GatewayRetry(enabled=True))
    >>> walk.next_member(), walk.answered("a", 429, None, 0.1), walk.next_member()
    ('a', True, 'b')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness.aoai.headers import CLIENT_REQUEST_ID, GATEWAY_REQUEST_ID
from harness.aoai.refusals import BREAKER_OPEN, QUOTA, TOKEN_LIMIT
from harness.aoai.sse import APIM_COMPAT, Usage
from harness.clock import Clock
from harness.gateway.breaker import BreakerListener, CircuitBreaker
from harness.gateway.pool import Member, Pool
from harness.gateway.token_limit import Ticket, TokenLimiter
from harness.records.outcomes import GatewayOutcome
from harness.scenario import Scenario
from harness.scenario.gateway import CircuitBreakerRule, GatewayConfig, GatewayRetry, PoolMember, TokenLimit


@dataclass(frozen=True, slots=True)
class DeploymentRoute:
    """A deployment the gateway serves: its model and the pool of members that host it."""

    name: str
    model: str
    pool: Pool


def build_breakers(
    config: GatewayConfig,
    members: list[PoolMember],
    clock: Clock,
    listener: BreakerListener | None,
    make: Callable[[str, CircuitBreakerRule, Clock, BreakerListener | None], CircuitBreaker] = CircuitBreaker,
) -> dict[str, CircuitBreaker]:
    """One breaker per pool member that has a rule (its own or the gateway's); `make` builds each."""
    rules = {m.backend: config.breaker_rule(m) for m in members}
    return {name: make(name, rule, clock, listener) for name, rule in rules.items() if rule is not None}


def deployment_routes(
    scenario: Scenario, members: list[PoolMember], breakers: Mapping[str, CircuitBreaker]
) -> dict[str, DeploymentRoute]:
    """Every deployment the members host, each with its own pool (by deployment name and by model name)."""
    config = scenario.gateway
    backends = {b.name: b for b in scenario.backends}
    hosted: dict[str, list[Member]] = {}
    models: dict[str, str] = {}
    for member in members:
        for name, deployment in backends[member.backend].deployments.items():
            hosted.setdefault(name, []).append(Member(member.backend, member.priority, member.weight))
            models.setdefault(name, deployment.model or name)
    routes: dict[str, DeploymentRoute] = {}
    for name, hosts in hosted.items():
        pool = Pool(
            hosts, config.pool.selection, breakers, config.pool.latency_smoothing, config.pool.latency_probe_every
        )
        routes[name] = DeploymentRoute(name, models[name], pool)
    for route in list(routes.values()):
        routes.setdefault(route.model, route)  # the v1 routes name the model
    return routes


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Refusal:
    """An answer the gateway makes itself: status, AOAI error code, message, log outcome and Retry-After."""

    status: int
    code: str
    message: str
    outcome: str
    retry_after: float | None = None


class Forwarding:
    """One request's walk over its pool: which member next, and whether an answer ends the walk.

    Without gateway retry there is one attempt; with it, a retried status (or a transport failure) moves
    on to the next available member, up to `max_attempts`.
    """

    def __init__(self, pool: Pool, breakers: Mapping[str, CircuitBreaker], retry: GatewayRetry) -> None:
        self.pool = pool
        self.breakers = breakers
        self.retry = retry
        self.max_attempts = retry.max_attempts if retry.enabled else 1
        self.tried: list[str] = []

    def next_member(self) -> str | None:
        """The member for the next attempt; None when every member is tripped or already tried."""
        if len(self.tried) >= self.max_attempts:
            return None
        member = self.pool.choose(exclude=self.tried)
        if member is not None:
            self.tried.append(member)
        return member

    def answered(self, member: str, status: int, retry_after: float | None, latency: float) -> bool:
        """Count a member's answer (breaker, latency); True when the request goes on to another member.

        `retry_after` is the member's advice in seconds (for `acceptRetryAfter`), `latency` the time it took.
        """
        self.pool.observe_latency(member, latency)
        breaker = self.breakers.get(member)
        if breaker is not None:
            breaker.record(status, None, retry_after if status >= 400 else None)
        return self.retry.enabled and self.retry.retries(status) and self._may_continue()

    def failed(self, member: str, reason: str) -> bool:
        """Count a transport failure (no answer); True when the request goes on to another member."""
        breaker = self.breakers.get(member)
        if breaker is not None:
            breaker.record(None, reason)
        return self._may_continue()

    def _may_continue(self) -> bool:
        return len(self.tried) < self.max_attempts and self.pool.has_available(self.tried)


def counts_prompt(policy: TokenLimit | None, stream: bool) -> bool:
    """Whether the prompt is counted at admission: when the policy estimates it, and always for streams (as
    APIM does), since a stream may not report usage."""
    return stream or (policy is not None and policy.estimate_prompt_tokens)


def admit_tokens(limiter: TokenLimiter, key: str, prompt_estimate: int, stream: bool) -> Ticket:
    """The token limit's decision for one request (streams are always estimated, as in APIM)."""
    return limiter.admit(key, prompt_estimate, estimate=stream or None)


def token_refusal(policy: TokenLimit, ticket: Ticket) -> Refusal:
    """The 429 (tokens per minute) or 403 (quota) of a refused ticket."""
    if ticket.status == 403:
        return Refusal(
            403,
            "403",
            f"Token quota exceeded for this {policy.token_quota_period.lower()} period. "
            f"Try again in {ticket.retry_after:g} seconds.",
            QUOTA,
            ticket.retry_after,
        )
    return Refusal(
        429,
        "429",
        f"Token limit of {policy.tokens_per_minute} tokens per minute exceeded. "
        f"Try again in {ticket.retry_after:g} seconds.",
        TOKEN_LIMIT,
        ticket.retry_after,
    )


def pool_closed(pool: Pool, config: GatewayConfig) -> Refusal:
    """What a pool with no available member answers: 503 (or 429, as sample policies rewrite it)."""
    wait = max(1, math.ceil(pool.soonest_retry_after()))
    if config.all_tripped_response == 429:
        return Refusal(
            429, "429", f"Every backend of the pool is throttling. Retry after {wait} seconds.", BREAKER_OPEN, wait
        )
    message = f"Every backend of the pool has an open circuit breaker. Retry after {wait} seconds."
    return Refusal(503, "ServiceUnavailable", message, BREAKER_OPEN, wait)


def refusal_headers(refusal: Refusal) -> dict[str, str]:
    """Headers of a gateway-made answer beyond the token-limit ones: a closed pool's Retry-After."""
    if refusal.outcome == BREAKER_OPEN and refusal.retry_after is not None:
        return {"Retry-After": f"{refusal.retry_after:g}"}
    return {}


def token_headers(policy: TokenLimit | None, ticket: Ticket | None, consumed: int | None = None) -> dict[str, str]:
    """The token-limit headers of an answer: remaining tokens and quota, tokens consumed, Retry-After."""
    headers: dict[str, str] = {}
    if policy is None or ticket is None:
        return headers
    if policy.remaining_tokens_header_name and ticket.remaining_tokens is not None:
        headers[policy.remaining_tokens_header_name] = str(ticket.remaining_tokens)
    if policy.remaining_quota_tokens_header_name and ticket.remaining_quota is not None:
        headers[policy.remaining_quota_tokens_header_name] = str(ticket.remaining_quota)
    if consumed is not None and policy.tokens_consumed_header_name and ticket.allowed:
        headers[policy.tokens_consumed_header_name] = str(consumed)
    if not ticket.allowed:
        headers[policy.retry_after_header_name] = f"{ticket.retry_after:g}"
    return headers


def settle_tokens(limiter: TokenLimiter | None, ticket: Ticket | None, usage: Usage | None) -> None:
    """Correct an admitted request's charge to the tokens it used; a failed request used none."""
    if limiter is not None and ticket is not None and ticket.allowed:
        limiter.settle(ticket, usage.total if usage is not None else 0)


def consumed_when_stream_starts(ticket: Ticket | None, prompt_estimate: int) -> int:
    """tokens-consumed of a stream: only the prompt is known when its headers go out."""
    return ticket.charged if ticket else prompt_estimate


def stream_usage(apim_compat: bool, prompt_estimate: int, measured: Callable[[], Usage]) -> Usage:
    """What the gateway counts for a stream: what it measured, or with `apim_compat` the prompt only (as APIM
    was observed to count streams); `measured` is not called then."""
    return Usage(prompt_estimate, 0, APIM_COMPAT) if apim_compat else measured()


def add_identity_headers(headers: dict[str, str], gateway_request_id: str, client_request_id: str | None) -> None:
    """The gateway's request id on every answer, and the client's own id echoed when the member did not."""
    headers[GATEWAY_REQUEST_ID] = gateway_request_id
    if client_request_id and CLIENT_REQUEST_ID not in headers:
        headers[CLIENT_REQUEST_ID] = client_request_id


def outcome_of_backend(status: int) -> GatewayOutcome:
    """The log outcome of a relayed backend answer."""
    if 200 <= status < 300:
        return GatewayOutcome.OK
    if status == 429:
        return GatewayOutcome.BACKEND_429
    if status == 401 or status == 403:
        return GatewayOutcome.UNAUTHORIZED
    if status >= 500:
        return GatewayOutcome.UPSTREAM_ERROR
    return GatewayOutcome.BAD_REQUEST
