"""One logical request from plan to records: send, retry as the app's client would, record every attempt.

Locust-free on purpose (the Locust user only calls `execute`), so it can be driven directly in tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness import telemetry
from harness.aoai.headers import CLIENT_REQUEST_ID
from harness.aoai.sse import COUNTED_DELTAS
from harness.client import (
    RETRY_COUNT_HEADER,
    GatewayHeaderNames,
    ResponseInfo,
    RetryDecision,
    RetryLoop,
    RetryProfile,
    capture,
    classify,
    decision_label,
    profile_for,
)
from harness.client.attempt import AttemptResult
from harness.clock import Clock
from harness.compact_json import to_bytes
from harness.records.outcomes import CAUSE_NAMES, Decision, ErrorKind
from harness.scenario import Scenario
from harness.scenario.workload import App
from harness.tokens import count_text_tokens
from harness.workload.request_trace import RequestTrace
from harness.workload.requests import RequestPlan, TokenSigner, auth_headers


class Sender(Protocol):
    """What sends one attempt (the Locust side's `Transport` over a socket); `server` is the endpoint's
    `server.address`/`server.port`, for the attempts' spans."""

    server: dict[str, Any]

    def send(self, path: str, body: bytes, headers: dict[str, str], stream: bool) -> AttemptResult: ...


Record = dict[str, Any]


@dataclass
class RunSettings:
    """What every user of one process shares: identity of the run and how to reach and credit the target."""

    run_id: str
    clock: Clock
    api_version: str = "2024-10-21"
    route: str = "deployments"
    timeout_s: float = 600.0
    api_key: str | None = None
    bearer_token: str | None = None
    client_profile: str | None = None  # overrides every app's profile when set
    header_names: GatewayHeaderNames = field(default_factory=GatewayHeaderNames)
    signer: TokenSigner | None = None  # signs app tokens when the scenario's gateway validates them

    def profile_name(self, app: App) -> str:
        return self.client_profile or app.client_profile

    def profile(self, app: App, rng: random.Random) -> RetryProfile:
        name = self.profile_name(app)
        if name == "custom":
            return profile_for("custom", rng, **app.retry.model_dump())
        return profile_for(name, rng)


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Outcome:
    """The logical request as the caller saw it: its final attempt, how many attempts, how long overall."""

    request_type: str
    attempts: int
    latency_s: float
    error_kind: str
    response_bytes: int

    @property
    def failure(self) -> str | None:
        """A human name of the failure cause for Locust's failure table (None on success)."""
        return CAUSE_NAMES.get(self.error_kind, self.error_kind) if self.error_kind else None


def header_names_for(scenario: Scenario) -> GatewayHeaderNames:
    """The gateway's token-limit header names as the scenario configures them (lower-cased, as received)."""
    names = GatewayHeaderNames()
    token_limit = scenario.gateway.token_limit
    if token_limit is None:
        return names
    return GatewayHeaderNames(
        remaining_tokens=token_limit.remaining_tokens_header_name or names.remaining_tokens,
        remaining_quota=token_limit.remaining_quota_tokens_header_name or names.remaining_quota,
        tokens_consumed=token_limit.tokens_consumed_header_name or names.tokens_consumed,
        retry_after=token_limit.retry_after_header_name or names.retry_after,
    ).lowered()


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class SendAttempt:
    """Send attempt `number` with `headers`: sent back its `AttemptResult`."""

    number: int
    headers: dict[str, str]


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Pause:
    """Wait `seconds` before the next attempt (the retry profile's decision; 0 still yields to others)."""

    seconds: float


RequestSteps = Generator[SendAttempt | Pause, Any, Outcome]


def request_steps(
    plan: RequestPlan,
    user: str,
    sequence: int,
    settings: RunSettings,
    rng: random.Random,
    prompt_est: int,
    base_headers: dict[str, str],
    sink: Callable[[Record], None],
) -> RequestSteps:
    """One logical request's steps, as its app's client takes them: send an attempt, record it with the retry
    profile's decision, wait, again, until the profile stops. Both drivers run these steps: `execute` (a
    Locust user, over a socket, sleeping on its clock) and the simulator (events on its virtual clock)."""
    clock = settings.clock
    logical_id = f"{settings.run_id}:{user}:{sequence}"
    profile_name = settings.profile_name(plan.app)
    loop = RetryLoop(settings.profile(plan.app, rng))
    first_started = clock.now()
    while True:
        attempt = loop.attempt
        headers = dict(base_headers)
        headers[CLIENT_REQUEST_ID] = f"{logical_id}:{attempt}"
        headers[RETRY_COUNT_HEADER] = str(attempt - 1)
        started, started_wall = clock.now(), clock.wall()
        result: AttemptResult = yield SendAttempt(attempt, headers)
        info, decision = loop.decide(result.status, result.headers, result.error, clock.now())
        record = attempt_record(
            plan, settings, user, profile_name, logical_id, attempt, started, started_wall, prompt_est, result,
            decision, info,
        )  # fmt: skip
        sink(record)
        if not decision.retry:
            error_kind = record["error_kind"]  # as the record says it
            return Outcome(plan.request_type, attempt, clock.now() - first_started, error_kind, result.body_bytes)
        yield Pause(decision.wait_s)


def base_headers_for(plan: RequestPlan, settings: RunSettings) -> dict[str, str]:
    """What every attempt of `plan` sends beside its ids: the content type and the app's credentials."""
    return {
        "content-type": "application/json",
        **auth_headers(plan.app, settings.api_key, settings.bearer_token, settings.signer),
    }


def execute(
    plan: RequestPlan,
    user: str,
    sequence: int,
    transport: Sender,
    settings: RunSettings,
    rng: random.Random,
    sink: Callable[[Record], None],
) -> Outcome:
    """Send `plan` with its app's retry rules; hand every attempt's record to `sink` as soon as it ends.

    The live driver of `request_steps`: attempts go over `transport`, waits are slept on the run's clock.
    """
    clock = settings.clock
    body = plan.body(settings.route)
    payload = to_bytes(body)
    path = plan.path(settings.api_version, settings.route)
    spans = RequestTrace(
        plan.operation,
        plan.deployment,
        {
            telemetry.REQUEST_MAX_TOKENS: plan.max_tokens,
            telemetry.APP_ID: plan.app.id,
            telemetry.CLIENT_PROFILE: settings.profile_name(plan.app),
            telemetry.LOGICAL_ID: f"{settings.run_id}:{user}:{sequence}",
            telemetry.STREAM: plan.stream,
        },
        transport.server,
    )

    result: AttemptResult | None = None

    def traced(record: Record) -> None:
        # called by the steps with the attempt `result` just sent: the answer's id, model and finish reasons
        spans.end_attempt(record["attempt"], record, result)
        sink(record)

    base = base_headers_for(plan, settings)
    steps = request_steps(plan, user, sequence, settings, rng, plan.counted_prompt_tokens(body), base, traced)
    try:
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                outcome: Outcome = done.value
                spans.end(outcome.error_kind)
                return outcome
            if isinstance(step, SendAttempt):
                spans.start_attempt(step.number, step.headers)
                result = transport.send(path, payload, step.headers, plan.stream)
            else:
                result = None
                if step.seconds > 0:
                    clock.sleep(step.seconds)
    except BaseException:  # the user was stopped mid-request (GreenletExit): its spans still end, and say so
        spans.abandon()
        raise


def _error_kind(result: AttemptResult, names: GatewayHeaderNames) -> str:
    kind = classify(result.status, result.headers, result.error, names)
    if not kind and result.truncated:
        return ErrorKind.TRUNCATED_STREAM
    return kind


def attempt_record(
    plan: RequestPlan,
    settings: RunSettings,
    user: str,
    profile_name: str,
    logical_id: str,
    attempt: int,
    started: float,
    started_wall: float,
    prompt_est: int,
    result: AttemptResult,
    decision: RetryDecision,
    info: ResponseInfo,
) -> Record:
    error_kind = _error_kind(result, settings.header_names)
    record: Record = {
        "run_id": settings.run_id,
        "t_scenario": started,
        "t_wall": started_wall,
        "user": user,
        "app_id": plan.app.id,
        "client_profile": profile_name,
        "logical_id": logical_id,
        "attempt": attempt,
        "request_id": f"{logical_id}:{attempt}",
        "operation": plan.operation,
        "deployment": plan.deployment,
        "stream": plan.stream,
        "max_tokens": plan.max_tokens,
        "prompt_tokens_est": prompt_est,
        "status": result.status,
        "error_kind": error_kind,
        "ttft_s": result.ttft_s,
        "latency_s": result.latency_s,
        "inter_token_s": result.inter_token_s,
        "decision": Decision.FAIL if error_kind == ErrorKind.TRUNCATED_STREAM else decision_label(info, decision),
        "retry_wait_s": decision.wait_s if decision.retry else None,
        "retry_wait_source": decision.source if decision.retry else "",
        "request_type": plan.request_type,
        "mix": plan.mix_label,
        "stream_end": result.stream_end,
    }
    record.update(capture(result.headers, settings.header_names))
    usage = result.usage
    if usage is not None:
        record["usage_prompt"] = usage.get("prompt_tokens")
        record["usage_completion"] = usage.get("completion_tokens")
        record["usage_total"] = usage.get("total_tokens")
        record["usage_source"] = result.usage_source
    elif plan.stream and result.status == 200:
        # no usage chunk: count what was streamed, as a gateway counting deltas would
        completion = count_text_tokens(result.text, plan.deployment) if result.text else 0
        record.update(
            usage_prompt=prompt_est,
            usage_completion=completion,
            usage_total=prompt_est + completion,
            usage_source=COUNTED_DELTAS,
        )
    return record
