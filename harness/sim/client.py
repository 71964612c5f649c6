"""Simulated callers: the workload's users, arrivals and client retry profiles, recording every attempt.

The same functions as the Locust users decide everything: `draw_request`/`replay_request` what is sent,
`assign_app` which app a user belongs to, `StagePlan`/`pacing_wait` when, the retry profile through
`RetryLoop` whether and when to retry, and `attempt_record` what each attempt's record says.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from harness.aoai.sse import BODY, STREAM_CUT, STREAM_DONE, STREAM_USAGE_CHUNK
from harness.aoai.validation import Invalid, check_request
from harness.client.attempt import AttemptResult
from harness.clock import Clock
from harness.scenario import Scenario
from harness.scenario.workload import App
from harness.sim.engine import Scheduler
from harness.sim.gateway import GatewayCall, GatewayReply, SimReplicas
from harness.tokens import admission_estimate, count_prompt_tokens
from harness.workload.prompts import text_of_tokens
from harness.workload.requests import (
    MixPicker,
    RequestPlan,
    assign_app,
    auth_headers,
    draw_request,
    replay_request,
    user_name,
)
from harness.workload.session import Pause, RunSettings, SendAttempt, request_steps
from harness.workload.shape import StagePlan, pacing_wait, spawn_offsets
from harness.workload.trace import TraceRow

Record = dict[str, Any]


_ANY_APP = App()  # a body does not depend on its app


class _Body:
    """A request body of one shape, and what is read of it for each model, each worked out once."""

    __slots__ = ("_estimates", "_invalid", "_prompt_tokens", "body", "operation")

    def __init__(self, operation: str, body: dict[str, Any]) -> None:
        self.operation = operation
        self.body = body
        self._prompt_tokens: dict[str, int] = {}
        self._invalid: dict[str, Invalid | None] = {}
        self._estimates: dict[tuple[str, int], int] = {}

    def prompt_tokens(self, model: str) -> int:
        count = self._prompt_tokens.get(model)
        if count is None:
            count = self._prompt_tokens[model] = count_prompt_tokens(self.operation, self.body, model)
        return count

    def invalid(self, model: str) -> Invalid | None:
        if model not in self._invalid:
            self._invalid[model] = check_request(self.body, self.operation, model)
        return self._invalid[model]

    def estimate(self, model: str, default_completion: int) -> int:
        key = (model, default_completion)
        estimate = self._estimates.get(key)
        if estimate is None:
            estimate = self._estimates[key] = admission_estimate(self.operation, self.body, model, default_completion)
        return estimate


@lru_cache(maxsize=65_536)
def _gateway_call(plan_shape: tuple[Any, ...], route: str) -> GatewayCall:
    """What the gateway reads of a request of this shape: the same for every request of the shape (shared, so
    never changed), as the prompt text is a function of its size."""
    operation, deployment, prompt, max_tokens, stream, include_usage = plan_shape
    plan = RequestPlan(_ANY_APP, "", operation, deployment, prompt, max_tokens, stream, include_usage)
    body = _Body(operation, plan.body(route))
    return GatewayCall(
        deployment,
        operation,
        stream,
        include_usage,
        max_tokens,
        body.body,
        body.prompt_tokens,
        body.invalid,
        body.estimate,
    )


def _shape(plan: RequestPlan) -> tuple[Any, ...]:
    """Everything the body of a plan depends on (the prompt text is a function of its size)."""
    return (plan.operation, plan.deployment, plan.prompt_tokens, plan.max_tokens, plan.stream, plan.include_usage)


@dataclass
class Callers:
    """What every simulated user shares."""

    scenario: Scenario
    scheduler: Scheduler
    gateway: SimReplicas
    settings: RunSettings
    sink: Callable[[Record], None]
    wall: Clock
    started: float
    ends: float
    trace: Iterator[TraceRow] | None = None
    requests: int = 0  # logical requests started
    attempts: int = 0

    def __post_init__(self) -> None:
        self.app_counts: dict[str, int] = {}
        workload = self.scenario.workload
        self.plan = StagePlan(workload.stages, workload.repeat_stages) if workload.stages else None
        self.users: list[SimUser] = []


class SimUser:
    """One caller: requests one after another, each retried as its app's client would, then a pause."""

    def __init__(self, callers: Callers, index: int) -> None:
        self.callers = callers
        self.app = assign_app(callers.scenario.workload.apps, callers.app_counts)
        self.name = user_name(0, index)
        self.rng = random.Random(f"{callers.scenario.run.seed}:{self.name}")
        self.mixes = MixPicker(callers.scenario.workload, self.app)
        self.sequence = 0
        self.last_start: float | None = None
        self.stopped = False
        self.base_headers = {
            "content-type": "application/json",
            **auth_headers(self.app, callers.settings.api_key, callers.settings.bearer_token, callers.settings.signer),
        }

    def start(self) -> None:
        self.next_request()

    def stop(self) -> None:
        self.stopped = True  # as Locust stops a user: whatever it had in flight is not recorded

    def next_request(self) -> None:
        callers = self.callers
        clock = callers.scheduler.clock
        if self.stopped or clock.now() >= callers.ends:
            return
        if callers.trace is None:
            self._send(draw_request(self.app, self.mixes.pick(self.rng), self.rng))
            return
        row = next(callers.trace, None)
        if row is not None:  # a used-up trace leaves the user idle
            callers.scheduler.at(callers.started + row.offset_s, self._replay, row)

    def _replay(self, row: TraceRow) -> None:
        if not self.stopped and self.callers.scheduler.clock.now() < self.callers.ends:
            self._send(replay_request(row, self.callers.scenario.workload))

    def _send(self, plan: RequestPlan) -> None:
        self.last_start = self.callers.scheduler.clock.now()
        self.sequence += 1
        self.callers.requests += 1
        LogicalRequest(self, plan).send()

    def done(self) -> None:
        """The logical request ended: pause as the user's wait time says, then the next one."""
        callers = self.callers
        clock = callers.scheduler.clock
        if callers.trace is not None:
            self.next_request()
            return
        stage = callers.plan.at(clock.now() - callers.started) if callers.plan else None
        if stage is not None and stage.rate:
            since = clock.now() - (self.last_start or clock.now())
            wait = pacing_wait(stage.rate, max(1, stage.users), since)
        else:
            wait = callers.scenario.workload.think_time.sample(self.rng)
        callers.scheduler.after(wait, self.next_request)


class LogicalRequest:
    """One logical request: the client's steps (`workload.session.request_steps`) carried out with events,
    each attempt through the simulated gateway, each pause an event later."""

    def __init__(self, user: SimUser, plan: RequestPlan) -> None:
        self.user = user
        self.plan = plan
        callers = user.callers
        # What the gateway reads of the body, the same for every attempt
        self.call = _gateway_call(_shape(plan), callers.settings.route)
        prompt_est = self.call.prompt_tokens(plan.deployment)
        self.steps = request_steps(
            plan, user.name, user.sequence, callers.settings, user.rng, prompt_est, user.base_headers, callers.sink
        )

    def send(self) -> None:
        self._step(None)

    def _step(self, result: AttemptResult | None) -> None:
        """Send `result` into the steps (nothing, for a user Locust would have stopped) and carry out the next."""
        user = self.user
        if user.stopped:
            return  # as Locust stops a user: whatever it had in flight is not recorded
        try:
            step = self.steps.send(result)
        except StopIteration:
            user.done()
            return
        scheduler = user.callers.scheduler
        if isinstance(step, Pause):
            scheduler.after(step.seconds, self._step, None)
        else:
            self._send(step)

    def _send(self, step: SendAttempt) -> None:
        callers = self.user.callers
        callers.attempts += 1
        pending = _Pending(callers.scheduler.clock.now())
        callers.gateway.handle(self.call, step.headers, lambda reply: self._answered(pending, reply), self.user.name)
        if not pending.done:  # most refusals are answered at once: no timeout left to wait out
            callers.scheduler.after(callers.settings.timeout_s, self._timed_out, pending)

    def _timed_out(self, pending: _Pending) -> None:
        if not pending.done:
            pending.done = True
            latency = self.user.callers.scheduler.clock.now() - pending.started
            self._step(AttemptResult(0, error="timeout", latency_s=latency))

    def _answered(self, pending: _Pending, reply: GatewayReply) -> None:
        if pending.done:
            return
        pending.done = True
        sent = pending.started
        headers = {k.lower(): v for k, v in reply.headers.items()}  # as an HTTP client hands them over
        result = AttemptResult(
            reply.status,
            headers,
            ttft_s=reply.first_token_at - sent,
            latency_s=reply.end_at - sent,
            inter_token_s=reply.inter_token_s,
            body=reply.body,
            body_bytes=len(reply.body),
        )
        if reply.status == 200:
            self._read_usage(result, reply)
            if self.plan.stream:
                # the mock ends a stream with `data: [DONE]`, unless its connection is cut (a fault)
                result.stream_end = STREAM_CUT if reply.cut else STREAM_DONE
                result.truncated = reply.cut
        self._step(result)

    def _read_usage(self, result: AttemptResult, reply: GatewayReply) -> None:
        """Usage as the client reads it: from the body or a stream's usage chunk, else from the streamed text."""
        if reply.usage is not None:
            result.usage = reply.usage
            result.usage_source = STREAM_USAGE_CHUNK if self.plan.stream else BODY
        elif self.plan.stream and reply.streamed_tokens:
            # No usage chunk: the record counts the streamed text, so the text is made (only for such streams).
            result.text = text_of_tokens(reply.streamed_tokens, self.plan.deployment)


@dataclass(slots=True)
class _Pending:
    started: float
    done: bool = False


def start_users(callers: Callers) -> None:
    """Schedule the arrivals: constant users spawned at the spawn rate, or the stages' user counts."""
    workload = callers.scenario.workload
    scheduler = callers.scheduler
    if callers.plan is None:
        users = workload.trace.users if workload.trace is not None else workload.users
        _spawn(callers, users, workload.spawn_rate, callers.started)
        return
    edge = callers.started
    while edge < callers.ends:
        for stage in workload.stages:
            scheduler.at(edge, _adjust, callers, stage.users, float(stage.spawn_rate or max(1, stage.users)))
            edge += stage.duration
        if not workload.repeat_stages:
            break


def _spawn(callers: Callers, count: int, rate: float, start: float) -> None:
    for offset in spawn_offsets(count, rate):
        callers.scheduler.at(start + offset, _add_user, callers)


def _add_user(callers: Callers) -> None:
    user = SimUser(callers, len(callers.users))
    callers.users.append(user)
    user.start()


def _adjust(callers: Callers, users: int, rate: float) -> None:
    alive = [u for u in callers.users if not u.stopped]
    if users > len(alive):
        _spawn(callers, users - len(alive), rate, callers.scheduler.clock.now())
    for user in alive[users:]:
        user.stop()
